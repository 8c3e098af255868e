"""Alerts metrics (worker and API), declared once."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

API_REQUESTS = Counter(
    "accordwatch_alerts_requests_total", "HTTP requests answered by the alerts API", ["route", "status"]
)
EVENTS_APPLIED = Counter("accordwatch_alerts_events_applied_total", "Events evaluated by the rules (new ids only)")
FIRED = Counter("accordwatch_alerts_fired_total", "Alerts that started firing", ["rule", "severity"])
FIRING = Gauge("accordwatch_alerts_firing", "Alerts firing now", ["rule", "severity"])
NOTIFICATIONS = Counter(
    "accordwatch_alerts_notifications_total", "Alert state changes and reminders recorded", ["sent"]
)
DELIVERIES = Counter(
    "accordwatch_alerts_deliveries_total",
    "Webhook attempts by outcome (succeeded, retrying, failed, gone; stale: sent under a lapsed lease)",
    ["outcome"],
)
DELIVERY_LATENCY = Histogram(
    "accordwatch_alerts_delivery_latency_seconds", "From the alert's change to the receiver's 2xx",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0),
)
OUTBOX_DEPTH = Gauge("accordwatch_alerts_outbox_depth", "Deliveries waiting to be sent or retried")
SUBSCRIPTIONS_DISABLED = Gauge("accordwatch_alerts_subscriptions_disabled", "Subscriptions disabled by failures or 410")
CONSUMER_LAG = Gauge(
    "accordwatch_alerts_consumer_lag_records", "Records on the topic not yet evaluated", ["partition"]
)
DLQ_RECORDS = Counter(
    "accordwatch_alerts_dlq_records_total",
    "Records parked on the dead-letter topic (they do not decode, or applying them failed)", ["reason"]
)
BATCH_RETRIES = Counter(
    "accordwatch_alerts_batch_retries_total",
    "Tries of a batch that failed transiently (database down or locked, DLQ away); the log names the error",
)
RECORDS_BEHIND = Counter(
    "accordwatch_alerts_records_behind_total",
    "Records dropped because the stored position was already past them (redelivered, or applied by another worker)",
)
POSITION_SEEKS = Counter(
    "accordwatch_alerts_position_seeks_total",
    "Times a partition was sought back to the position stored with the alert state",
)
DB_STATEMENTS = Counter(
    "accordwatch_alerts_db_statements_total", "Statements sent to the alert store, by the work that sent them",
    ["role"],
)
DB_TRANSACTIONS = Counter(
    "accordwatch_alerts_db_transactions_total", "Transactions begun on the alert store, by the work that began them",
    ["role"],
)
WEBHOOKS_IN_MEMORY = Gauge(
    "accordwatch_alerts_webhooks_in_memory", "Deliveries leased to the dispatcher: queued, in flight or being booked"
)
SUBSCRIPTIONS_SPILLED = Gauge(
    "accordwatch_alerts_subscriptions_spilled", "Subscriptions whose backlog waits in the outbox rather than in memory"
)
