"""What the cluster path relies on in the frontend, checked on the release the DGD's images name (the cluster's).

The local target runs Dynamo 1.6.1 by default (the mocker's TRT-LLM timing model); the cluster runs the DGD's
images, 0.8.1 today. Here one graph of the DGD's release (derived from its image tags, from its own venv, with its
own NATS) answers gtcdemo's own client code: the requests it sends (`ignore_eos` at the top level, streaming with
usage), `/v1/models`, the metric names and labels its queries use, and the bucket settings, which are also read
back from a 1.6.1 frontend. Nothing leaves the machine: the model is read from the model volume's folder.

Not collected by itself (its name does not start with ``test_``): ``test_release_compat.py`` runs it inside
a private network namespace that has only a loopback interface and says why.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gtcdemo import inference, load, metrics, release
from gtcdemo.local import LocalTarget, pvc_root

from .support import poll, running_graph

pytestmark = pytest.mark.local


@pytest.fixture(scope="module")
def dgd_graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTarget]:
    """One graph of the DGD's release for the module (0.8.1: frontend and mockers from its venv, plus NATS)."""
    with running_graph(tmp_path_factory.mktemp("dgd-release-state"), release="dgd") as target:
        yield target


def _proc(graph: LocalTarget, role: str) -> dict:
    return next(p for p in graph.processes() if p["role"] == role)


def test_the_graph_runs_the_release_the_dgd_images_name(dgd_graph: LocalTarget) -> None:
    version = release.dgd_release(dgd_graph.bundle.dgd)
    frontend = _proc(dgd_graph, "frontend")
    python = Path(f"/proc/{frontend['pid']}/cmdline").read_bytes().split(b"\0")[0].decode()  # the venv's python
    ran = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('ai-dynamo'))"],
                         capture_output=True, text=True, timeout=30)
    assert ran.stdout.strip() == version
    roles = sorted(p["role"] for p in dgd_graph.processes())
    needs_nats = release.series(version) < (1, 0)  # 0.8's KV router keeps its state in NATS JetStream
    assert roles == sorted(["frontend", "prefill", "decode", "prometheus", *(["nats"] if needs_nats else [])])


def test_models_lists_the_served_model(dgd_graph: LocalTarget) -> None:
    assert inference.list_models(dgd_graph.frontend_url()) == [dgd_graph.bundle.served_model_name]


def test_ignore_eos_as_gtcdemo_sends_it_is_a_field_the_frontend_knows(dgd_graph: LocalTarget) -> None:
    """0.8 takes `ignore_eos` at the top level (lib/llm/src/protocols/openai/common_ext.rs, flattened into the
    request) and refuses fields it does not know, so an accepted `ignore_eos` is one it applies."""
    url, model = dgd_graph.frontend_url(), dgd_graph.bundle.served_model_name
    body = inference.chat_completion(url, model, "say something", max_tokens=7, ignore_eos=True)
    assert body["usage"]["completion_tokens"] == 7 and body["choices"][0]["finish_reason"] == "length"
    refused = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
        "model": model, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "not_a_field": True})
    assert refused.status_code == 400 and "not_a_field" in refused.text


def test_streaming_reports_usage(dgd_graph: LocalTarget) -> None:
    result = inference.stream_chat(dgd_graph.frontend_url(), dgd_graph.bundle.served_model_name,
                                   "stream " + "word " * 50, max_tokens=6, ignore_eos=True)
    assert result.output_tokens == 6 and result.prompt_tokens > 50 and result.finish_reason == "length"
    assert 0 < result.ttft_s <= result.latency_s and len(result.chunk_times_s) >= 2


def test_a_load_run_and_its_summary_from_prometheus(dgd_graph: LocalTarget) -> None:
    """gtcdemo's load generator and its Prometheus queries (names, `status` and `le` labels) on this release."""
    m = metrics.Metrics(dgd_graph.prometheus_url())
    start = m.settle(time.time())
    # Several scrape intervals long, so the rate series (evaluated on a 1 s grid from `start`) has points inside the
    # run; a run shorter than one step could fall between two grid points and read as a zero rate.
    spec = load.LoadSpec(dgd_graph.bundle.served_model_name, concurrency=2, duration_s=4.0, input_tokens_mean=100,
                         output_tokens=8, timeout_s=30)
    run = load.run(dgd_graph.frontend_url(), spec, progress=False)
    ok = len(run.records)
    assert ok >= 4 and (run.records["status"] == "ok").all() and (run.records["output_tokens"] == 8).all()
    end = m.settle(time.time())
    summary = m.run_summary(start, end)
    assert summary.requests == ok and summary.output_tokens == 8 * ok
    assert 0 < summary.ttft_p50_s <= summary.ttft_p99_s and summary.itl_mean_s > 0
    window = m.window(start, end)
    assert window["requests_per_s"].max() > 0 and window["output_tokens_per_s"].max() > 0


