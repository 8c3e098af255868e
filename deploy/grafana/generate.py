"""Generate the Grafana dashboards in deploy/grafana/dashboards/ (the JSON files are committed).

`python deploy/grafana/generate.py` rewrites them; `--check` exits 1 when they are stale.
PromQL panels select on the job names of deploy/prometheus/prometheus.yml. SQL panels read
the read model's *active generation* (projection_generation), so a replay that is still
building never shows, and a swap shows at once. SQL uses no Grafana macros, so
tests/e2e/test_observability.py runs every query as it is against PostgreSQL.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"

PROMETHEUS = {"type": "prometheus", "uid": "accordwatch-prometheus"}
READ_MODEL = {"type": "grafana-postgresql-datasource", "uid": "accordwatch-readmodel"}

# The generation queries see: projection_generation.active, 1 until the first replay swaps
# (the same rule as services/projector/readmodel/store.py:active_generation).
ACTIVE = "(SELECT COALESCE(MAX(active), 1) FROM projection_generation WHERE id = 1)"

Panel = dict[str, Any]


class Layout:
    """Places panels left to right on a 24-column grid, wrapping to the next row."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def place(self, panel: Panel, w: int, h: int) -> Panel:
        if self.x + w > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        panel["id"] = self.next_id
        self.next_id += 1
        self.x += w
        self.row_height = max(self.row_height, h)
        return panel


def prom(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False) -> dict[str, Any]:
    """A PromQL target."""
    return {"refId": ref, "datasource": PROMETHEUS, "editorMode": "code", "expr": expr,
            "legendFormat": legend or "__auto", "range": not instant, "instant": instant}


def sql(query: str, fmt: str = "table", ref: str = "A") -> dict[str, Any]:
    """A raw SQL target on the read model."""
    return {"refId": ref, "datasource": READ_MODEL, "editorMode": "code", "format": fmt, "rawQuery": True,
            "rawSql": " ".join(query.split())}


def panel(kind: str, title: str, targets: list[dict[str, Any]], *, description: str = "", unit: str = "",
          options: dict[str, Any] | None = None, overrides: list[dict[str, Any]] | None = None,
          **extra: Any) -> Panel:
    datasource = targets[0]["datasource"]
    defaults: dict[str, Any] = {"unit": unit} if unit else {}
    return {
        "type": kind, "title": title, "description": description, "datasource": datasource, "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []}, "options": options or {}, **extra,
    }


def override(field: str, **properties: Any) -> dict[str, Any]:
    return {"matcher": {"id": "byName", "options": field},
            "properties": [{"id": key, "value": value} for key, value in properties.items()]}


def dashboard(uid: str, title: str, description: str, panels: list[Panel], *, refresh: str = "30s",
              time_from: str = "now-6h") -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "description": description, "tags": ["accordwatch"], "timezone": "utc",
        "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1, "refresh": refresh,
        "time": {"from": time_from, "to": "now"}, "templating": {"list": []}, "annotations": {"list": []},
        "links": [], "panels": panels,
    }


# -- Agreements -----------------------------------------------------------------------------------

STATUS_TABLE = f"""
SELECT a.id AS agreement,
       a.partner,
       a.status,
       a.status_since AS since,
       CASE WHEN a.transfers_approximate THEN '~' ELSE '' END || a.transfers_total
         || ' / ' || COALESCE(a.transfer_target::text, 'no target') AS "transfers vs target",
       CASE WHEN a.transfer_target > 0
            THEN round(100.0 * a.transfers_total / a.transfer_target, 1) END AS "% of target",
       a.last_event_at AS "last event",
       a.last_event_type AS "last event type",
       a.confidence
FROM agreements a
WHERE a.generation = {ACTIVE}
ORDER BY a.id
"""

TRANSFERS_OVER_TIME = f"""
SELECT to_timestamp(t.month || '-01', 'YYYY-MM-DD') AS "time",
       t.agreement AS metric,
       SUM(SUM(t.count)) OVER (PARTITION BY t.agreement ORDER BY t.month) AS transferred
FROM transfers t
WHERE t.generation = {ACTIVE}
GROUP BY t.agreement, t.month
ORDER BY 1
"""

