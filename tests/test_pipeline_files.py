"""`runner.py` with a pipeline of the user's own: loading the file, overriding its settings from the
command line, choosing among the pipelines of a store, and the exit codes a scheduler reads.
The pipelines are the pure-Python toys of tests/toy_components.py: no TensorFlow, so these are fast."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

from pipeline.errors import DefinitionError
from pipeline.usercode import load_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def runner(*args, env=None):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "runner.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def pipeline_file(tmp_path, body: str, name: str = "pipeline.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


TOY = """
    from tests.toy_components import toy_pipeline

    def create_pipeline():
        return toy_pipeline({args})
"""


def test_a_command_whose_reader_goes_away_exits_quietly(tmp_path):
    """`runner.py lineage ... | head -1`: the pipe closes before the output is written."""
    toy = pipeline_file(tmp_path, TOY.format(args=""))
    root = str(tmp_path / "root")
    assert runner("run", "--pipeline", toy, "--pipeline-root", root).returncode == 0
    for command in (["lineage", "1"], ["runs"], ["models"]):
        child = subprocess.Popen(
            [
                sys.executable,
                os.path.join(REPO, "runner.py"),
                *command,
                "--pipeline",
                toy,
                "--pipeline-root",
                root,
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        child.stdout.close()  # the reader is gone before anything was written
        error = child.stderr.read()
        assert child.wait() == 0 and error == "", (command, error)


def test_under_umask_000_nothing_a_run_writes_is_writable_by_every_user(tmp_path):
    """The root, its store, its reports and a pushed version: explicit modes, whatever the umask."""
    import stat

    from components.pusher.component import push

    toy = pipeline_file(tmp_path, TOY.format(args=""))
    root = tmp_path / "root"
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "runner.py"),
            "run",
            "--pipeline",
            toy,
            "--pipeline-root",
            str(root),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(0),
    )
    assert done.returncode == 0, done.stderr
    every = [os.path.join(d, n) for d, dirs, files in os.walk(root) for n in (*dirs, *files)]
    assert every and not [p for p in every if os.stat(p).st_mode & stat.S_IWOTH]
    served = tmp_path / "model"
    os.makedirs(served / "variables")
    (served / "saved_model.pb").write_bytes(b"pb")
    (served / "variables" / "variables.index").write_bytes(b"ix")
    for path in (
        served,
        served / "variables",
        served / "saved_model.pb",
        served / "variables" / "variables.index",
    ):
        os.chmod(path, 0o777 if os.path.isdir(path) else 0o666)
    previous = os.umask(0)
    try:
        version = push(str(served), str(tmp_path / "serving" / "m"), {"model_id": 1})
    finally:
        os.umask(previous)
    pushed = tmp_path / "serving" / "m" / str(version)
    every = [pushed, *[os.path.join(d, n) for d, dirs, files in os.walk(pushed) for n in (*dirs, *files)]]
    assert not [p for p in every if os.stat(p).st_mode & stat.S_IWOTH]


def test_create_pipeline_or_a_module_level_pipeline(tmp_path):
    made = load_pipeline(pipeline_file(tmp_path, TOY.format(args="text='a'")))
    assert made.name == "toy" and made.source_file == str(tmp_path / "pipeline.py")
    variable = pipeline_file(
        tmp_path, "from tests.toy_components import toy_pipeline\npipeline = toy_pipeline()\n", "v.py"
    )
    assert load_pipeline(variable).name == "toy"


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            "from tests.toy_components import Write\nfrom pipeline import Pipeline\n\n"
            "def create_pipeline():\n    return Pipeline('p', [Write(txt='x')])\n",
            r"pipeline.py, line 5: Write: unknown parameter or input 'txt'; did you mean 'text'\?",
        ),
        (
            "def create_pipeline():\n    return undefined_name\n",
            r"create_pipeline in .*pipeline.py, line 2, raised NameError: name 'undefined_name' is not defined",
        ),
        (
            "x = 1\n",
            r"pipeline.py gave NoneType, not a Pipeline; define `def create_pipeline\(\) -> Pipeline`",
        ),
        ("def create_pipeline(:\n", r"pipeline.py, line 1: syntax error"),
    ],
)
def test_mistakes_in_a_pipeline_file_are_definition_errors_naming_it(tmp_path, body, expected):
    path = pipeline_file(tmp_path, body)
    with pytest.raises(DefinitionError, match=expected):
        load_pipeline(path)
    done = runner("run", "--pipeline", path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and re.search(expected, done.stderr)
    assert done.stderr.startswith("pipeline definition error: ")


def test_pipeline_file_from_the_environment_and_its_settings_overridden(tmp_path):
    path = pipeline_file(tmp_path, TOY.format(args=""))
    root = str(tmp_path / "root")
    done = runner("--pipeline-root", root, "run", env={"PIPELINE_FILE": path})
    assert done.returncode == 0, done.stderr
    assert "run of pipeline toy" not in done.stderr and re.search(
        r"pipeline toy \(root .*root\)", done.stdout
    )
    wrong = runner(
        "--pipeline-root", root, "run", "--data", "x/span-{SPAN}/*.csv", env={"PIPELINE_FILE": path}
    )
    assert wrong.returncode == 2
    assert "no node of pipeline 'toy' takes parameter 'input_pattern'" in wrong.stderr


def test_commands_pick_the_only_pipeline_of_a_store_and_ask_when_there_are_several(tmp_path):
    path = pipeline_file(tmp_path, TOY.format(args=""))
    root = str(tmp_path / "root")
    assert runner("run", "--pipeline", path, "--pipeline-root", root).returncode == 0
    one = runner("runs", "--pipeline-root", root)
    assert one.returncode == 0 and re.search(r"run \S+\s+COMPLETE", one.stdout)
    assert (
        runner("run", "--pipeline", path, "--pipeline-root", root, "--pipeline-name", "other").returncode == 0
    )
    several = runner("runs", "--pipeline-root", root)
    assert several.returncode == 2
    assert "holds 2 pipelines (other, toy); choose one with --pipeline-name NAME" in several.stderr
    chosen = runner("runs", "--pipeline-root", root, "--pipeline-name", "other")
    assert chosen.returncode == 0 and chosen.stdout.count("run ") == 1
    by_file = runner("models", "--pipeline", path, "--pipeline-root", root)
    assert by_file.returncode == 0 and "no models of pipeline 'toy'" in by_file.stdout
    empty = runner("runs", "--pipeline-root", str(tmp_path / "nothing"))
    assert empty.returncode == 0 and "no runs recorded in" in empty.stdout


def test_a_held_back_result_exits_3_once_and_an_idle_run_after_it_exits_0_naming_it(tmp_path):
    path = pipeline_file(tmp_path, TOY.format(args="hold_back='model 3 is not blessed: FAIL accuracy'"))
    root = str(tmp_path / "root")
    held = runner("run", "--pipeline", path, "--pipeline-root", root)
    assert held.returncode == 3, held.stderr
    held_run = re.search(r"run (\S+): HELD_BACK in", held.stdout).group(1)
    assert "held back by Write: model 3 is not blessed: FAIL accuracy" in held.stdout
    # A cron tick with nothing new repeats no decision: exit 0, naming the run that held back.
    idle = runner("run", "--pipeline", path, "--pipeline-root", root)
    assert idle.returncode == 0, idle.stdout + idle.stderr
    assert re.search(r"run \S+: COMPLETE in", idle.stdout) and "held back by" not in idle.stdout
    assert (
        f"nothing new: unchanged since run {held_run}, whose Write held back: model 3 is not blessed: FAIL accuracy"
        in idle.stdout
    )
    assert (
        f"unchanged since run {held_run}" in runner("run", "--pipeline", path, "--pipeline-root", root).stdout
    )
    # A new decision to hold back (the step ran again) is reported again.
    again = runner("run", "--pipeline", path, "--pipeline-root", root, "--no-cache")
    assert again.returncode == 3 and "held back by Write" in again.stdout
    listed = runner("runs", "--pipeline-root", root)
    assert len(re.findall(r"^run \S+\s+HELD_BACK", listed.stdout, re.M)) == 2
    # The two idle ticks between them changed nothing: one line for both.
    assert re.search(r"^2 runs with nothing new, .*: every step CACHED$", listed.stdout, re.M), listed.stdout
    steps = runner("runs", "--pipeline-root", root, "--steps")
    assert len(re.findall(r"^run \S+\s+COMPLETE", steps.stdout, re.M)) == 2


def test_a_failed_step_shows_how_long_it_ran(tmp_path):
    path = pipeline_file(tmp_path, TOY.format(args="fail=True, sleep=0.3"))
    done = runner("run", "--pipeline", path, "--pipeline-root", str(tmp_path / "root"))
    assert done.returncode == 1
    seconds = float(re.search(r"^Write\s+FAILED\s+\d+\s+([\d.]+)", done.stdout, re.M).group(1))
    assert seconds >= 0.3