def test_the_frontend_exposes_every_metric_gtcdemo_queries(dgd_graph: LocalTarget) -> None:
    """By name and labels, on the frontend itself. `dynamo_frontend_cached_tokens` is declared by 0.8
    (lib/llm/src/http/service/metrics.rs) but observed only when the engine reports cached tokens, which 0.8's
    mocker does not: gtcdemo's queries then read 0 (checked by the run summary above)."""
    url, model = dgd_graph.frontend_url(), dgd_graph.bundle.served_model_name
    inference.stream_chat(url, model, "metrics probe", max_tokens=3)
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for name in (metrics.REQUESTS, metrics.OUTPUT_TOKENS, metrics.INFLIGHT, metrics.QUEUED):
        assert re.search(rf"^{name}{{", text, re.M), name
    for name in (metrics.TTFT, metrics.ITL):
        assert re.search(rf'^{name}_bucket{{[^}}]*le="', text, re.M) and f"{name}_sum{{" in text, name
    requests = re.findall(rf"^{metrics.REQUESTS}{{([^}}]*)}}", text, re.M)
    assert any('status="success"' in labels for labels in requests)
    assert all({"model", "endpoint", "request_type", "status"} <= set(re.findall(r'(\w+)="', labels))
               for labels in requests)


# -- buckets on the real frontends of both releases ----------------------------------------------------------------


def bucket_bounds(base_url: str, metric: str) -> list[float]:
    """The finite bucket bounds a frontend's /metrics shows for ``metric``."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return sorted({float(le) for le in re.findall(rf'^{metric}_bucket{{[^}}]*le="([^"+]+)"', text, re.M)})


def covering(bounds: list[float], low: float, high: float) -> list[float]:
    """The bounds from the last one at or below ``low`` up to ``high``."""
    positive = [b for b in bounds if b > 0]
    start = max([b for b in positive if b <= low], default=positive[0])
    return [b for b in positive if start <= b <= high * 1.001]


@pytest.mark.parametrize("which", ["dgd_graph", "graph"])
def test_buckets_at_most_ten_percent_apart_on_both_releases(which: str, request: pytest.FixtureRequest) -> None:
    """The DGD's Frontend envs (from the bundle) give buckets <=10% apart over TTFT 5 ms-10 s and ITL 1-200 ms,
    on the DGD's release (0.8.1, the cluster's) and on the local default (1.6.1)."""
    graph: LocalTarget = request.getfixturevalue(which)
    url = graph.frontend_url()
    inference.stream_chat(url, graph.bundle.served_model_name, "bucket probe", max_tokens=4)  # creates the series
    for metric, low, high in ((metrics.TTFT, 0.005, 10), (metrics.ITL, 0.001, 0.2)):
        bounds = poll(lambda m=metric: bucket_bounds(url, m), timeout_s=10, what=f"{metric} buckets")
        span = covering(bounds, low, high)
        ratios = metrics.bucket_ratios(span)
        assert span[0] <= low and span[-1] == pytest.approx(high), (metric, span[:3], span[-3:])
        assert max(ratios) <= 1.10 + 1e-9, f"{metric} on {graph.release.version}: buckets {max(ratios):.2f}x apart"


# -- nothing leaves the machine ---------------------------------------------------------------------------------------


def test_the_frontend_reads_the_model_from_the_volume_not_the_hub(dgd_graph: LocalTarget) -> None:
    """The workers' model cards carry the model volume's paths, which the frontend opens (no hf:// to fetch)."""
    cards = [json.loads(p.read_text()) for p in (dgd_graph.dir / "discovery" / "v1" / "mdc").glob("*")]
    paths = [f["path"] for c in cards for v in c["card_json"].values() if isinstance(v, dict)
             for f in v.values() if isinstance(f, dict) and "path" in f]
    volume = pvc_root() / "model-nfs-pvc"
    workers = sum(int(s.get("replicas", 1)) for s in dgd_graph.bundle.services.values()
                  if s.get("componentType") == "worker")
    assert len(cards) == workers and paths
    assert all(Path(p).is_file() and Path(p).is_relative_to(volume) for p in paths), paths
    log = (dgd_graph.dir / "logs" / "frontend-0.log").read_text()
    assert not re.search(r"huggingface|ModelExpress|hf://", log, re.I)


def _sockets(pids: list[int]) -> list[tuple[str, str]]:
    """(local address, remote address) of every TCP socket the processes hold, from /proc."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])

    def addr(hexed: str) -> str:
        raw = bytes.fromhex(hexed.split(":")[0])
        if len(raw) == 4:
            return socket.inet_ntop(socket.AF_INET, raw[::-1])
        ip = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
        return str(ip.ipv4_mapped or ip)

    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                out.append((addr(fields[1]), addr(fields[2])))
    return out


def test_every_socket_of_the_graph_is_loopback(dgd_graph: LocalTarget) -> None:
    """Inside the private namespace every socket of the graph, 0.8's response-stream server included, is on
    loopback (outside it, that server would bind the machine's default-route address)."""
    inference.stream_chat(dgd_graph.frontend_url(), dgd_graph.bundle.served_model_name, "sockets", max_tokens=20)
    pids = [p["pid"] for p in dgd_graph.processes() if p["pid"]]
    found = _sockets(pids)
    assert found and all(ipaddress.ip_address(a).is_loopback or ipaddress.ip_address(a).is_unspecified
                         for pair in found for a in pair), found
