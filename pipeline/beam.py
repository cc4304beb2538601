"""Beam options for the data components: the runner's flags, with local defaults that use the cores."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import weakref

from pipeline.text import free_ports

# Worker processes take about 4 s to start (each imports Beam and the components) and double the
# memory; on 2 cores that pays off only for inputs far larger than the 1M-row benchmark (55 MB).
MULTI_PROCESS_MIN_BYTES = 512 * 1024 * 1024


# Below that, in-process steps whose work releases the GIL (Arrow's CSV parsing, tf.Example encoding,
# zlib, the statistics sketches) run their bundles in one thread per core: at 1M rows ExampleGen
# 7.6 -> 5.7 s and StatisticsGen 3.6 -> 2.3 s. Not for Transform: TFT's stages hold the GIL for
# much of their work and threads raised its peak memory by 180 MB for 2.6 s.
THREADS_MIN_BYTES = 4 * 1024 * 1024


def _memoize_dofn_specs() -> None:
    """Beam asks each DoFn for its state and timer specs several times while building and
    translating a pipeline (`userstate.get_dofn_specs`, from `is_stateful_dofn`,
    `validate_stateful_dofn` and `ParDo.to_runner_api_parameter`), and every time it inspects the
    signature of every method of the DoFn: about 4,000 calls for TF Transform's pipeline, 2.4 s of
    a cold run on the embedded data. The specs are declared in the class's method signatures
    (`DoFn.StateParam(spec)` defaults), so they are the same for every instance of a class; they
    are computed once per class (and per wrapped function, for Map's and FlatMap's DoFn). An
    instance that carries a method of its own is not cached."""
    import types

    from apache_beam.transforms import userstate

    original = userstate.get_dofn_specs
    if getattr(original, "memoized", False):
        return
    cache: dict[tuple, tuple[set, set]] = {}

    def get_dofn_specs(dofn):
        own_methods = any(isinstance(v, types.MethodType) for v in getattr(dofn, "__dict__", {}).values())
        if own_methods:
            return original(dofn)
        # A Map/FlatMap's DoFn takes its `process` signature from the function it wraps.
        key = (type(dofn), getattr(dofn, "_fn", None))
        try:
            if key not in cache:
                cache[key] = original(dofn)
        except TypeError:  # an unhashable callable
            return original(dofn)
        states, timers = cache[key]
        return set(states), set(timers)

    get_dofn_specs.memoized = True  # type: ignore[attr-defined]  # marks the patch as applied
    userstate.get_dofn_specs = get_dofn_specs


def _memoize_option_views() -> None:
    """Beam 2.77 asks the pipeline's options for their `TypeOptions` view on every transform it
    applies and in every type-hint check (`typehints.is_consistent_with`), and each `view_as`
    builds the view anew: an argparse parser of every registered option, parsing the flags again
    (0.26 ms here). TF Transform's pipeline makes thousands of such checks: 15% of Transform's
    time on the embedded data (py-spy). A view holds no state of its own (its values live in the
    `_all_options` dict it shares with the object it came from), so each object keeps the views
    it made, one per class (outside the object, which gets pickled), while it shares that dict."""
    from apache_beam.options.pipeline_options import PipelineOptions

    original = PipelineOptions.view_as
    if getattr(original, "memoized", False):
        return

    made: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def view_as(self, cls):
        try:
            views = made.setdefault(self, {})
        except TypeError:  # not weakly referable or not hashable: as Beam does
            return original(self, cls)
        view = views.get(cls)
        if view is None or view._all_options is not self._all_options or view._flags is not self._flags:
            view = views[cls] = original(self, cls)
        return view

    view_as.memoized = True  # type: ignore[attr-defined]  # marks the patch as applied
    view_as.__doc__ = original.__doc__
    PipelineOptions.view_as = view_as


def pipeline_options(beam_args: list[str], *, input_bytes: int = 0, threads: bool = False):
    """PipelineOptions from `beam_args` (passed through untouched), plus DirectRunner defaults.

    When no runner is named, or the DirectRunner is, and its running mode is not given, large
    inputs run in one worker process per core, and small ones in-process: in one thread per core
    for a step that asks for `threads` (its work releases the GIL) and has a few MB of input, else
    in the calling thread.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    _memoize_dofn_specs()
    _memoize_option_views()
    args = list(beam_args)
    runner = _flag_value(args, "--runner") or "DirectRunner"
    if runner in ("DirectRunner", "direct") and _flag_value(args, "--direct_running_mode") is None:
        cores = os.cpu_count() or 1
        if input_bytes >= MULTI_PROCESS_MIN_BYTES:
            args += ["--direct_running_mode=multi_processing", f"--direct_num_workers={cores}"]
        elif threads and input_bytes >= THREADS_MIN_BYTES and cores > 1:
            args += ["--direct_running_mode=multi_threading", f"--direct_num_workers={cores}"]
        else:
            args += ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    return PipelineOptions(args)


