"""The `accordwatch` command line: run the local stack, post events, read the read model."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.platform.auth import new_key

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "seed-timeline.ndjson"

app = typer.Typer(
    name="accordwatch",
    no_args_is_help=True,
    add_completion=False,
    help="accordwatch: the system of record for asylum cooperative agreements, and the alarm bell on top.",
)
console = Console()
err = Console(stderr=True)

# Exit codes: 0 ok, 1 the server refused (a problem body is printed), 2 usage, 3 unreachable.
REFUSED, UNREACHABLE = 1, 3


def home() -> Path:
    return Path(os.environ.get("ACCORDWATCH_HOME", ROOT / ".local"))


def api_key() -> str | None:
    """ACCORDWATCH_API_KEY, else the dev key of the environment or of the local stack."""
    for name in ("ACCORDWATCH_API_KEY", "ACCORDWATCH_DEV_KEY"):
        if os.environ.get(name):
            return os.environ[name]
    stored = home() / "dev-key"
    return stored.read_text().strip() if stored.exists() else None


def _url(name: str, port_var: str, default: int) -> str:
    explicit = os.environ.get(f"ACCORDWATCH_{name.upper()}_URL")
    return explicit or f"http://127.0.0.1:{os.environ.get(port_var, default)}"


IngestUrl = Annotated[str, typer.Option(envvar="ACCORDWATCH_INGEST_URL", help="Ingest base URL.")]
ProjectorUrl = Annotated[str, typer.Option(envvar="ACCORDWATCH_PROJECTOR_URL", help="Query API base URL.")]
AlertsUrl = Annotated[str, typer.Option(envvar="ACCORDWATCH_ALERTS_URL", help="Alerts API base URL.")]


def _client(base: str, timeout: float = 30.0) -> httpx.Client:
    key = api_key()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=base, headers=headers, timeout=timeout)


def _fail(response: httpx.Response) -> typer.Exit:
    """Print a problem body readably and return the exit to raise."""
    try:
        problem = response.json()
    except ValueError:
        problem = {"title": response.reason_phrase, "detail": response.text[:500]}
    err.print(f"[bold red]{response.status_code} {problem.get('title', '')}[/]: {problem.get('detail', '')}")
    for error in problem.get("errors", [])[:20]:
        where = f"[{error['index']}] " if error.get("index") is not None else ""
        err.print(f"  {where}{error.get('field')}: {error.get('reason')}")
    return typer.Exit(REFUSED)


def _unreachable(base: str, exc: Exception) -> typer.Exit:
    err.print(f"[bold red]cannot reach {base}[/]: {exc}. Is the stack running (`make run`)?")
    return typer.Exit(UNREACHABLE)


# --------------------------------------------------------------------------- run


@app.command()
def run(
    examples: Annotated[bool, typer.Option(help="Load examples/ once into a fresh broker.")] = True,
    brokers: Annotated[int, typer.Option(
        help="1, or 3 for a local three-node KRaft cluster (replication 3, min in-sync 2; its state in "
             "$ACCORDWATCH_HOME/cluster).")] = 1,
    exit_after_load: Annotated[bool, typer.Option(hidden=True, help="Stop once examples are projected.")] = False,
) -> None:
    """Run the whole local stack (Kafka broker, ingest, projector, alerts) until Ctrl-C."""
    from services.stack.local import LocalStack, Ports

    if brokers not in (1, 3):
        raise typer.BadParameter("1 or 3", param_hint="--brokers")
    data = home()
    data.mkdir(parents=True, exist_ok=True)
    key = os.environ.get("ACCORDWATCH_DEV_KEY") or _dev_key(data)
    # The cluster's read model and logs live apart from the one-broker stack's: the positions a
    # read model stores belong to the topic it was built from.
    state = data if brokers == 1 else data / "cluster"
    state.mkdir(exist_ok=True)
    stack = LocalStack(
        home=state,
        ports=Ports.from_env(),
        dev_key=key,
        database_url=os.environ.get("ACCORDWATCH_DATABASE_URL") or os.environ.get("DATABASE_URL"),
        brokers=brokers,
        sealing_keys=os.environ.get("ACCORDWATCH_WEBHOOK_SECRET_KEYS") or _sealing_keys(data),
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        what = "the Kafka broker" if brokers == 1 else f"a {brokers}-node Kafka cluster"
        with console.status(f"starting {what} (first run assembles it from Maven Central)"):
            stack.start_broker()
        with console.status("starting ingest, the projector and alerts"):
            stack.start()
        marker = stack.kafka_dir / "examples-loaded"
        if examples and not marker.exists():
            with _client(stack.urls["ingest"]) as client:
                accepted = _post_lines(client, list(_read_lines(EXAMPLES)), show=False)
            marker.write_text(f"{accepted}\n")
            console.print(f"loaded {accepted} example events from {EXAMPLES.relative_to(ROOT)}")
        _wait_projected(stack.urls["projector"], key)
        _print_stack(stack, key)
        if exit_after_load:
            return
        console.print("[dim]Ctrl-C stops everything.[/]")
        while not stop.wait(1.0):
            for name, proc in stack.services.items():
                if not proc.running():
                    err.print(f"[bold red]{name} exited[/]; see {proc.log}")
                    raise typer.Exit(1)
    finally:
        with console.status("stopping"):
            stack.stop()
        console.print("stopped.")


def _dev_key(data: Path) -> str:
    return _kept(data / "dev-key", new_key)


def _sealing_keys(data: Path) -> str:
    """The local stack's key that seals webhook secrets (made once, kept in .local like the dev key)."""
    from services.alerts.sealing import new_sealing_key

    return _kept(data / "webhook-secret-keys", new_sealing_key)


