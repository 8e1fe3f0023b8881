"""The decision service's Prometheus metrics (``GET /metrics``), one registry per API process.

=============================================  ==============================================
``raytrader_http_requests_total``              requests by ``route`` (template), ``method``,
                                               ``status``
``raytrader_http_request_duration_seconds``    latency histogram by ``route``, ``method``
``raytrader_decisions_total``                  decisions by ``action`` (``keep``: no decision)
``raytrader_decision_members_missing_total``   member outputs left out for having no decision
``raytrader_decisions_refused_total``          requests refused with 503 by ``reason``
                                               (``stale``, ``unwarm``)
``raytrader_decision_feature_age_seconds``     bar close to decision time, histogram
``raytrader_feast_fetch_duration_seconds``     online-store read latency, histogram
``raytrader_model_info``                       1 for the ``name``/``version`` that last answered
``raytrader_model_swaps_total``                swaps by ``result`` (success/failure) and model
                                               ``replica``, as each replica last reported
=============================================  ==============================================
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
AGE_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400, 365 * 86400)


class _Swaps(Collector):
    """Swap counts per model replica, from the status each replica returns with its answers."""

    def __init__(self) -> None:
        self.replicas: dict[str, tuple[int, int]] = {}

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "raytrader_model_swaps",
            "Model version swaps by result, per model replica",
            labels=["result", "replica"],
        )
        for replica, (ok, failed) in sorted(self.replicas.items()):
            family.add_metric(["success", replica], ok)
            family.add_metric(["failure", replica], failed)
        yield family


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "raytrader_http_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "raytrader_http_request_duration_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "raytrader_decisions", "Decisions by action", ["action"], registry=r
        )
        self.members_missing = Counter(
            "raytrader_decision_members_missing",
            "Member outputs without a decision (NaN), left out of their ensemble",
            registry=r,
        )
        self.refused = Counter(
            "raytrader_decisions_refused",
            "Requests answered 503 for lack of honest features, by reason",
            ["reason"],
            registry=r,
        )
        for reason in ("stale", "unwarm"):  # exported at 0 from the start, not on first use
            self.refused.labels(reason)
        self.feature_age = Histogram(
            "raytrader_decision_feature_age_seconds",
            "Age of the features a decision used (bar close to decision)",
            buckets=AGE_BUCKETS,
            registry=r,
        )
        self.feast_latency = Histogram(
            "raytrader_feast_fetch_duration_seconds",
            "Feast online-store read latency",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "raytrader_model_info",
            "The model version that last answered",
            ["name", "version"],
            registry=r,
        )
        self._info: tuple[str, str] | None = None
        self.swaps = _Swaps()
        r.register(self.swaps)

    def served_by(self, status: dict[str, Any]) -> None:
        """Record the model replica's status that came back with an answer."""
        key = (str(status["name"]), str(status["version"]))
        if key != self._info:
            if self._info is not None:
                self.model_info.remove(*self._info)
            self.model_info.labels(*key).set(1)
            self._info = key
        self.swaps.replicas[str(status["replica"])] = (
            int(status["swaps"]),
            int(status["swap_failures"]),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
