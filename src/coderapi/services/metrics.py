"""Prometheus metrics, named after vLLM's where they mean the same (prefix `coderapi:`)."""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from coderapi.backends.stats import EngineStats

StatsSource = Callable[[], Iterable[tuple[str, EngineStats]]]
UNKNOWN_MODEL_LABEL = "unknown"  # every model name the registry does not know, as one series

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80)
_TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5)


class ServingMetrics:
    """One set per app (no module-level collectors), so tests can build many apps."""

    def __init__(self, engine_stats: StatsSource) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_EngineCollector(engine_stats))
        labels = ["model_name"]
        r = self.registry
        self.ttft = Histogram("coderapi:time_to_first_token_seconds", "Time to first token.", labels, buckets=_LATENCY_BUCKETS, registry=r)
        self.itl = Histogram("coderapi:inter_token_latency_seconds", "Time between output tokens.", labels, buckets=_TOKEN_BUCKETS, registry=r)
        self.e2e = Histogram("coderapi:e2e_request_latency_seconds", "End-to-end request latency.", labels, buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_time = Histogram("coderapi:request_queue_time_seconds", "Time waiting for a sequence slot.", labels, buckets=_LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("coderapi:prompt_tokens", "Prompt tokens processed.", labels, registry=r)
        self.generation_tokens = Counter("coderapi:generation_tokens", "Tokens generated.", labels, registry=r)
        self.requests = Counter("coderapi:request_success", "Finished requests by outcome.", [*labels, "finished_reason"], registry=r)
        self.unwritten_rows = Counter(
            "coderapi:usage_rows_unwritten", "Requests turned away before doing anything whose usage row was not "
            "written: past empty_usage_rows_per_user_minute for their user.", registry=r,
        )


class _EngineCollector:
    """Reads the engines' own counters at scrape time instead of mirroring them."""

    def __init__(self, source: StatsSource) -> None:
        self._source = source

    def collect(self):
        running = GaugeMetricFamily("coderapi:num_requests_running", "Sequences being decoded.", labels=["model_name"])
        waiting = GaugeMetricFamily("coderapi:num_requests_waiting", "Requests waiting for a slot.", labels=["model_name"])
        kv = GaugeMetricFamily("coderapi:kv_cache_usage_perc", "KV cache usage (0-1).", labels=["model_name"])
        queries = CounterMetricFamily(
            "coderapi:prefix_cache_queries", "Prompt tokens looked up in the prefix cache.", labels=["model_name"]
        )
        hits = CounterMetricFamily("coderapi:prefix_cache_hits", "Prompt tokens found in the prefix cache.", labels=["model_name"])
        behind = GaugeMetricFamily(
            "coderapi:num_requests_waiting_for_reader",
            "Sequences held out of decode steps until their client reads what they generated.",
            labels=["model_name"],
        )
        preempted = CounterMetricFamily(
            "coderapi:num_preemptions",
            "Sequences set aside (their slot given to another user's request), to go on later.",
            labels=["model_name"],
        )
        for name, stats in self._source():
            preempted.add_metric([name], stats.preemptions)
            running.add_metric([name], stats.running)
            waiting.add_metric([name], stats.waiting)
            kv.add_metric([name], stats.kv_cache_usage)
            queries.add_metric([name], stats.prefix_cache_queries)
            hits.add_metric([name], stats.prefix_cache_hits)
            behind.add_metric([name], stats.waiting_for_reader)
        return [running, waiting, kv, queries, hits, behind, preempted]
