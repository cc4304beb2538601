"""Beam options for the data components: the runner's flags, with local defaults that use the cores."""

from __future__ import annotations

import os

from pipeline import beam_patches

# Worker processes take about 4 s to start (each imports Beam and the components) and double the
# memory; on 2 cores that pays off only for inputs far larger than the 1M-row benchmark (55 MB).
MULTI_PROCESS_MIN_BYTES = 512 * 1024 * 1024


# Below that, in-process steps whose work releases the GIL (Arrow's CSV parsing, tf.Example encoding,
# zlib, the statistics sketches) run their bundles in one thread per core: at 1M rows ExampleGen
# 7.6 -> 5.7 s and StatisticsGen 3.6 -> 2.3 s. Not for Transform: TFT's stages hold the GIL for
# much of their work and threads raised its peak memory by 180 MB for 2.6 s.
THREADS_MIN_BYTES = 4 * 1024 * 1024


def pipeline_options(beam_args: list[str], *, input_bytes: int = 0, threads: bool = False):
    """PipelineOptions from `beam_args` (passed through untouched), plus DirectRunner defaults.

    When no runner is named, or the DirectRunner is, and its running mode is not given, large
    inputs run in one worker process per core, and small ones in-process: in one thread per core
    for a step that asks for `threads` (its work releases the GIL) and has a few MB of input, else
    in the calling thread.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    beam_patches.apply_all()
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
