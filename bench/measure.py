"""Runs a command while sampling the resident memory of its whole process tree (Beam workers included)."""

from __future__ import annotations

import os
import subprocess
import threading
import time


def _tree_rss_bytes(pid: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * page
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0)
        stack.extend(children.get(current, []))
    return total


def run_measured(command: list[str], cwd: str, env: dict | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak RSS of the process tree in bytes, combined output)."""
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak = 0
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    while process.poll() is None:
        peak = max(peak, _tree_rss_bytes(process.pid))
        time.sleep(0.1)
    reader.join()
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