def portable_args(job_server: str, workers: str | None = None) -> list[str]:
    """Beam flags for a portable runner: the job server at `job_server` (host:port; Beam's Python
    job server here, or Flink's or Spark's on a cluster), and SDK workers from the worker pool at
    `workers` (host:port; an EXTERNAL environment), or, without it, workers the launching process
    serves itself (LOOPBACK)."""
    args = ["--runner=PortableRunner", f"--job_endpoint={job_server}"]
    if workers:
        return [*args, "--environment_type=EXTERNAL", f"--environment_config={workers}"]
    return [*args, "--environment_type=LOOPBACK"]


def runs_in_process(beam_args: list[str], *, input_bytes: int = 0) -> bool:
    """Whether a step's Beam pipeline would run in this process: the DirectRunner (named or by
    default) in its in-memory mode. A step may then do the same work without building a pipeline."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    options = pipeline_options(beam_args, input_bytes=input_bytes)
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    mode = options.view_as(DirectOptions).direct_running_mode
    return runner in ("DirectRunner", "direct") and mode in ("in_memory", "multi_threading")


def threads_without_pipeline(beam_args: list[str], *, input_bytes: int) -> int | None:
    """How many threads a step whose work releases the GIL may use to do it in this process
    without building a Beam pipeline, or None where it should build one. Without one wherever
    the DirectRunner (named or by default, its running mode not given or in_memory) would run in
    this process anyway, i.e. below MULTI_PROCESS_MIN_BYTES: a thread per core from
    THREADS_MIN_BYTES up unless in_memory was asked for, else one. Decided from the flags alone,
    so that a local run does not import Beam for it. Any other runner gets the pipeline."""
    runner = _flag_value(beam_args, "--runner") or "DirectRunner"
    mode = _flag_value(beam_args, "--direct_running_mode")
    if runner not in ("DirectRunner", "direct") or mode not in (None, "in_memory"):
        return None
    if input_bytes >= MULTI_PROCESS_MIN_BYTES:
        return None
    cores = os.cpu_count() or 1
    return cores if mode is None and input_bytes >= THREADS_MIN_BYTES and cores > 1 else 1


def _flag_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
    return None


@contextlib.contextmanager
def local_portable_services(workdir: str, python: str | None = None, project_path: str | None = None):
    """Beam's Python job server and a worker pool, each its own process group on a free loopback
    port, stopped (SIGKILL to the group) whatever happens; yields (job server, worker pool,
    the job server's log file). The pool runs in `workdir`, sees the project only through
    PYTHONPATH (`project_path`), and starts `python` from PATH, so the interpreter's bin comes
    first. For trying a pipeline on the portable runner before a cluster, and for tests."""
    python = python or sys.executable
    env = {
        **os.environ,
        "PATH": f"{os.path.dirname(python)}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": project_path or os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    }
    job_port, pool_port = free_ports(2)
    commands = {
        job_port: [
            python,
            "-m",
            "apache_beam.runners.portability.local_job_service_main",
            "--port",
            str(job_port),
        ],
        pool_port: [
            python,
            "-m",
            "apache_beam.runners.worker.worker_pool_main",
            f"--service_port={pool_port}",
        ],
    }
    processes = []
    try:
        for port, command in commands.items():
            with open(os.path.join(workdir, f"beam-{port}.log"), "w") as log:
                processes.append(
                    subprocess.Popen(
                        command, cwd=workdir, env=env, stdout=log, stderr=log, start_new_session=True
                    )
                )
            _wait_for_port(port, processes[-1], command)
        yield f"localhost:{job_port}", f"localhost:{pool_port}", os.path.join(workdir, f"beam-{job_port}.log")
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for_port(port: int, process: subprocess.Popen, command: list[str], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{' '.join(command)} exited {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.3)
    raise RuntimeError(f"nothing listens on port {port} after {seconds} s")
