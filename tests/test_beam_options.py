"""Beam options: the user's flags pass through untouched; local defaults only fill gaps."""

import os

from pipeline.beam import MULTI_PROCESS_MIN_BYTES, pipeline_options


def test_other_runner_flags_pass_through_without_direct_defaults():
    options = pipeline_options(["--runner=FlinkRunner", "--flink_master=localhost:8081"]).get_all_options()
    assert options["runner"] == "FlinkRunner"
    assert options["flink_master"] == "localhost:8081"
    assert options["direct_running_mode"] == "in_memory"  # Beam's own default, not ours
    assert options["direct_num_workers"] == 1


def test_direct_runner_uses_worker_processes_for_large_inputs_only():
    small = pipeline_options([], input_bytes=1000).get_all_options()
    large = pipeline_options([], input_bytes=MULTI_PROCESS_MIN_BYTES).get_all_options()
    assert small["direct_running_mode"] == "in_memory"
    assert large["direct_running_mode"] == "multi_processing" and large["direct_num_workers"] >= 1


def test_steps_whose_work_releases_the_gil_run_bundles_in_threads_above_a_few_mb():
    import os

    from pipeline.beam import THREADS_MIN_BYTES, runs_in_process

    tiny = pipeline_options([], input_bytes=1000, threads=True).get_all_options()
    mid = pipeline_options([], input_bytes=THREADS_MIN_BYTES, threads=True).get_all_options()
    unasked = pipeline_options([], input_bytes=THREADS_MIN_BYTES).get_all_options()
    assert tiny["direct_running_mode"] == unasked["direct_running_mode"] == "in_memory"
    expected = "multi_threading" if (os.cpu_count() or 1) > 1 else "in_memory"
    assert mid["direct_running_mode"] == expected
    assert runs_in_process([], input_bytes=THREADS_MIN_BYTES)
    assert not runs_in_process([], input_bytes=MULTI_PROCESS_MIN_BYTES)
    assert not runs_in_process(["--runner=PortableRunner", "--job_endpoint=localhost:8099"])


def test_explicit_running_mode_wins():
    options = pipeline_options(["--direct_running_mode", "multi_threading"], input_bytes=1 << 40)
    assert options.get_all_options()["direct_running_mode"] == "multi_threading"


def test_portable_runner_in_short_flags():
    from pipeline.beam import portable_args

    assert portable_args("localhost:8099", "localhost:50000") == [
        "--runner=PortableRunner",
        "--job_endpoint=localhost:8099",
        "--environment_type=EXTERNAL",
        "--environment_config=localhost:50000",
    ]
    assert portable_args("flink-jobserver:8099")[-1] == "--environment_type=LOOPBACK"
    options = pipeline_options(portable_args("localhost:8099", "localhost:50000")).get_all_options()
    assert options["runner"] == "PortableRunner" and options["direct_running_mode"] != "multi_processing"


def test_dofn_specs_are_computed_once_per_class_and_stay_right():
    """Beam's per-DoFn state/timer introspection is memoized per class (see pipeline.beam);
    stateful DoFns are still seen as stateful, and Map's DoFn per wrapped function."""
    import apache_beam as beam
    from apache_beam.coders import VarIntCoder
    from apache_beam.testing.util import assert_that, equal_to
    from apache_beam.transforms import userstate

    pipeline_options([])  # installs the memo

    class Counting(beam.DoFn):
        COUNT = userstate.ReadModifyWriteStateSpec("count", VarIntCoder())

        def process(self, element, count=beam.DoFn.StateParam(COUNT)):  # noqa: B008 - Beam's idiom
            yield element

    class Plain(beam.DoFn):
        def process(self, element):
            yield element

    assert getattr(userstate.get_dofn_specs, "memoized", False)
    assert userstate.is_stateful_dofn(Counting()) and userstate.is_stateful_dofn(Counting())
    assert not userstate.is_stateful_dofn(Plain())
    states, _ = userstate.get_dofn_specs(Counting())
    states.clear()  # a caller's change does not reach the memo
    assert userstate.is_stateful_dofn(Counting())
    with beam.Pipeline() as p:
        counted = p | beam.Create([("a", 1), ("a", 2)]) | beam.ParDo(Counting()) | beam.Map(lambda kv: kv[1])
        assert_that(counted, equal_to([1, 2]))


def test_option_views_are_made_once_and_stay_in_step():
    """`view_as` is memoized per options object and class (see pipeline.beam): a value set through
    one view is seen through every other and in the options, a pickled copy keeps it, and options
    built anew from other flags get views of their own."""
    import pickle

    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions, TypeOptions

    options = pipeline_options(["--runner=DirectRunner"])
    assert options.view_as(TypeOptions) is options.view_as(TypeOptions)
    options.view_as(StandardOptions).runner = "PortableRunner"
    assert options.view_as(StandardOptions).runner == "PortableRunner"
    assert options.get_all_options()["runner"] == "PortableRunner"
    assert options.view_as(DirectOptions).view_as(StandardOptions).runner == "PortableRunner"
    copy = pickle.loads(pickle.dumps(options))
    assert copy.view_as(StandardOptions).runner == "PortableRunner"
    other = pipeline_options(["--runner=FlinkRunner"])
    assert other.view_as(StandardOptions).runner == "FlinkRunner"
    assert options.view_as(StandardOptions).runner == "PortableRunner"


def test_local_inputs_on_the_direct_runner_skip_the_pipeline_with_a_thread_per_core_when_large():
    from pipeline.beam import THREADS_MIN_BYTES, threads_without_pipeline

    cores = os.cpu_count() or 1
    assert threads_without_pipeline([], input_bytes=1000) == 1
    assert threads_without_pipeline([], input_bytes=THREADS_MIN_BYTES) == (cores if cores > 1 else 1)
    assert threads_without_pipeline(["--direct_running_mode=in_memory"], input_bytes=THREADS_MIN_BYTES) == 1
    assert threads_without_pipeline(["--runner=DirectRunner"], input_bytes=1000) == 1
    assert threads_without_pipeline([], input_bytes=MULTI_PROCESS_MIN_BYTES) is None
    assert threads_without_pipeline(["--runner", "PortableRunner"], input_bytes=1000) is None
    assert threads_without_pipeline(["--direct_running_mode=multi_processing"], input_bytes=1000) is None
