"""docs/estimator-guide.md stays true: its Python blocks run, in order, as one script, and the
`saved_model_cli show --all` output it shows is what the tool prints for the export they make."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDE = os.path.join(REPO, "docs", "estimator-guide.md")


def blocks(language: str) -> list[str]:
    with open(GUIDE) as f:
        return re.findall(rf"^```{language}\n(.*?)^```$", f.read(), re.M | re.S)


def ops_sorted(text: str) -> str:
    """The ops line is a Python set, printed in an order that changes from process to process."""

    def sort(match):
        ops = sorted(op.strip().strip("'") for op in match.group(1).split(","))
        return "contains the following ops: {" + ", ".join(f"'{op}'" for op in ops) + "}"

    return re.sub(r"contains the following ops: \{(.*?)\}", sort, text).strip()


def test_the_guide_runs_and_shows_what_saved_model_cli_prints(tmp_path):
    script = "\n".join(blocks("python"))
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shown = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "saved_model_cli"),
            "show",
            "--dir",
            "export",
            "--all",
        ],
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    [expected] = blocks("text")
    assert ops_sorted(shown.stdout) == expected.strip()
