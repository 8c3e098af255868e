"""A throwaway PostgreSQL server from Debian's binaries, for tests and benchmarks.

pytest-postgresql's executor runs `pg_ctl` as the current user, and PostgreSQL refuses to
run as root, which is what CI runs as; so this small helper does the same job and, when
root, runs the server as the `postgres` system user (created by Debian's package).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from services.stack.broker import free_port


def bindir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin with a pg_ctl."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[4]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed; run scripts/setup.sh --test (installs Debian's postgresql)")
    return Path(found[-1]).parent


class LocalPostgres:
    """initdb into a fresh folder, start on a free port on 127.0.0.1, trust auth, stop and delete."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="accordwatch-pg-"))
        self.data = self.dir / "data"
        self.user = "postgres"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        else:
            self.user = os.environ.get("USER", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")

    def start(self) -> LocalPostgres:
        bins = bindir()
        self._run(str(bins / "initdb"), "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8",
                  "--no-sync")
        self.resume()
        return self

    def resume(self) -> None:
        """Start the server on its data folder (again, after `halt`)."""
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(str(bindir() / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"),
                  "-w", "-t", "60", "start")

    def halt(self) -> None:
        """Stop the server, keeping its data (a database outage, for failure tests)."""
        self._run(str(bindir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def create_database(self, name: str) -> str:
        self._run(str(bindir() / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name)
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run(str(bindir() / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
