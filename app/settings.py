"""Every knob of the service, from SCORER_* environment variables; invalid values fail at start-up."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


class Settings(BaseSettings):
    # hide_input_in_errors: a start-up error must not print a secret (e.g. a key pasted as a digest) to the log.
    model_config = SettingsConfigDict(env_prefix="SCORER_", env_file=None, extra="ignore", hide_input_in_errors=True)

    artifacts: Path = Field(Path("build/onnx"), description="exporter output folder (manifest.json)")
    host: str = "127.0.0.1"
    port: int = 8000
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when the GPU build sees a device
    # int8 (CPU) / fp16 (CUDA) only where the manifest allows it; auto: the device's one when allowed
    precision: Literal["fp32", "int8", "fp16", "auto"] = "fp32"
    threads: int = Field(0, ge=0)  # ORT intra-op threads; 0 = all cores
    # Head cache: bytes, not entries (heads differ in size). Adapter files are ~1 MB, merged heads ~20 MB.
    cache_bytes: int = Field(512 * 1024 * 1024, gt=0)
    pin_items: list[str] = []  # never evicted
    warm_items: list[str] = []  # loaded at start-up
    # Micro-batching: wait this long for more requests to share one trunk run (latency vs throughput).
    batch_wait_ms: float = Field(2.0, ge=0)
    max_batch_rows: int = Field(64, gt=0)  # rows per trunk run
    # Job rows run in slices of about this long, alone: an interactive request waits at most one slice.
    background_slice_ms: float = Field(15.0, gt=0)
    max_queue_rows: int = Field(4096, gt=0)  # beyond this, 429 instead of an ever-growing queue
    max_body_bytes: int = Field(2 * 1024 * 1024, gt=0)
    body_timeout_s: float = Field(15.0, gt=0)  # a body not received within this gets 408
    header_timeout_s: float = Field(10.0, gt=0)  # request line + headers not received within this: closed
    max_answers_per_request: int = Field(1000, gt=0)  # /score and /batch
    max_answers_per_job: int = Field(100_000, gt=0)
    max_answer_chars: int = Field(20_000, gt=0)  # longer answers are refused (tokens are truncated anyway)
    redis_url: str | None = None  # set: duplicate cache in Redis, shared by replicas (and jobs, unless below)
    # Jobs and item versions: a Redis that never evicts (maxmemory-policy noeviction, AOF persistence).
    # Unset: the one at redis_url, which then must not evict either (checked at start-up).
    job_redis_url: str | None = None
    redis_timeout_ms: float = Field(250.0, gt=0)  # duplicate-cache calls: a hung Redis costs at most this
    redis_breaker_s: float = Field(5.0, gt=0)  # after a cache failure, Redis is not asked for this long
    duplicate_cache_entries: int = Field(50_000, ge=0)  # in-process LRU size; 0 disables
    duplicate_cache_ttl_s: int = Field(24 * 3600, gt=0)  # Redis TTL
    job_ttl_s: int = Field(7 * 24 * 3600, gt=0)  # retention of a job and its results after its last write
    max_running_jobs: int = Field(2, gt=0)  # per replica; more jobs wait `queued`, oldest first
    max_job_rows_per_key: int = Field(100_000, gt=0)  # unscored rows one key may have in unfinished jobs
    # Redis mode: a running job holds a lease this long (renewed per chunk); an expired lease means its
    # runner died, and any replica re-queues the job.
    job_lease_s: float = Field(30.0, gt=0)
    # Redis mode: replicas also re-read the shared item versions this often (pub/sub can miss messages).
    version_resync_s: float = Field(30.0, gt=0)
    # > 0: look at the artifact folder's manifest this often and serve items an export added or changed
    # (no admin reload needed). Off by default: an explicit reload is the reviewed path.
    watch_artifacts_s: float = Field(0.0, ge=0)
    review_threshold: float | None = Field(None, ge=0, le=1)  # overrides every item's model-card value
    # What each item serves (export/tiers.py): accurate, its chosen ensemble (two trunk runs per answer on the
    # shipped items); balanced, its best combination on one trunk run (heads of its own backbone and the
    # lexical member); fast, its own adapter alone with that adapter's decoding (one trunk run, one head).
    tier: Literal["fast", "balanced", "accurate"] = "accurate"
    # Off: the fast tier whatever `tier` says (the switch this service had before tiers).
    ensembles: bool = True
    # One batched head run per micro-batch for every item in it (core/grouped_head.py) instead of one run per
    # item. auto: on CUDA, where the per-item runs were the measured bottleneck (bench/results/gpu.json);
    # off on the CPU, where the per-row batched LoRA products measured slower than per-item runs.
    grouped_heads: Literal["auto", "on", "off"] = "auto"
    # The trunk's output handed to the batched head graph where it was computed, through IO binding
    # (core/trunk_states.py), and the graph's stacked per-item tensors kept there too. auto: on CUDA (saves the
    # hidden states' device -> host -> device round trip per micro-batch; not measured yet, no GPU was lent
    # since it was built: `make gpu-check` measures it); off on the CPU, where there is no copy to save.
    io_binding: Literal["auto", "on", "off"] = "auto"
    # The fp32 trunk with ONNX Runtime's transformer fusions (export/fused.py), where the export validated it.
    # auto: on CUDA, where it measured 0.85x (fp32) and 0.72x (fp16) of the plain trunk's time
    # (bench/results/fusion_cuda.json); the plain graph on the CPU, where it measured 1.00-1.04x (fusion.json).
    fused_trunk: Literal["auto", "on", "off"] = "auto"
    api_keys_sha256: list[str] = []  # hex SHA-256 of accepted scoring keys; empty = no auth, loopback only
    admin_keys_sha256: list[str] = []
    # With keys configured: /docs, /redoc, /openapi.json need a key unless open_docs; /metrics is open for
    # Prometheus scrapers (no answers or key material in it) unless open_metrics is false.
    open_docs: bool = False
    open_metrics: bool = True
    log_level: str = "info"
    # After SIGTERM, readiness is 503 this long while requests are still served, so a load balancer stops
    # routing here before the listener closes; then in-flight requests drain.
    drain_delay_s: float = Field(0.0, ge=0, le=60)

    @field_validator("api_keys_sha256", "admin_keys_sha256")
    @classmethod
    def _digests_only(cls, digests: list[str]) -> list[str]:
        # A plaintext key pasted here would never match and would sit in the environment: refuse it.
        if not all(SHA256_HEX.fullmatch(digest) for digest in digests):
            raise ValueError("API keys are configured as hex SHA-256 digests (64 hex characters), not as keys")
        return [digest.lower() for digest in digests]

    @property
    def serving_tier(self) -> str:
        """`tier`, unless SCORER_ENSEMBLES=false asks for the fast tier."""
        return self.tier if self.ensembles else "fast"


@lru_cache
def get_settings() -> Settings:
    return Settings()
