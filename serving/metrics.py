"""The service's Prometheus metrics, one registry per app so several apps can share a process
(as the tests do)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sunshine_requests_total", "requests", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "sunshine_request_seconds",
            "request latency",
            ["route"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.scores = Histogram(
            "sunshine_score",
            "returned probabilities",
            ["task"],
            registry=self.registry,
            buckets=tuple(i / 10 for i in range(1, 11)),
        )

    def text(self) -> str:
        return generate_latest(self.registry).decode()