DEADLINES = f"""
SELECT d.due_at AS due,
       CASE WHEN d.status = 'open' AND d.due_at <= now() THEN 'passed' ELSE d.status END AS state,
       EXTRACT(EPOCH FROM (d.due_at - now()))::bigint AS "time left",
       d.subject,
       d.kind,
       d.description,
       d.status_reason AS why,
       d.confidence
FROM deadlines d
WHERE d.generation = {ACTIVE}
ORDER BY d.status <> 'open', d.due_at <= now(), d.due_at
"""


POLICIES = f"""
SELECT p.id AS policy,
       p.status,
       (SELECT string_agg(region, ', ' ORDER BY region)
          FROM jsonb_array_elements_text(p.blocked_in) AS region) AS "blocked in",
       p.since,
       p.next_change_at AS "next change",
       p.next_change_status AS "then",
       p.pending_stay_requests AS "stay requests pending"
FROM policies p
WHERE p.generation = {ACTIVE}
ORDER BY p.status = 'in_effect', p.id
"""


def agreements() -> dict[str, Any]:
    """The status panel: agreements, policies, transfers, deadlines, alerts firing."""
    grid = Layout()
    panels = [
        grid.place(panel(
            "stat", "Agreements by status",
            [prom('sum by (status) (accordwatch_projector_agreements{job="projector-api"})', "{{status}}",
                  instant=True)],
            description="How many agreements are in each folded status (projector query API, active generation).",
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name",
                     "colorMode": "none", "graphMode": "none"},
        ), 12, 4),
        grid.place(panel(
            "stat", "Open deadlines ahead",
            [prom('sum(accordwatch_projector_open_deadlines{job="projector-api"})', "open", instant=True)],
            description="Deadlines still ahead and open (not held by a stay).",
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value", "graphMode": "none"},
        ), 6, 4),
        grid.place(panel(
            "stat", "Nearest deadline in",
            [prom('min(accordwatch_projector_nearest_deadline_seconds{job="projector-api"})', "nearest",
                  instant=True)],
            description="Time to the nearest open deadline; no data when none is ahead.", unit="s",
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value", "graphMode": "none"},
        ), 6, 4),
        grid.place(panel(
            "table", "Agreements", [sql(STATUS_TABLE)],
            description="One row per agreement from the read model: status and since when, transfers against "
                        "the announced target (~ = approximate figures), the last event and its confidence.",
            overrides=[override("% of target", unit="percent", decimals=1),
                       override("since", unit="dateTimeAsIsoNoDateIfToday"),
                       override("last event", unit="dateTimeAsIsoNoDateIfToday")],
            options={"showHeader": True, "cellHeight": "sm"},
        ), 24, 8),
        grid.place(panel(
            "stat", "Policies by status",
            [prom('sum by (status) (accordwatch_projector_policies{job="projector-api"})', "{{status}}",
                  instant=True)],
            description="Policies (slugs named in affects) in effect, blocked, or blocked in some regions now.",
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name",
                     "colorMode": "none", "graphMode": "none"},
        ), 6, 7),
        grid.place(panel(
            "table", "Policies", [sql(POLICIES)],
            description="Each policy now, from the rulings blocking it that are in force and not stayed: "
                        "in_effect, blocked, or partly_blocked in the regions listed; since when; the next "
                        "scheduled change (a ruling or a stay decision taking effect) and the stay requests "
                        "still pending. Blocked ones first.",
            overrides=[override("since", unit="dateTimeAsIso"), override("next change", unit="dateTimeAsIso")],
            options={"showHeader": True, "cellHeight": "sm"},
        ), 18, 7),
        grid.place(panel(
            "timeseries", "Transfers over time (cumulative, per agreement)",
            [sql(TRANSFERS_OVER_TIME, fmt="time_series")],
            description="People transferred under each agreement, month by month, summed over nationalities "
                        "(read model transfers table). Shows the last ten years whatever the time picker says.",
            options={"legend": {"displayMode": "list", "placement": "bottom"}}, timeFrom="10y",
        ), 12, 8),
        grid.place(panel(
            "bargauge", "Transfers total per agreement",
            [prom('max by (agreement) (accordwatch_projector_transfers_total_people{job="projector-api"})',
                  "{{agreement}}", instant=True)],
            description="transfers_total of each agreement now: the latest cumulative report plus the "
                        "incremental ones after it.",
            options={"orientation": "horizontal", "displayMode": "basic",
                     "reduceOptions": {"calcs": ["lastNotNull"]}},
        ), 12, 8),
        grid.place(panel(
            "table", "Deadlines, their state and time left", [sql(DEADLINES)],
            description="Deadlines from DeadlineSet events and the effective_at of rulings and stay decisions, "
                        "in their state as of now: open (ahead), stayed (a stay holds the ruling), met (it took "
                        "effect), passed. Time left is negative once due; open ones come first.",
            overrides=[override("time left", unit="s"), override("due", unit="dateTimeAsIso")],
        ), 14, 8),
        grid.place(panel(
            "table", "Alerts firing",
            [prom('sum by (rule, severity) (accordwatch_alerts_firing{job="alerts-worker"})', "", instant=True)],
            description="Alerts in the firing state now, by rule and severity (alerts worker).",
            options={"showHeader": True},
            transformations=[{"id": "labelsToFields", "options": {"mode": "columns"}},
                             {"id": "organize", "options": {"excludeByName": {"Time": True},
                                                            "renameByName": {"Value": "firing"}}}],
        ), 10, 8),
    ]
    return dashboard("accordwatch-agreements", "Agreements",
                     "Status of every agreement and policy, transfers, deadlines and the alerts firing.", panels)


