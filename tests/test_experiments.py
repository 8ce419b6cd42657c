"""The two demonstrations, on the real local graph (numbers are timings: only their presence and sense are checked)."""

from __future__ import annotations

import pytest

from gtcdemo import experiments
from gtcdemo.local import LocalTarget
from gtcdemo.metrics import Metrics

pytestmark = pytest.mark.local


def test_prefix_cache_demo_shows_reuse_from_both_sources(graph: LocalTarget) -> None:
    demo = experiments.prefix_cache_demo(graph.frontend_url(), graph.bundle.served_model_name,
                                         Metrics(graph.prometheus_url()), requests=4, prompt_tokens=1000)
    shared, unique = demo.table.loc["shared prefix"], demo.table.loc["unique prompts"]
    assert shared["requests"] == unique["requests"] == 4
    assert shared["cached_tokens_per_request"] > 0 and unique["cached_tokens_per_request"] == 0
    # The response's usage and the frontend's histogram count the same cached tokens (the priming request is in
    # neither: it ran before the shared batch's counters started).
    assert shared["server_cached_tokens_per_request"] == shared["cached_tokens_per_request"]
    assert abs(shared["prompt_tokens_per_request"] - unique["prompt_tokens_per_request"]) < 30
    assert demo.priming["cached_tokens"] == 0 and demo.priming["ttft_ms"] > 0  # the cold first request, on its own
    view = demo._repr_html_()
    assert "cached tokens per request (response)" in view and "TTFT p50 (ms, client)" in view
    assert "_per_request" not in view and "4.0" not in repr(demo)  # people's headers, integers as integers


def test_ttft_clocks_measure_the_same_requests_three_ways(graph: LocalTarget) -> None:
    clocks = experiments.ttft_clocks(graph.frontend_url(), graph.bundle.served_model_name,
                                     Metrics(graph.prometheus_url()), requests=4)
    table = clocks.table
    assert list(table.index) == ["new connection per request", "kept-alive connection"]
    assert (table["server_ttft_mean_ms"] > 0).all() and (table["client_ttft_p50_ms"] > 0).all()
    for summary in clocks.server.values():
        assert summary.requests == 4  # the server saw exactly the measured requests of each mode
