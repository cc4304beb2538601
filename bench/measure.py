"""Runs a command while sampling the resident memory of its whole process tree (Beam workers included)."""

from __future__ import annotations

import os
import subprocess
import threading
import time

from pipeline.signals import descendants


def _rss(pid: int) -> int:
    """Resident set size of one process in bytes (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def _pss(pid: int) -> int:
    """Proportional set size of one process in bytes: each shared page split among its sharers."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def run_measured(
    command: list[str], cwd: str, env: dict | None = None, memory: dict | None = None
) -> tuple[float, int, str]:
    """(wall seconds, peak RSS of the process tree in bytes, combined output).

    The tree's RSS counts a page shared by several processes (TensorFlow's libraries, mapped by
    each process that imports it) once per process. When `memory` is given it also receives
    `peak_process_rss` (the largest single process) and `peak_tree_pss` (shared pages split
    among their processes: what the tree really holds; sampled every 0.5 s)."""
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak = peak_process = peak_pss = 0
    output: list[str] = []
    stream = process.stdout
    assert stream is not None  # stdout=PIPE
    reader = threading.Thread(target=lambda: output.extend(stream), daemon=True)
    reader.start()
    samples = 0
    while process.poll() is None:
        pids = [process.pid, *descendants(process.pid)]
        rss = [_rss(pid) for pid in pids]
        peak, peak_process = max(peak, sum(rss)), max(peak_process, *rss, 0)
        if memory is not None and samples % 5 == 0:  # PSS walks the page tables: not every time
            peak_pss = max(peak_pss, sum(_pss(pid) for pid in pids))
        samples += 1
        time.sleep(0.1)
    reader.join()
    if memory is not None:
        memory.update(peak_process_rss=peak_process, peak_tree_pss=peak_pss)
    return time.monotonic() - started, peak, "".join(output)


def write_results(path: str, results: list) -> None:
    """Writes the results as JSON with the machine they were measured on, and says where."""
    import json
    import platform

    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"machine": machine, "results": results}, f, indent=2)
    print(f"written to {path}")


def run_sizes(sizes: str, bench_size, step_name: str) -> list[dict]:
    """Calls `bench_size(rows, workdir)` for each comma-separated size in one temporary
    directory, printing a line per size; returns the results."""
    import tempfile

    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for rows in map(int, sizes.split(",")):
            r = bench_size(rows, workdir)
            results.append(r)
            print(
                f"{r['rows']:>9} rows  {step_name} {r['step_seconds']:7.1f} s  {r['rows_per_second']:>9} rows/s  "
                f"process {r['total_seconds']:7.1f} s  peak RSS {r['peak_rss_mb']:>6} MB",
                flush=True,
            )
    return results
