"""What the policy reads of a model's load, and the pure judgement of it: how close to
saturated (`pressure`) and why it is saturated (`saturation_of`). No I/O here."""

from __future__ import annotations

from dataclasses import dataclass

from meritorder.config import SaturationConfig, SloConfig

# What the headroom picker divides by where the policy sets no threshold of its own.
DEFAULT_QUEUE = 8.0
DEFAULT_KV_CACHE = 1.0
# The pressure of a model the router has no fresh measure of: after every measured model that
# is not saturated (those are below 1), before every saturated one.
UNKNOWN_PRESSURE = 1.0


@dataclass(frozen=True)
class ModelLoad:
    """One model's load at decision time: its servers' metrics summed over the replicas that
    answered the last read, and what this router saw itself."""

    replicas: int = 0  # metrics endpoints configured (0: the router's own view only)
    reachable: int = 0  # of them, those that answered the last read
    running: float = 0.0  # requests being served, all replicas
    waiting: float = 0.0  # requests queued, all replicas
    kv_cache: float | None = None  # mean KV-cache use of the replicas, 0-1
    ttft_s: float | None = None  # recent mean time to first token (metrics, else outcomes)
    itl_s: float | None = None  # recent mean inter-token latency (metrics)
    duration_s: float | None = None  # recent mean request duration (this router's outcomes)
    age_s: float | None = None  # since the metrics were last read; None: never read
    stale: bool = False  # metrics configured, but older than routing.pool_stale_s or never read
    in_flight: int = 0  # this router's requests dispatched to the model and not settled

    @property
    def measured(self) -> bool:
        """Fresh metrics from at least one replica."""
        return self.replicas > 0 and not self.stale and self.age_s is not None

    @property
    def queue(self) -> float:
        """Requests waiting per replica that answered."""
        return self.waiting / self.reachable if self.reachable else self.waiting

    @property
    def predicted_ttft_s(self) -> float | None:
        """The recent TTFT plus the wait of the queue ahead: each queued request waits about a
        mean request's duration for every running request ahead of it to make room."""
        if self.ttft_s is None:
            return None
        if not self.waiting or self.duration_s is None:
            return self.ttft_s
        return self.ttft_s + self.waiting / max(self.running, 1.0) * self.duration_s

    def render(self) -> str:
        """`queue=3,kv=85%,ttft=120ms,age=0.4s` (what the reason header and the span show)."""
        if self.replicas and (self.stale or self.age_s is None):
            age = "never" if self.age_s is None else f"{self.age_s:.1f}s"
            return f"stale(age={age})"
        parts = []
        if self.replicas:
            parts.append(f"queue={self.waiting:g}")
            if self.kv_cache is not None:
                parts.append(f"kv={self.kv_cache:.0%}")
        predicted = self.predicted_ttft_s
        if predicted is not None:
            parts.append(f"ttft={predicted * 1000:.0f}ms")
        if self.itl_s is not None and self.measured:
            parts.append(f"itl={self.itl_s * 1000:.0f}ms")
        parts.append(f"inflight={self.in_flight}")
        if self.replicas:
            if self.reachable < self.replicas:
                parts.append(f"replicas={self.reachable}/{self.replicas}")
            parts.append(f"age={self.age_s:.1f}s")
        return ",".join(parts)


def saturation_of(
    load: ModelLoad | None, saturation: SaturationConfig, slo: SloConfig | None = None
) -> str | None:
    """Why `load` counts as saturated (`queue`, `kv_cache`, `itl`, `ttft`, `slo`, `stale`), or
    None."""
    if load is None:
        return None
    if load.replicas and not load.measured:
        return "stale" if saturation.on_stale == "saturated" else None
    if load.measured:
        if saturation.queue is not None and load.queue >= saturation.queue:
            return "queue"
        if (
            saturation.kv_cache is not None
            and load.kv_cache is not None
            and load.kv_cache >= saturation.kv_cache
        ):
            return "kv_cache"
        if (
            saturation.itl_ms is not None
            and load.itl_s is not None
            and load.itl_s * 1000 >= saturation.itl_ms
        ):
            return "itl"
    predicted = load.predicted_ttft_s
    if predicted is not None:
        if saturation.ttft_ms is not None and predicted * 1000 >= saturation.ttft_ms:
            return "ttft"
        if slo is not None and predicted * 1000 > slo.ttft_ms:
            return "slo"
    return None


def pressure(
    load: ModelLoad | None, saturation: SaturationConfig, slo: SloConfig | None = None
) -> float:
    """How close `load` is to saturated: its largest measure over its threshold (1: at a
    threshold), `UNKNOWN_PRESSURE` without fresh data, 0 for stale data counted healthy."""
    if load is None:
        return UNKNOWN_PRESSURE
    if load.replicas and not load.measured:
        if saturation.on_stale == "healthy":
            return 0.0
        return UNKNOWN_PRESSURE if saturation.on_stale == "unknown" else float("inf")
    ratios = []
    if load.measured:
        ratios.append(load.queue / (saturation.queue or DEFAULT_QUEUE))
        if load.kv_cache is not None:
            ratios.append(load.kv_cache / (saturation.kv_cache or DEFAULT_KV_CACHE))
        if load.itl_s is not None and saturation.itl_ms is not None:
            ratios.append(load.itl_s * 1000 / saturation.itl_ms)
    predicted = load.predicted_ttft_s
    if predicted is not None:
        for limit_ms in (saturation.ttft_ms, slo.ttft_ms if slo else None):
            if limit_ms is not None:
                ratios.append(predicted * 1000 / limit_ms)
    return max(ratios) if ratios else UNKNOWN_PRESSURE
