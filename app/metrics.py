"""Prometheus metrics. Labels are bounded: endpoints, stages, and only item ids from the registry."""

from __future__ import annotations

from functools import cache

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_SECONDS = Histogram("scorer_request_duration_seconds", "HTTP request duration",
                            ["endpoint", "status"], buckets=LATENCY_BUCKETS)
STAGE_SECONDS = Histogram("scorer_stage_duration_seconds", "Time per inference stage (tokenize, queue, trunk, "
                          "head) per micro-batch", ["stage"], buckets=LATENCY_BUCKETS)
TASK_SWITCH_SECONDS = Histogram("scorer_task_switch_duration_seconds",
                                "Time to bring a missing head into the cache", ["item"], buckets=LATENCY_BUCKETS)
CACHE_EVENTS = Counter("scorer_head_cache_events_total", "Head cache hits, misses and evictions", ["event"])
HEADS_LOADED = Gauge("scorer_heads_loaded", "Heads resident in the cache")
CACHE_BYTES = Gauge("scorer_head_cache_bytes", "Head cache bytes", ["kind"])  # used / capacity
BATCH_ROWS = Histogram("scorer_batch_rows", "Rows per trunk run", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
QUEUE_ROWS = Gauge("scorer_queue_rows", "Answers waiting for the trunk")
ANSWERS_SCORED = Counter("scorer_answers_scored_total", "Answers scored", ["item"])
DUPLICATE_HITS = Counter("scorer_duplicate_cache_hits_total", "Answers served from the duplicate-answer cache")
REDIS_ERRORS = Counter("scorer_redis_errors_total", "Redis operations that failed (cache bypassed)")
REDIS_UP = Gauge("scorer_redis_up", "1 while the last duplicate-cache call to Redis succeeded, 0 while it is bypassed")
JOBS_REQUEUED = Counter("scorer_jobs_requeued_total", "Jobs taken over after their runner stopped (restart, crash)")
REJECTED = Counter("scorer_rejected_total", "Requests refused before scoring", ["reason"])


@cache
def stage(name: str) -> Histogram:
    """STAGE_SECONDS' child for one stage, looked up once (`labels()` costs ~10 us, per head group it added up)."""
    return STAGE_SECONDS.labels(name)