# -- Pipeline -------------------------------------------------------------------------------------

RATE = "$__rate_interval"


def pipeline() -> dict[str, Any]:
    """The operations view: ingest, Kafka consumers, projection, dead letters, webhooks."""
    grid = Layout()
    q = "accordwatch"
    panels = [
        grid.place(panel(
            "stat", "Processes up",
            [prom('up{job=~"ingest|projector-api|projector-worker|alerts-api|alerts-worker"}', "{{job}}",
                  instant=True)],
            description="1 when Prometheus scraped the process at its last attempt.",
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name",
                     "colorMode": "background", "graphMode": "none"},
        ), 24, 3),
        grid.place(panel(
            "timeseries", "Ingest: events accepted and requests",
            [prom(f'sum(rate({q}_ingest_events_accepted_total{{job="ingest"}}[{RATE}]))', "events accepted"),
             prom(f'sum by (status) (rate({q}_ingest_requests_total{{job="ingest"}}[{RATE}]))',
                  "HTTP {{status}}", "B")],
            unit="reqps",
        ), 8, 8),
        grid.place(panel(
            "timeseries", "Ingest: rejections by reason",
            [prom(f'sum by (reason) (rate({q}_ingest_rejections_total{{job="ingest"}}[{RATE}]))', "{{reason}}")],
            description="Requests refused before Kafka (invalid events, auth, size, Kafka unavailable).",
            unit="reqps",
        ), 8, 8),
        grid.place(panel(
            "timeseries", "Ingest: produce latency (until Kafka acked)",
            [prom(f'histogram_quantile({p}, sum by (le) (rate({q}_ingest_produce_latency_seconds_bucket'
                  f'{{job="ingest"}}[{RATE}])))', f"p{int(p * 100)}", ref)
             for p, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))],
            unit="s",
        ), 8, 8),
        grid.place(panel(
            "timeseries", "Consumer lag per group (records)",
            [prom(f'sum({q}_projector_consumer_lag_records{{job="projector-worker"}})', "accordwatch-projector"),
             prom(f'sum({q}_alerts_consumer_lag_records{{job="alerts-worker"}})', "accordwatch-alerts", "B")],
            description="Records on the events topic not yet applied, summed over partitions, per consumer group.",
        ), 8, 8),
        grid.place(panel(
            "timeseries", "Projection staleness",
            [prom(f'max({q}_projector_staleness_seconds{{job="projector-worker"}})', "staleness"),
             prom(f'histogram_quantile(0.99, sum by (le) (rate({q}_projector_append_to_applied_seconds_bucket'
                  f'{{job="projector-worker"}}[{RATE}])))', "p99 append to applied", "B")],
            description="Seconds since the newest applied event was recorded by ingest; it grows while no "
                        "events arrive, so read it together with the lag. The p99 from a record's append to "
                        "the topic to the commit of its batch is the freshness the query API gives.",
            unit="s",
        ), 8, 8),
        grid.place(panel(
            "timeseries", "Projector: events applied and batch time",
            [prom(f'sum(rate({q}_projector_events_applied_total{{job="projector-worker"}}[{RATE}]))', "applied/s"),
             prom(f'histogram_quantile(0.95, sum by (le) (rate({q}_projector_batch_apply_seconds_bucket'
                  f'{{job="projector-worker"}}[{RATE}])))', "p95 batch seconds", "B")],
            overrides=[override("p95 batch seconds", unit="s")],
        ), 8, 8),
        grid.place(panel(
            "stat", "Parked records and retries",
            [prom(f'sum by (reason) ({q}_projector_dlq_records_total{{job="projector-worker"}})',
                  "projector parked {{reason}}", instant=True),
             prom(f'sum by (reason) ({q}_alerts_dlq_records_total{{job="alerts-worker"}})',
                  "alerts parked {{reason}}", "B", instant=True),
             prom(f'sum({q}_projector_batch_retries_total{{job="projector-worker"}})',
                  "projector batch retries", "C", instant=True),
             prom(f'sum({q}_alerts_batch_retries_total{{job="alerts-worker"}})',
                  "alerts batch retries", "D", instant=True)],
            description="Records parked on the dead-letter topic (they do not decode, or applying them failed), "
                        "and tries of batches that failed transiently (database or DLQ away); totals since the "
                        "workers started.",
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name",
                     "colorMode": "value", "graphMode": "none"},
        ), 8, 6),
        grid.place(panel(
            "timeseries", "Webhook deliveries by outcome",
            [prom(f'sum by (outcome) (rate({q}_alerts_deliveries_total{{job="alerts-worker"}}[{RATE}]))',
                  "{{outcome}}")],
            description="Attempts: succeeded, retrying, failed (retries exhausted), gone (410).",
            unit="reqps",
        ), 8, 6),
        grid.place(panel(
            "timeseries", "Webhook latency (alert change to 2xx)",
            [prom(f'histogram_quantile({p}, sum by (le) (rate({q}_alerts_delivery_latency_seconds_bucket'
                  f'{{job="alerts-worker"}}[{RATE}])))', f"p{int(p * 100)}", ref)
             for p, ref in ((0.5, "A"), (0.95, "B"))],
            unit="s",
        ), 8, 6),
        grid.place(panel(
            "timeseries", "Outbox depth and disabled subscriptions",
            [prom(f'max({q}_alerts_outbox_depth{{job="alerts-worker"}})', "pending deliveries"),
             prom(f'max({q}_alerts_subscriptions_disabled{{job="alerts-worker"}})', "subscriptions disabled",
                  "B")],
        ), 8, 8),
        grid.place(panel(
            "timeseries", "Alerts fired by rule",
            [prom(f'sum by (rule, severity) (rate({q}_alerts_fired_total{{job="alerts-worker"}}[{RATE}]))',
                  "{{rule}} ({{severity}})")],
        ), 8, 8),
        grid.place(panel(
            "timeseries", "Query APIs: requests by status",
            [prom(f'sum by (status) (rate({q}_projector_requests_total{{job="projector-api"}}[{RATE}]))',
                  "projector {{status}}"),
             prom(f'sum by (status) (rate({q}_alerts_requests_total{{job="alerts-api"}}[{RATE}]))',
                  "alerts {{status}}", "B")],
            unit="reqps",
        ), 8, 8),
        grid.place(panel(
            "timeseries", "Workers: records received and rebalances (faust)",
            [prom(f'sum(rate({q}_projector_faust_messages_received_total{{job="projector-worker"}}[{RATE}]))',
                  "projector received/s"),
             prom(f'sum(rate({q}_alerts_faust_messages_received_total{{job="alerts-worker"}}[{RATE}]))',
                  "alerts received/s", "B"),
             prom(f'max({q}_projector_faust_total_rebalances{{job="projector-worker"}})',
                  "projector rebalances", "C"),
             prom(f'max({q}_alerts_faust_total_rebalances{{job="alerts-worker"}})', "alerts rebalances", "D")],
        ), 24, 8),
    ]
    return dashboard("accordwatch-pipeline", "Pipeline",
                     "Ingest, Kafka consumers, projection, dead letters and webhook delivery.", panels,
                     refresh="10s", time_from="now-1h")


DASHBOARDS = {"agreements.json": agreements, "pipeline.json": pipeline}


def render() -> dict[str, str]:
    """Every dashboard file name with its JSON text."""
    return {name: json.dumps(build(), indent=2, sort_keys=False) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    stale = []
    for name, text in render().items():
        path = OUT / name
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        OUT.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        print(f"stale dashboards (run python deploy/grafana/generate.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
