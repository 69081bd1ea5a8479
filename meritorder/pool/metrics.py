"""A model server's Prometheus text, read for the load it reports: vLLM's names, and SGLang's
equivalents."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# Family name -> the measure it gives. vLLM before V1 called the KV-cache gauge gpu_cache_*.
_GAUGES = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_cache",
    "vllm:gpu_cache_usage_perc": "kv_cache",
    "sglang:num_running_reqs": "running",
    "sglang:num_queue_reqs": "waiting",
    "sglang:token_usage": "kv_cache",
}
_TTFT = ("vllm:time_to_first_token_seconds", "sglang:time_to_first_token_seconds")
# Inter-token latency: vLLM V1's name, the older time-per-output-token one, and SGLang's.
_ITL = (
    "vllm:inter_token_latency_seconds",
    "vllm:time_per_output_token_seconds",
    "sglang:inter_token_latency_seconds",
    "sglang:time_per_output_token_seconds",
)


@dataclass(frozen=True)
class ReplicaMetrics:
    """One replica's load, as its metrics say (summed over its served model names)."""

    running: float = 0.0
    waiting: float = 0.0
    kv_cache: float | None = None
    ttft_sum: float = 0.0  # the TTFT histogram's running totals
    ttft_count: float = 0.0
    itl_sum: float = 0.0  # the inter-token latency histogram's running totals
    itl_count: float = 0.0


def parse_metrics(text: str) -> ReplicaMetrics:
    """The load in Prometheus exposition `text`; raises ValueError when it is not that format
    or reports none of the known load metrics (the wrong endpoint)."""
    values: dict[str, float] = {}
    kv: list[float] = []
    totals = {"ttft_sum": 0.0, "ttft_count": 0.0, "itl_sum": 0.0, "itl_count": 0.0}
    known = False
    for family in text_string_to_metric_families(text):
        measure = _GAUGES.get(family.name)
        if measure is not None:
            known = True
            for sample in family.samples:
                if measure == "kv_cache":
                    kv.append(sample.value)
                else:
                    values[measure] = values.get(measure, 0.0) + sample.value
        elif family.name in _TTFT or family.name in _ITL:
            known = True
            kind = "ttft" if family.name in _TTFT else "itl"
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    totals[f"{kind}_sum"] += sample.value
                elif sample.name.endswith("_count"):
                    totals[f"{kind}_count"] += sample.value
    if not known:
        raise ValueError("no vLLM or SGLang load metrics in the text")
    return ReplicaMetrics(
        running=values.get("running", 0.0),
        waiting=values.get("waiting", 0.0),
        kv_cache=max(kv) if kv else None,
        **totals,
    )
