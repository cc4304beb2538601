"""Test helpers: read gzipped TFRecord files and decode tf.Examples without importing TensorFlow."""

from __future__ import annotations

import glob
import gzip
import os
import struct

from pipeline.local_runner import RunOptions, run_pipeline

# `runner.py run` exit codes: 0 when the run pushed a blessed model or had nothing new, 3 when it
# completed but held its new model back (not blessed). A test expects 0 unless it says otherwise.
BLESSED_OR_UNCHANGED, HELD_BACK = 0, 3


def expect_exit(code: int, output: str, what: str, allow_held_back: bool = False) -> None:
    """Fails naming `what` and showing its output unless it exited 0, or 3 with `allow_held_back`
    (and then it must say which step held the model back, and why)."""
    if code == BLESSED_OR_UNCHANGED:
        return
    if allow_held_back and code == HELD_BACK and "held back by " in output:
        return
    raise AssertionError(f"{what} exited {code}:\n{output[-6000:]}")


def read_tfrecords(directory: str) -> list[bytes]:
    """Every record of every `*.gz` TFRecord file in `directory` (framing read by hand)."""
    records = []
    for path in sorted(glob.glob(os.path.join(directory, "*.gz"))):
        data = gzip.open(path).read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            offset += 12
            records.append(data[offset : offset + length])
            offset += length + 4
    return records


def decode_examples(records: list[bytes]) -> list[dict]:
    """tf.Examples as dicts of feature -> list of values; an absent feature is left out."""
    from tfx_bsl.coders import example_coder

    if len(records) == 0:
        return []
    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(list(records))
    columns = batch.to_pydict()
    rows = []
    for i in range(batch.num_rows):
        row = {}
        for name, values in columns.items():
            if values[i] is not None:
                row[name] = [v.decode() if isinstance(v, bytes) else v for v in values[i]]
        rows.append(row)
    return rows


def write_csv(path, text: str) -> str:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)


def quiet_run(pipeline, root, **options):
    lines: list[str] = []
    result = run_pipeline(pipeline, RunOptions(pipeline_root=str(root), log=lines.append, **options))
    result.log = lines
    return result


# Runs `runner.py` commands one after another in one process (the commands' own code, `runner.main`),
# as a scheduler or a backfill does: the runs share one step worker, so TensorFlow is imported once.
_DRIVER = """
import contextlib, io, json, sys
sys.path.insert(0, sys.argv[3])
import runner
commands, out = json.loads(sys.argv[1]), sys.argv[2]
done = {}
for name, argv in commands.items():
    printed, said = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(said):
        code = runner.main(argv)
    done[name] = {"returncode": code, "stdout": printed.getvalue(), "stderr": said.getvalue()}
with open(out, "w") as f:
    json.dump(done, f)
"""


def run_commands(commands: dict[str, list[str]], cwd: str, out: str) -> dict:
    """{name: result with returncode, stdout and stderr} of each `runner.py` command (its argv
    after `runner.py`), run in order in one fresh process in `cwd`; `out` is a scratch file."""
    import json
    import subprocess
    import sys
    from types import SimpleNamespace

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(commands), out, repo],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out) as f:
        return {name: SimpleNamespace(**result) for name, result in json.load(f).items()}
