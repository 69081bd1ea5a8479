"""Reading a model server's Prometheus text for its load."""

from __future__ import annotations

import pytest

from meritorder.pool import parse_metrics

VLLM = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen"} 3.0
vllm:num_requests_running{engine="1",model_name="qwen"} 2.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="qwen"} 7.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="qwen"} 0.4
vllm:kv_cache_usage_perc{engine="1",model_name="qwen"} 0.85
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="qwen"} 2.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="qwen"} 4.0
vllm:time_to_first_token_seconds_count{model_name="qwen"} 4.0
vllm:time_to_first_token_seconds_sum{model_name="qwen"} 1.2
# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_bucket{le="+Inf",model_name="qwen"} 50.0
vllm:inter_token_latency_seconds_count{model_name="qwen"} 50.0
vllm:inter_token_latency_seconds_sum{model_name="qwen"} 2.5
# TYPE vllm:prompt_tokens counter
vllm:prompt_tokens_total{model_name="qwen"} 1234.0
"""

SGLANG = """\
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="m"} 4.0
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="m"} 1.0
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="m"} 0.25
"""


def test_vllm_metrics_sum_the_engines_and_keep_the_fullest_kv_cache() -> None:
    load = parse_metrics(VLLM)
    assert (load.running, load.waiting, load.kv_cache) == (5.0, 7.0, 0.85)
    assert (load.ttft_sum, load.ttft_count) == (1.2, 4.0)
    assert (load.itl_sum, load.itl_count) == (2.5, 50.0)


def test_the_older_time_per_output_token_histogram_is_the_itl_too() -> None:
    text = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running 1.0
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_count 4.0
vllm:time_per_output_token_seconds_sum 0.2
"""
    assert (parse_metrics(text).itl_sum, parse_metrics(text).itl_count) == (0.2, 4.0)


def test_sglang_names_give_the_same_measures() -> None:
    load = parse_metrics(SGLANG)
    assert (load.running, load.waiting, load.kv_cache) == (4.0, 1.0, 0.25)
    assert load.ttft_count == 0


def test_vllm_before_v1_names_its_kv_gauge_gpu_cache() -> None:
    text = "# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc 0.5\n"
    assert parse_metrics(text).kv_cache == 0.5


@pytest.mark.parametrize(
    "text",
    [
        "# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total 3.0\n",  # another endpoint
        "",
    ],
)
def test_text_without_load_metrics_is_an_error(text: str) -> None:
    with pytest.raises(ValueError, match="no vLLM or SGLang load metrics"):
        parse_metrics(text)


def test_text_that_is_not_prometheus_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_metrics("<html>not metrics</html>\n")