def _kept(stored: Path, make: Any) -> str:
    if not stored.exists():
        stored.write_text(make() + "\n")
        stored.chmod(0o600)
    return stored.read_text().strip()


def _wait_projected(projector: str, key: str, timeout: float = 60.0) -> None:
    """Wait until the query API lists agreements (the examples are folded)."""
    import time

    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=projector, headers={"Authorization": f"Bearer {key}"}, timeout=5) as client:
        while time.monotonic() < deadline:
            response = client.get("/v1/agreements")
            if response.status_code == 200 and response.json()["items"]:
                return
            time.sleep(0.2)
    err.print("[yellow]the projector has not shown any agreement yet[/]")


def _print_stack(stack: Any, key: str) -> None:
    table = Table(title="accordwatch is running", show_header=True)
    table.add_column("what")
    table.add_column("where")
    table.add_row("Kafka" if stack.brokers == 1 else f"Kafka ({stack.brokers} nodes)", stack.bootstrap)
    table.add_row("ingest", f"{stack.urls['ingest']}  (POST /v1/events, /docs)")
    table.add_row("status page", f"{stack.urls['projector']}/status  (for readers; ?as_of=2020-03-10)")
    table.add_row("query API", f"{stack.urls['projector']}  (GET /v1/agreements, /docs)")
    table.add_row("projector worker metrics", f"{stack.urls['projector-worker']}/metrics")
    table.add_row("alerts API", f"{stack.urls['alerts']}  (GET /v1/alerts, POST /v1/subscriptions, /docs)")
    table.add_row("alerts worker metrics", f"{stack.urls['alerts-worker']}/metrics")
    table.add_row("read model", stack.db_url)
    table.add_row("alert store", stack.alerts_db_url)
    table.add_row("logs", str(stack.home / "logs"))
    table.add_row("API key (dev, every scope)", key)
    console.print(table)
    console.print(
        f'try: curl -s -H "Authorization: Bearer {key}" {stack.urls["projector"]}/v1/agreements\n'
        "     accordwatch status    accordwatch policies    accordwatch timeline us-gt-aca-2019\n"
        "     accordwatch replay\n"
        "     accordwatch alerts    accordwatch subscribe http://127.0.0.1:9000/hook"
    )


# --------------------------------------------------------------------------- post


def _read_lines(path: Path | None) -> Iterator[Any]:
    """Events from a JSON file (object, array or {"events": [...]}) or NDJSON; `None` is stdin."""
    text = sys.stdin.read() if path is None else path.read_text()
    stripped = text.lstrip()
    if stripped.startswith("[") or (stripped.startswith("{") and "\n{" not in stripped.strip()):
        value = json.loads(text)
        if isinstance(value, dict) and "events" in value:
            value = value["events"]
        yield from value if isinstance(value, list) else [value]
        return
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"line {number}: not JSON ({exc.msg})") from None


