"""`make run` from the checkout: the stack comes up on its embedded defaults and loads examples/."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from services.stack.local import Ports
from tests.conftest import wait_for

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "seed-timeline.ndjson"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_make_run_comes_up_loads_examples_and_stops_cleanly(tmp_path: Path) -> None:
    ports = Ports.free()
    env = {**os.environ, "ACCORDWATCH_HOME": str(tmp_path / "home"), "CI": "true"}
    env.pop("ACCORDWATCH_DEV_KEY", None)
    env.update({f"ACCORDWATCH_{name.upper()}_PORT": str(getattr(ports, name)) for name in Ports.__dataclass_fields__})
    log = (tmp_path / "make-run.log").open("wb")
    proc = subprocess.Popen(["make", "-s", "run"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        key_file = tmp_path / "home" / "dev-key"
        wait_for(lambda: "accordwatch is running" in (tmp_path / "make-run.log").read_text(errors="replace")
                 or proc.poll() is not None, timeout=300, interval=0.5, what="make run to come up")
        assert proc.poll() is None, (tmp_path / "make-run.log").read_text()
        key = key_file.read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}
        expected = sum(1 for line in EXAMPLES.read_text().splitlines() if line.strip())
        assert (tmp_path / "home" / "kafka" / "examples-loaded").read_text().strip() == str(expected)
        agreements = httpx.get(f"http://127.0.0.1:{ports.projector}/v1/agreements", headers=headers).json()
        assert {"us-gt-aca-2019", "us-sv-aca-2019", "us-hn-aca-2019"} <= {a["id"] for a in agreements["items"]}
        assert httpx.get(f"http://127.0.0.1:{ports.ingest}/healthz").status_code == 200
        # The alerts service evaluated the same timeline: the 2020 stay request is on record, as history.
        alerts_url = f"http://127.0.0.1:{ports.alerts}/v1/alerts"
        alerts = wait_for(lambda: httpx.get(alerts_url, headers=headers, params={"rule": "stay-requested"})
                          .json()["items"], what="the seed stay request among the alerts")
        assert alerts[0]["subject"] == "innovation-law-lab-v-wolf"
        assert alerts[0]["historical"] is True
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        log.close()
    output = (tmp_path / "make-run.log").read_text(errors="replace")
    assert "stopped." in output, output[-3000:]
    deadline = time.monotonic() + 30
    while any(_listening(p) for p in (ports.kafka, ports.ingest, ports.projector, ports.projector_metrics,
                                      ports.alerts, ports.alerts_metrics)):
        assert time.monotonic() < deadline, "make run left processes listening"
        time.sleep(0.2)
