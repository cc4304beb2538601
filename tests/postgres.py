"""A throwaway PostgreSQL server for tests: Debian's postgresql package, installed if missing
(as root, with apt-get), a fresh cluster in a temporary directory, on a free loopback port."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

from pipeline.text import free_ports


def server_binaries() -> str | None:
    """The bin directory of the newest installed PostgreSQL, installing Debian's package if needed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], env=env, capture_output=True)
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


class PostgresServer:
    """Started by `start()`, stopped by `stop()`; `url(db)` is what `--metadata` takes."""

    def __init__(self, bin_dir: str, password: str | None = None):
        """`password`: the `postgres` user's, checked (scram-sha-256) on every connection; None
        trusts every connection."""
        self.bin_dir = bin_dir
        self.password = password
        # Its own directory under /tmp: pytest's are private to root, and the server runs as postgres.
        self.directory = tempfile.mkdtemp(prefix="pipeline-pg-")
        [self.port] = free_ports(1)
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            shutil.chown(self.directory, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *command: str) -> None:
        subprocess.run([*self.as_user, *command], check=True, capture_output=True, cwd=self.directory)

    def start(self) -> PostgresServer:
        data = os.path.join(self.directory, "data")
        auth = ["-A", "trust"]
        if self.password is not None:
            password_file = os.path.join(self.directory, "password")
            with open(password_file, "w") as f:
                f.write(self.password)
            if self.as_user:
                shutil.chown(password_file, "postgres")
            auth = ["-A", "scram-sha-256", f"--pwfile={password_file}"]
        self._run(os.path.join(self.bin_dir, "initdb"), "-D", data, *auth, "-U", "postgres")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self._run(
            os.path.join(self.bin_dir, "pg_ctl"),
            "-D",
            data,
            "-o",
            options,
            "-l",
            os.path.join(self.directory, "log"),
            "-w",
            "start",
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.2)
        raise RuntimeError(f"PostgreSQL did not start on port {self.port}")

    def stop(self) -> None:
        self._run(
            os.path.join(self.bin_dir, "pg_ctl"),
            "-D",
            os.path.join(self.directory, "data"),
            "-m",
            "fast",
            "stop",
        )
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"
