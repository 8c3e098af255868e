"""Projector metrics (worker and query API), declared once."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

API_REQUESTS = Counter(
    "accordwatch_projector_requests_total", "HTTP requests answered by the query API", ["route", "status"]
)
EVENTS_APPLIED = Counter(
    "accordwatch_projector_events_applied_total", "Events folded into the read model (new ids only)"
)
DUPLICATES = Counter(
    "accordwatch_projector_duplicates_total", "Redelivered events skipped because their id was applied"
)
REFOLDS = Counter(
    "accordwatch_projector_refolds_total", "Subjects re-folded from all their events (late, retracted or corrected)"
)
DLQ_RECORDS = Counter(
    "accordwatch_projector_dlq_records_total",
    "Records parked on the dead-letter topic (they do not decode, or applying them failed)", ["reason"]
)
BATCH_RETRIES = Counter(
    "accordwatch_projector_batch_retries_total",
    "Tries of a batch that failed transiently (database down or locked, DLQ away); the log names the error",
)
RECORDS_BEHIND = Counter(
    "accordwatch_projector_records_behind_total",
    "Records dropped because the stored position was already past them (redelivered, or applied by another worker)",
)
POSITION_SEEKS = Counter(
    "accordwatch_projector_position_seeks_total",
    "Times a partition was sought back to the position stored with the read model",
)
BATCH_SECONDS = Histogram(
    "accordwatch_projector_batch_apply_seconds", "Time to apply one batch in one transaction",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
APPLY_DELAY = Histogram(
    "accordwatch_projector_append_to_applied_seconds",
    "From a record's append to the topic (its Kafka timestamp) to its batch's commit",
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
CONSUMER_LAG = Gauge(
    "accordwatch_projector_consumer_lag_records", "Records on the topic not yet applied", ["partition"]
)
STALENESS = Gauge(
    "accordwatch_projector_staleness_seconds",
    "Seconds since the newest applied event was recorded by ingest",
)
AGREEMENTS_BY_STATUS = Gauge(
    "accordwatch_projector_agreements", "Agreements by folded status", ["status"]
)
TRANSFERS_TOTAL = Gauge(
    "accordwatch_projector_transfers_total_people", "transfers_total per agreement", ["agreement"]
)
OPEN_DEADLINES = Gauge("accordwatch_projector_open_deadlines", "Open deadlines still ahead")
NEAREST_DEADLINE = Gauge(
    "accordwatch_projector_nearest_deadline_seconds", "Seconds to the nearest open deadline"
)
DUE_REFOLDS = Counter(
    "accordwatch_projector_due_refolds_total",
    "Subjects folded again because a scheduled effect came (a ruling taking effect, a termination's date)",
)
POLICIES_BY_STATUS = Gauge(
    "accordwatch_projector_policies", "Policies by status now (in_effect, blocked, partly_blocked)", ["status"]
)
