"""The `accordwatch` CLI against a running test stack: each command, its output and its exit codes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Broker, RunningStack, make_stack, wait_for
from tests.receiver import Receiver, ReceiverServer

pytestmark = [pytest.mark.kafka, pytest.mark.stack]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "seed-timeline.ndjson"
CLI = str(ROOT / ".venv" / "bin" / "accordwatch")


@pytest.fixture(scope="module")
def full_stack(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = make_stack(kafka, tmp_path_factory.mktemp("cli"), services=(
        "ingest", "projector-worker", "projector-api", "alerts-worker", "alerts-api"))
    try:
        yield running
    finally:
        running.close()


def cli(stack: RunningStack, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ACCORDWATCH_API_KEY": stack.stack.dev_key,
        "ACCORDWATCH_INGEST_URL": stack.stack.urls["ingest"],
        "ACCORDWATCH_PROJECTOR_URL": stack.stack.urls["projector"],
        "ACCORDWATCH_ALERTS_URL": stack.stack.urls["alerts"],
        "ACCORDWATCH_HOME": str(stack.stack.home),
        "COLUMNS": "250",
    }
    return subprocess.run([CLI, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def test_post_status_timeline_and_as_of(full_stack: RunningStack) -> None:
    posted = cli(full_stack, "post", str(EXAMPLES))
    assert posted.returncode == 0, posted.stderr
    lines = sum(1 for line in EXAMPLES.read_text().splitlines() if line.strip())
    assert f"{lines} events accepted" in posted.stdout
    wait_for(lambda: "in_force" in cli(full_stack, "status").stdout, what="the examples folded")
    now = cli(full_stack, "status")
    assert "us-gt-aca-2019" in now.stdout
    assert "in_force" in now.stdout
    before = cli(full_stack, "status", "--as-of", "2019-08-15")
    assert before.returncode == 0
    row = next(line for line in before.stdout.splitlines() if "us-gt-aca-2019" in line)
    assert "signed" in row
    assert "in_force" not in row
    history = cli(full_stack, "timeline", "us-gt-aca-2019")
    assert history.returncode == 0
    assert "AgreementSigned" in history.stdout
    assert "TransferReported" in history.stdout


def test_posting_a_file_again_after_a_failure_counts_nothing_twice(full_stack: RunningStack, tmp_path: Path) -> None:
    """Regression: events without ids got new ids on every run, double-counting incremental transfer reports."""
    import orjson

    from tests.samples import event

    agreement = "us-zz-aca-2021"
    # Reports of the past: one dated in the future is not yet a fact (it counts once its day comes).
    reports = [event("TransferReported", subject=agreement, occurred_at=f"2021-0{m}-01",
                     data={"count": 10 * m, "cumulative": False}) for m in range(1, 6)]
    broken = [*reports[:2], {**reports[2], "data": {"count": -1, "cumulative": False}}, *reports[3:]]
    path = tmp_path / "reports.ndjson"
    path.write_text("".join(orjson.dumps(r).decode() + "\n" for r in broken))
    failed = cli(full_stack, "post", str(path))
    assert failed.returncode == 1, failed.stdout + failed.stderr  # the whole file is one batch: nothing lands
    path.write_text("".join(orjson.dumps(r).decode() + "\n" for r in reports))
    for _ in range(2):  # fixed, posted, and posted once more for good measure
        posted = cli(full_stack, "post", str(path))
        assert posted.returncode == 0, posted.stderr
    total = sum(10 * m for m in range(1, 6))
    got = wait_for(lambda: (r := full_stack.query.get(f"/v1/agreements/{agreement}")).status_code == 200
                   and r.json()["transfers_total"] == total and r.json(), what="the reports folded")
    assert got["transfer_reports"] == 5
    assert full_stack.query.get(f"/v1/agreements/{agreement}/timeline").json()["total"] == 5


def test_policies_now_and_as_of_the_monday_before_the_ninth_circuit_order(full_stack: RunningStack) -> None:
    cli(full_stack, "post", str(EXAMPLES))  # idempotent: the example ids are fixed
    now = wait_for(lambda: (r := cli(full_stack, "policies")) and "mpp" in r.stdout and r, what="the policies")
    mpp = next(line for line in now.stdout.splitlines() if line.lstrip("│ ").startswith("mpp"))
    assert "partly blocked in US-AZ, US-CA" in mpp
    assert "Supreme" in now.stdout  # DHS asked the Supreme Court; still pending in the articles
    ban = next(line for line in now.stdout.splitlines() if "asylum-transit-ban" in line)
    assert "in effect" in ban
    monday = cli(full_stack, "policies", "--as-of", "2020-03-09")
    assert monday.returncode == 0, monday.stderr
    mpp = next(line for line in monday.stdout.splitlines() if line.lstrip("│ ").startswith("mpp"))
    assert "in effect" in mpp
    assert "2020-03-12: partly blocked in US-AZ, US-CA" in mpp
    bad = cli(full_stack, "policies", "--as-of", "the ides of March")
    assert bad.returncode == 1
    assert "as_of" in bad.stderr


def test_alerts_lists_the_seed_stay_request(full_stack: RunningStack) -> None:
    cli(full_stack, "post", str(EXAMPLES))  # idempotent: the example ids are fixed
    shown = wait_for(lambda: (r := cli(full_stack, "alerts", "--subject", "innovation-law-lab-v-wolf"))
                     and "stay-requested" in r.stdout and r, what="the stay request alert")
    assert "critical" in shown.stdout
    assert "not sent" in shown.stdout


def test_subscribe_prints_the_secret_once_and_pings(full_stack: RunningStack) -> None:
    server = ReceiverServer()
    rx: Receiver = server.start()
    try:
        url = rx.endpoint("/cli")
        done = cli(full_stack, "subscribe", url, "--severity", "critical")
        assert done.returncode == 0, done.stderr
        secret = next(word for word in done.stdout.split() if word.startswith("whsec_"))
        rx.endpoint("/cli", secret=secret)
        sub_id = done.stdout.split()[1]
        ping = full_stack.alerts.post(f"/v1/subscriptions/{sub_id}/test").json()
        assert ping["outcome"] == "succeeded"
        assert len(rx.verified("/cli", "ping")) == 1
    finally:
        server.stop()


def test_errors_have_clear_messages_and_exit_codes(full_stack: RunningStack, tmp_path: Path) -> None:
    refused = cli(full_stack, "subscribe", "http://10.0.0.1/hook")
    assert refused.returncode == 1
    assert "not a public address" in refused.stderr
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"type": "AgreementSigned", "subject": "x", "occurred_at": "2019-01-01"}\n')
    invalid = cli(full_stack, "post", str(bad))
    assert invalid.returncode == 1
    assert "sources" in invalid.stderr
    missing = cli(full_stack, "post", str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    down = cli(full_stack, "alerts", "--alerts-url", "http://127.0.0.1:9")
    assert down.returncode == 3
    assert "cannot reach" in down.stderr
    helped = cli(full_stack, "--help")
    for command in ("run", "post", "status", "timeline", "replay", "alerts", "subscribe", "migrate"):
        assert command in helped.stdout


def test_migrate_brings_both_schemas_to_head(full_stack: RunningStack, tmp_path: Path) -> None:
    done = cli(full_stack, "migrate", "--database-url", f"sqlite:///{tmp_path / 'rm.db'}",
               "--alerts-database-url", f"sqlite:///{tmp_path / 'al.db'}")
    assert done.returncode == 0, done.stderr
    assert "read model: at head" in done.stdout
    assert "alert store: at head" in done.stdout
    again = cli(full_stack, "migrate", "--database-url", f"sqlite:///{tmp_path / 'rm.db'}",
                "--alerts-database-url", f"sqlite:///{tmp_path / 'al.db'}")
    assert again.returncode == 0
