"""A shared store's password stays secret and its failures speak: a real PostgreSQL server that
checks passwords (scram-sha-256), the commands run as a person or a scheduler runs them."""

import os
import subprocess
import sys

import pytest

from tests.postgres import PostgresServer, server_binaries
from tests.test_pipeline_files import TOY, pipeline_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "s3cret-Pa55"


@pytest.fixture(scope="module")
def server():
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed and cannot be installed here (needs root and apt-get)")
    started = PostgresServer(binaries, password=PASSWORD).start()
    yield started
    started.stop()


def runner(*args, env=None, cwd=REPO):
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "runner.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": REPO, **(env or {})},
        timeout=300,
    )
    assert PASSWORD not in done.stdout + done.stderr, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done


def server_tool(server, tool: str, *args: str) -> str:
    """The output of one of the server's own client tools (psql, pg_dump), logged in."""
    command = [
        os.path.join(server.bin_dir, tool),
        "-h",
        "127.0.0.1",
        "-p",
        str(server.port),
        "-U",
        "postgres",
    ]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": PASSWORD},
        check=True,
    ).stdout


def databases(server) -> set[str]:
    return {line.split("|")[0] for line in server_tool(server, "psql", "-lqtA").splitlines() if line}


def test_read_commands_never_create_a_database_nor_show_the_password(server):
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{server.port}/absent"
    for command in (["runs"], ["models"], ["lineage", "--pushed", "latest"], ["gc"]):
        done = runner(*command, "--metadata", url)
        assert done.returncode in (0, 1), (command, done.stdout, done.stderr)
        assert f"postgresql://postgres:***@127.0.0.1:{server.port}/absent" in done.stdout + done.stderr
    assert "absent" not in databases(server)


def test_the_password_from_the_environment_or_a_file_and_a_run_that_records_none_of_it(server, tmp_path):
    url = f"postgresql://postgres@127.0.0.1:{server.port}/shared"
    toy = pipeline_file(tmp_path, TOY.format(args=""))
    root = str(tmp_path / "root")
    done = runner(
        "run", "--pipeline", toy, "--pipeline-root", root, "--metadata", url, env={"PGPASSWORD": PASSWORD}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    os.chmod(password_file, 0o600)
    listed = runner("runs", "--metadata", url, "--metadata-password-file", str(password_file))
    assert listed.returncode == 0 and "COMPLETE" in listed.stdout, listed.stdout + listed.stderr
    listed = runner("runs", "--metadata", url, env={"PIPELINE_METADATA_PASSWORD_FILE": str(password_file)})
    assert listed.returncode == 0 and "COMPLETE" in listed.stdout
    # Nothing the run wrote holds the password: not the store, not the report, not any file.
    dump = server_tool(server, "pg_dump", "shared")
    assert "Write" in dump and PASSWORD not in dump
    for directory, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(directory, name), "rb") as f:
                assert PASSWORD.encode() not in f.read(), os.path.join(directory, name)


@pytest.mark.parametrize(
    "case, expected_code, expected",
    [
        ("wrong password", 69, "refused the login of user 'postgres'; check the user and the password"),
        ("no password", 69, "refused the login of user 'postgres'"),
        ("server down", 69, "nothing answers at 127.0.0.1:1 (tried 4 times); check that the server is up"),
        ("port not a number", 2, "the port must be a number"),
    ],
)
def test_a_store_that_cannot_be_opened_is_one_line_and_a_documented_exit_code(
    server, case, expected_code, expected
):
    port = {"server down": "1", "port not a number": "notaport"}.get(case, str(server.port))
    password = {"wrong password": "nope:", "no password": ""}.get(case, f"{PASSWORD}:")
    url = f"postgresql://postgres{':' + password.rstrip(':') if password else ''}@127.0.0.1:{port}/mlmd"
    done = runner("runs", "--metadata", url, env={"PGPASSWORD": ""})
    assert done.returncode == expected_code, done.stdout + done.stderr
    assert expected in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr  # one line, MLMD's own log kept out
