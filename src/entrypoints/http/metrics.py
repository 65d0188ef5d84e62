"""Prometheus metrics of one process, in a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_PROCESSING_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)


class Metrics:
    """The service's counters, histograms and gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "imagecore_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "imagecore_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.uploaded_bytes = Counter(
            "imagecore_uploaded_bytes", "Bytes of accepted uploads", registry=r
        )
        self.files = Counter(
            "imagecore_files",
            "Files that reached a status, by product",
            ["product", "status"],
            registry=r,
        )
        self.processing = Histogram(
            "imagecore_processing_seconds",
            "Time from claim to final status, by product",
            ["product"],
            buckets=_PROCESSING_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("imagecore_queue_depth", "Jobs waiting in the broker", registry=r)
        self.storage_bytes = Gauge(
            "imagecore_storage_bytes", "Bytes held by the storage, where it can tell", registry=r
        )

        self.storage_measured_at = float("-inf")

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
