"""Prometheus metrics of the service: requests, tokens, queue depth, batch size, latencies, failures, image bytes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from inference.server.held_bytes import HeldBytes

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._images_watched = False
        r = self.registry
        self.requests = Counter(
            "inference_requests", "Requests by model, route and status", ["model", "route", "status"], registry=r
        )  # noqa: E501
        self.prompt_tokens = Counter("inference_prompt_tokens", "Prompt tokens processed", ["model"], registry=r)
        self.generation_tokens = Counter("inference_generation_tokens", "Tokens generated", ["model"], registry=r)
        self.queue_depth = Gauge("inference_queue_depth", "Sequences waiting to be scheduled", ["model"], registry=r)
        self.running = Gauge("inference_running_batch_size", "Sequences in the running batch", ["model"], registry=r)
        self.ttft = Histogram(
            "inference_time_to_first_token_seconds", "Time to first token", ["model"], buckets=_LATENCY_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.tpot = Histogram(
            "inference_time_per_output_token_seconds", "Time between output tokens", ["model"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.failed = Counter(
            "inference_failed_requests", "Requests the engine failed with an error while running them (see "
            "engine/quarantine.py)", ["model"], registry=r,
        )  # fmt: skip
        self.step = Histogram(
            "inference_step_seconds", "Engine step time", ["model"], buckets=_LATENCY_BUCKETS, registry=r
        )  # noqa: E501

        # the prefix cache (vLLM's prefix_cache_queries / _hits): prompt tokens looked up, and found cached; the
        # hit rate is hits / queries
        self.prefix_queries = Counter(
            "inference_prefix_cache_queries", "Prompt tokens looked up in the prefix cache", ["model"], registry=r
        )
        self.prefix_hits = Counter(
            "inference_prefix_cache_hits", "Prompt tokens the prefix cache held (not computed)", ["model"], registry=r
        )
        self.kv_usage = Gauge("inference_kv_cache_usage", "Share of KV cache blocks in use", ["model"], registry=r)
        self.kv_cached = Gauge(
            "inference_prefix_cache_blocks", "KV cache blocks holding a cached prefix", ["model"], registry=r
        )

    def on_step(self, model_id: str):
        seen = {"queried": 0, "hits": 0}  # the block manager's totals at the last step

        def hook(engine, seconds: float, failed: int) -> None:
            self.step.labels(model_id).observe(seconds)
            if failed:
                self.failed.labels(model_id).inc(failed)
            self.queue_depth.labels(model_id).set(engine.num_waiting)
            self.running.labels(model_id).set(engine.num_running)
            blocks = getattr(engine, "blocks", None)
            if blocks is not None:
                self.prefix_queries.labels(model_id).inc(blocks.queried_tokens - seen["queried"])
                self.prefix_hits.labels(model_id).inc(blocks.hit_tokens - seen["hits"])
                seen.update(queried=blocks.queried_tokens, hits=blocks.hit_tokens)
                self.kv_usage.labels(model_id).set(blocks.num_in_use / blocks.num_blocks)
                self.kv_cached.labels(model_id).set(blocks.num_cached)

        return hook

    def watch_images(self, held: HeldBytes) -> None:
        """Report the fetched image bytes held (``held_bytes.py``), read at each scrape; once per registry."""
        if not self._images_watched:
            self.registry.register(_ImageBytes(held))
            self._images_watched = True

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ImageBytes(Collector):
    def __init__(self, held: HeldBytes) -> None:
        self.held = held

    def collect(self):
        held = self.held
        yield GaugeMetricFamily(
            "inference_image_bytes_held", "Fetched image bytes held by vision requests, waiting for or in "
            "preprocessing (an http image counts the per-image limit until it has come)", value=held.held,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "inference_image_bytes_limit", "The most image bytes held at once (INFERENCE_IMAGE_HELD_BYTES)",
            value=held.capacity,
        )  # fmt: skip
        yield CounterMetricFamily(
            "inference_image_waits", "Vision requests that waited for their share of the image bytes",
            value=held.waited,
        )  # fmt: skip
