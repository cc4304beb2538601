"""Beam's portable services on this machine: the Python job server and a pool of SDK workers.

    .venv/bin/python -m bench.beam_services      starts both and prints the `runner.py run` flags
                                                 that use them, until Ctrl-C

For trying a pipeline on the portable runner before a cluster, for `bench.distributed` and for
`tests/test_portable_runner.py`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

from pipeline.text import free_ports

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
        "PYTHONPATH": project_path or REPO,
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


def main() -> None:
    import tempfile

    with (
        tempfile.TemporaryDirectory() as workdir,
        local_portable_services(workdir) as (job_server, workers, log),
    ):
        print(f"job server {job_server}, worker pool {workers} (log: {log}); Ctrl-C stops both")
        print(f"  .venv/bin/python runner.py run --job-server {job_server} --workers {workers}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
