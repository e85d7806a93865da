"""Prometheus metrics of one app (a registry of its own, so several apps can share a process)."""

from __future__ import annotations

import sys

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

STAGE_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 1.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Request counts and latency by route and status, predictions by flag, the served model."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ecgk_http_requests", "HTTP requests by route template, method and status.",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("ecgk_http_request_duration_seconds", "HTTP request latency by route.",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.predictions = Counter("ecgk_predictions", "K+ estimates served, by flag and interpretation.",
                                   ["flag", "interpretation"], registry=self.registry)
        self.stages = Histogram("ecgk_prediction_stage_seconds",
                                "Time of each stage of a single-ECG prediction (parse, preprocess, predict, blob, "
                                "commit: the served version's status, the ECG, prediction and audit rows); the "
                                "rest of its request latency is HTTP, authentication and the response.",
                                ["stage"], buckets=STAGE_BUCKETS, registry=self.registry)
        self.model = Info("ecgk_model", "The model version this process serves.", registry=self.registry)
        self.torch_loaded = Gauge("ecgk_torch_loaded", "1 if torch was imported into this process (it must not be).",
                                  registry=self.registry)
        self.torch_loaded.set_function(lambda: float("torch" in sys.modules))