def _post_lines(client: httpx.Client, events: list[Any], *, show: bool, batch: int = 1000, retries: int = 5) -> int:
    from services.posting import Refused, post_batches

    with Progress(
        TextColumn("posting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, disable=not show
    ) as progress:
        task = progress.add_task("post", total=len(events))
        try:
            return post_batches(client, events, batch=batch, retries=retries,
                                on_batch=lambda n: progress.advance(task, n))
        except Refused as refused:
            if refused.start:
                err.print(f"{refused.accepted} events before index {refused.start} were accepted; "
                          "posting the same file again adds none of them twice")
            raise _fail(refused.response) from None


@app.command()
def post(
    file: Annotated[str, typer.Argument(help="A JSON or NDJSON file of events, or - for stdin.")],
    ingest: IngestUrl = "http://127.0.0.1:8080",
    retries: Annotated[int, typer.Option(min=0, max=20, help="Retries of a batch while Kafka is unavailable.")] = 5,
) -> None:
    """Post events through the ingest API (batches of 1,000, all or nothing per batch).

    Events without an id get a UUIDv7 derived from their content before the first attempt, so a
    retry, or posting the same file again after a failure, never records an event twice.
    """
    path = None if file == "-" else Path(file)
    if path is not None and not path.exists():
        raise typer.BadParameter(f"{file} does not exist", param_hint="FILE")
    events = list(_read_lines(path))
    try:
        with _client(ingest) as client:
            accepted = _post_lines(client, events, show=len(events) > 1000, retries=retries)
    except httpx.TransportError as exc:
        raise _unreachable(ingest, exc) from None
    console.print(f"{accepted} events accepted")


# --------------------------------------------------------------------------- read


def _get(client: httpx.Client, path: str, **params: Any) -> Any:
    response = client.get(path, params={k: v for k, v in params.items() if v is not None})
    if response.status_code != 200:
        raise _fail(response)
    return response.json()


@app.command()
def status(
    as_of: Annotated[str | None, typer.Option("--as-of", help="World date (YYYY-MM-DD) to ask about.")] = None,
    projector: ProjectorUrl = "http://127.0.0.1:8081",
) -> None:
    """A table of every agreement's status, now or as of a date."""
    try:
        with _client(projector) as client:
            ids: list[str] = []
            token = None
            while True:
                page = _get(client, "/v1/agreements", limit=500, page_token=token)
                ids.extend(item["id"] for item in page["items"])
                token = page["next"]
                if not token:
                    break
            rows = [_get(client, f"/v1/agreements/{i}", as_of=as_of) for i in ids]
    except httpx.TransportError as exc:
        raise _unreachable(projector, exc) from None
    table = Table(title=f"Agreements{' as of ' + as_of if as_of else ''}")
    for column in ("agreement", "partner", "status", "since", "transfers / target", "last event", "confidence"):
        table.add_column(column)
    for a in rows:
        total = f"{'~' if a.get('transfers_approximate') else ''}{a.get('transfers_total', 0)}"
        target = a.get("transfer_target")
        table.add_row(
            a["id"],
            a.get("partner") or "",
            a.get("status") or "(nothing yet)",
            str(a.get("status_since") or ""),
            f"{total} / {target if target else '-'}",
            f"{a.get('last_event_type') or ''} {a.get('last_event_at') or ''}".strip(),
            a.get("confidence") or "",
        )
    console.print(table)


@app.command()
def policies(
    as_of: Annotated[str | None, typer.Option("--as-of", help="Date (YYYY-MM-DD) or time to ask about.")] = None,
    projector: ProjectorUrl = "http://127.0.0.1:8081",
) -> None:
    """A table of every policy named in `affects`: in effect, blocked or partly blocked, now or as of a date."""
    try:
        with _client(projector) as client:
            items: list[dict[str, Any]] = []
            token = None
            while True:
                page = _get(client, "/v1/policies", limit=500, page_token=token)
                items.extend(page["items"])
                token = page["next"]
                if not token:
                    break
            if as_of:
                items = [_get(client, f"/v1/policies/{p['id']}", as_of=as_of) for p in items]
    except httpx.TransportError as exc:
        raise _unreachable(projector, exc) from None
    table = Table(title=f"Policies{' as of ' + as_of if as_of else ''}")
    for column in ("policy", "status", "since", "rulings (stayed by)", "stay requests pending", "next change"):
        table.add_column(column)
    colours = {"in_effect": "green", "blocked": "bold red", "partly_blocked": "yellow"}
    for p in items:
        where = f" in {', '.join(p['blocked_in'])}" if p["blocked_in"] else ""
        rulings = "\n".join(
            f"{g['court']}: {g['outcome']}{' in ' + ', '.join(g['regions']) if g['regions'] else ''}"
            + (f" (stayed by {', '.join(s['court'] + ' ' + s['decision'] for s in g['stayed_by'])})"
               if g["stayed_by"] else "")
            for g in p["governing"])
        requests = "\n".join(f"{q['requested_by']} asked {q['court']}" for q in p["pending_stay_requests"])
        change = p["next_change"]
        upcoming = "" if change is None else (
            f"{change['at'][:10]}: {change['status'].replace('_', ' ')}"
            + (f" in {', '.join(change['blocked_in'])}" if change["blocked_in"] else ""))
        table.add_row(p["id"], f"[{colours[p['status']]}]{p['status'].replace('_', ' ')}[/]{where}",
                      (p["since"] or "")[:10], rulings, requests, upcoming)
    console.print(table)


@app.command()
def timeline(
    subject: Annotated[str, typer.Argument(help="An agreement or case id, e.g. us-gt-aca-2019.")],
    known_at: Annotated[str | None, typer.Option("--known-at", help="Only events recorded by then.")] = None,
    projector: ProjectorUrl = "http://127.0.0.1:8081",
) -> None:
    """Every event of an agreement or case, in occurred_at order, with corrections shown."""
    try:
        with _client(projector) as client:
            response = client.get(
                f"/v1/agreements/{subject}/timeline", params={"known_at": known_at} if known_at else {}
            )
            if response.status_code == 404:
                response = client.get(
                    f"/v1/cases/{subject}/timeline", params={"known_at": known_at} if known_at else {}
                )
            if response.status_code != 200:
                raise _fail(response)
            items = response.json()["items"]
    except httpx.TransportError as exc:
        raise _unreachable(projector, exc) from None
    table = Table(title=f"Timeline of {subject}")
    for column in ("occurred", "type", "confidence", "summary", "note"):
        table.add_column(column)
    for item in items:
        note = item.get("annotation") or {}
        table.add_row(
            str(item.get("occurred_at")),
            item.get("type", ""),
            item.get("confidence", ""),
            item.get("summary") or "",
            note.get("status", "") if isinstance(note, dict) else str(note),
        )
    console.print(table)


@app.command()
def replay(
    database_url: Annotated[str | None, typer.Option(envvar="ACCORDWATCH_DATABASE_URL", help="Read model URL.")] = None,
) -> None:
    """Rebuild every read model from offset 0 into fresh tables, then swap them in."""
    from services.projector.replay import rebuild_with_progress
    from services.projector.settings import ProjectorSettings

    overrides = {"database_url": database_url} if database_url else {}
    if not database_url and not os.environ.get("DATABASE_URL"):
        overrides["database_url"] = f"sqlite:///{home() / 'accordwatch.db'}"
    settings = ProjectorSettings(**overrides)  # type: ignore[arg-type]
    result = rebuild_with_progress(settings, console=err)
    console.print(
        f"rebuilt generation {result.generation} from {result.records} records "
        f"({result.events_per_second:,.0f} events/s); swapped in"
    )


@app.command()
def keys(
    name: Annotated[str, typer.Argument(help="Who the key is for.")],
    scope: Annotated[list[str], typer.Option("--scope", help="events:write, read, subscriptions:admin")],
    file: Annotated[Path, typer.Option(envvar="ACCORDWATCH_API_KEYS_FILE", help="The keys file to add to.")],
) -> None:
    """Create an API key: the key is printed once, only its hash is stored."""
    from services.platform.auth import ALL_SCOPES, hash_key

    unknown = set(scope) - ALL_SCOPES
    if unknown:
        raise typer.BadParameter(f"unknown scope {sorted(unknown)}; choose from {sorted(ALL_SCOPES)}")
    entries = json.loads(file.read_text()) if file.exists() else []
    key = new_key()
    entries.append({"name": name, "sha256": hash_key(key), "scopes": sorted(set(scope))})
    file.write_text(json.dumps(entries, indent=2) + "\n")
    file.chmod(0o600)
    console.print(key)


# --------------------------------------------------------------------------- alerts


@app.command()
def alerts(
    state: Annotated[str | None, typer.Option(help="firing or resolved.")] = None,
    subject: Annotated[str | None, typer.Option(help="Only this agreement or case.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many, newest first.")] = 50,
    alerts_url: AlertsUrl = "http://127.0.0.1:8082",
) -> None:
    """A table of alerts, newest first."""
    if state not in (None, "firing", "resolved"):
        raise typer.BadParameter("firing or resolved", param_hint="--state")
    try:
        with _client(alerts_url) as client:
            items = _get(client, "/v1/alerts", state=state, subject=subject, limit=limit)["items"]
    except httpx.TransportError as exc:
        raise _unreachable(alerts_url, exc) from None
    table = Table(title="Alerts")
    for column in ("fired", "severity", "rule", "subject", "state", "summary"):
        table.add_column(column)
    colours = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
    for a in items:
        state_text = a["state"] + (f" ({a['resolution']})" if a.get("resolution") else "")
        if a.get("historical"):
            state_text += " [dim]history, not sent[/]"
        table.add_row(a["fired_at"][:19], f"[{colours.get(a['severity'], '')}]{a['severity']}[/]", a["rule"],
                      a["subject"], state_text, a["summary"])
    console.print(table)


@app.command()
def subscribe(
    url: Annotated[str, typer.Argument(help="The receiver's http(s) URL.")],
    rule: Annotated[list[str] | None, typer.Option("--rule", help="Only this rule (repeatable).")] = None,
    severity: Annotated[list[str] | None, typer.Option("--severity", help="Only this severity (repeatable).")] = None,
    subject: Annotated[list[str] | None, typer.Option("--subject", help="Only this agreement or case.")] = None,
    description: Annotated[str | None, typer.Option(help="A note for whoever reads the list.")] = None,
    ping: Annotated[bool, typer.Option(help="Send a signed test ping right away.")] = False,
    alerts_url: AlertsUrl = "http://127.0.0.1:8082",
) -> None:
    """Subscribe a webhook to alerts; prints the signing secret once."""
    body = {"url": url, "rules": rule or [], "severities": severity or [], "subjects": subject or [],
            "description": description}
    try:
        with _client(alerts_url) as client:
            response = client.post("/v1/subscriptions", json=body)
            if response.status_code != 201:
                raise _fail(response)
            created = response.json()
            pinged = client.post(f"/v1/subscriptions/{created['id']}/test").json() if ping else None
    except httpx.TransportError as exc:
        raise _unreachable(alerts_url, exc) from None
    console.print(f"subscription {created['id']} -> {created['url']}")
    console.print(f"signing secret (shown once, keep it): [bold]{created['secret']}[/]")
    if pinged is not None:
        console.print(f"test ping: {pinged['outcome']} ({pinged.get('status_code') or pinged.get('error')})")


@app.command()
def migrate(
    database_url: Annotated[str | None, typer.Option(envvar="ACCORDWATCH_DATABASE_URL", help="Read model URL.")] = None,
    alerts_database_url: Annotated[
        str | None, typer.Option(envvar="ACCORDWATCH_ALERTS_DATABASE_URL", help="Alert store URL.")
    ] = None,
) -> None:
    """`alembic upgrade head` for the read model and the alert store (the compose stack's migration job)."""
    from services.alerts.migrate import reseal
    from services.alerts.migrate import upgrade as upgrade_alerts
    from services.alerts.sealing import Sealer
    from services.alerts.settings import AlertsSettings
    from services.platform.db import make_engine
    from services.projector.readmodel.migrate import upgrade as upgrade_read_model

    read_model = database_url or os.environ.get("DATABASE_URL") or f"sqlite:///{home() / 'accordwatch.db'}"
    alert_store = alerts_database_url or f"sqlite:///{home() / 'alerts.db'}"
    keys = AlertsSettings().sealing_keys()
    local = home() / "webhook-secret-keys"
    if not keys and local.exists():
        keys = [k for k in local.read_text().replace("\n", ",").split(",") if k.strip()]
    sealer = Sealer(keys) if keys else None
    engine = make_engine(read_model)
    try:
        upgrade_read_model(engine)
    finally:
        engine.dispose()
    console.print(f"read model: at head ({engine.url.render_as_string(hide_password=True)})")
    engine = make_engine(alert_store)
    try:
        upgrade_alerts(engine, sealer)
        resealed = reseal(engine, sealer) if sealer is not None else 0
    finally:
        engine.dispose()
    console.print(f"alert store: at head ({engine.url.render_as_string(hide_password=True)}); "
                  f"{resealed} webhook secrets sealed under the newest key")


@app.command("sealing-key")
def sealing_key() -> None:
    """Print a new key for ACCORDWATCH_WEBHOOK_SECRET_KEYS (put it first; keep the old ones until migrated)."""
    from services.alerts.sealing import new_sealing_key

    console.print(new_sealing_key())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
