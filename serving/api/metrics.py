"""The service's Prometheus metrics, one registry per app so several apps can share a process
(as the tests do)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MONITOR_LEVELS = {"ok": 0, "warning": 1, "alert": 2}


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
        self.shed = Counter(
            "sunshine_shed_total",
            "requests answered 503 busy, past the in-flight bound",
            registry=self.registry,
        )
        self.bound = Gauge(
            "sunshine_in_flight_bound",
            "requests this worker takes in hand now: lowered while it is saturated (0: no bound)",
            registry=self.registry,
        )
        self.scores = Histogram(
            "sunshine_score",
            "returned probabilities",
            ["task"],
            registry=self.registry,
            buckets=tuple(i / 10 for i in range(1, 11)),
        )

        self.monitor_status = Gauge(
            "sunshine_model_monitor_status",
            "latest monitoring verdict of the served task: 0 ok, 1 warning, 2 alert",
            ["task", "model_version"],
            registry=self.registry,
        )
        self.score_psi = Gauge(
            "sunshine_model_score_psi",
            "population stability index of the score at the latest monitoring run",
            ["task"],
            registry=self.registry,
        )

    def observe_monitoring(self, monitoring: dict[str, dict]) -> None:
        """The latest verdicts as gauges (set when the models load or reload)."""
        self.monitor_status.clear()
        for task, status in monitoring.items():
            level = MONITOR_LEVELS.get(str(status.get("status")))
            if level is not None:
                self.monitor_status.labels(task, str(status.get("model_version"))).set(level)
            if status.get("score_psi") is not None:
                self.score_psi.labels(task).set(float(status["score_psi"]))

    def text(self) -> str:
        return generate_latest(self.registry).decode()
