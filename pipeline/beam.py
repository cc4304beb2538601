"""Beam options for the data components: the runner's flags, with local defaults that use the cores."""

from __future__ import annotations

import os

# Worker processes take about 4 s to start (each imports Beam and the components) and double the
# memory; on 2 cores that pays off only for inputs far larger than the 1M-row benchmark (55 MB).
MULTI_PROCESS_MIN_BYTES = 512 * 1024 * 1024


def pipeline_options(beam_args: list[str], *, input_bytes: int = 0):
    """PipelineOptions from `beam_args` (passed through untouched), plus DirectRunner defaults.

    When no runner is named, or the DirectRunner is, and its running mode is not given, large
    inputs run in one worker process per core and small ones in-process.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(beam_args)
    runner = _flag_value(args, "--runner") or "DirectRunner"
    if runner in ("DirectRunner", "direct") and _flag_value(args, "--direct_running_mode") is None:
        if input_bytes >= MULTI_PROCESS_MIN_BYTES:
            args += ["--direct_running_mode=multi_processing", f"--direct_num_workers={os.cpu_count() or 1}"]
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


def _flag_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
    return None
