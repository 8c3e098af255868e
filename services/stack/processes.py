"""Child processes of the local stack: start, wait until healthy, stop, kill."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx


class ProcessFailed(RuntimeError):
    """A child process exited or never became healthy."""


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class ServiceProcess:
    """A Python service run as `python -m <module> <args>` with its own environment and log."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        log_dir: Path,
        health_url: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.args = [sys.executable, "-m", *args]
        self.env = {**os.environ, **env}
        self.log = log_dir / f"{name}.log"
        self.health_url = health_url
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Launch the process in its own session, output appended to its log."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.cwd,
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Poll the health URL (or just liveness) until it answers 200, with a deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise ProcessFailed(f"{self.name} exited with {self.proc and self.proc.returncode}:\n{tail(self.log)}")
            if self.health_url is None:
                return
            try:
                if httpx.get(self.health_url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise ProcessFailed(f"{self.name} not healthy after {timeout:.0f}s:\n{tail(self.log)}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def signal_stop(self) -> None:
        """Send SIGTERM without waiting; `stop()` waits (so several can shut down at once)."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the process group (a crash, for failure tests)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self._signal(signal.SIGKILL)
        self.proc.wait(10)

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
