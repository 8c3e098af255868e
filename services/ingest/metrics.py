"""Ingest metrics, declared once."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "accordwatch_ingest_requests_total", "HTTP requests answered by ingest", ["route", "status"]
)
EVENTS_ACCEPTED = Counter(
    "accordwatch_ingest_events_accepted_total", "Events acknowledged by Kafka and answered 202"
)
REJECTIONS = Counter(
    "accordwatch_ingest_rejections_total", "Requests rejected, by reason", ["reason"]
)
PRODUCE_LATENCY = Histogram(
    "accordwatch_ingest_produce_latency_seconds",
    "Time from handing records to the producer to Kafka's acknowledgement, per request",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
