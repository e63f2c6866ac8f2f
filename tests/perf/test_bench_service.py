"""Load on `t2s serve` over loopback: 16 concurrent clients x 200 groups of G = 8 (box segmenter).

    .venv/bin/pytest tests/perf/test_bench_service.py --benchmark-only -p no:cacheprovider

Every answer is checked against the in-process score of its own request (a mismatch fails
the benchmark). Figures: throughput, client-side p50/p99 latency, and the batch sizes the
server formed (from its /metrics). ``T2S_BENCH_SERVICE`` = ``clients,groups,g,size``
changes the shape (default ``16,200,8,128``). The CI-sized version is
tests/service/test_service.py::test_concurrent_clients_batch_and_match.
"""

from __future__ import annotations

import os

from t2s_env.remote import RemoteScorer
from t2s_env.scoring import Scorer
from think2seg.scripts import loadtest


def test_service_load(benchmark, figures):
    clients, groups, g, size = (int(v) for v in os.environ.get("T2S_BENCH_SERVICE", "16,200,8,128").split(","))
    workload = loadtest.make_workload(clients, groups, g, size=size, seed=0)
    loadtest.expect(workload, Scorer("box"))
    proc, url = loadtest.spawn_server("--segmenter", "box")
    try:
        report = benchmark.pedantic(lambda: loadtest.run_load(lambda: RemoteScorer(url), workload), rounds=1, iterations=1)
        server = RemoteScorer(url).metrics()
    finally:
        loadtest.stop_server(proc)
    assert report.errors == [] and report.mismatches == 0
    sizes = {int(k): v for k, v in server["batch_groups"].items()}
    n_batches = sum(sizes.values())
    mean_batch = sum(k * v for k, v in sizes.items()) / n_batches
    shape = f"{clients}x{groups} groups, G={g}, {size}px"
    figures("service: groups/s", report.groups_per_s, "groups/s", shape)
    figures("service: completions/s", report.completions_per_s, "completions/s", shape)
    figures("service: client latency p50", report.latency_ms["p50"], "ms", "one group per request")
    figures("service: client latency p99", report.latency_ms["p99"], "ms", "")
    figures("service: server latency p50", server["latency_ms"]["p50"], "ms", "receive -> answer")
    figures("service: groups per batch (mean)", mean_batch, "groups", f"{n_batches} batches")
    figures("service: groups per batch (max)", max(sizes), "groups", "--max-batch 32")
    figures("service: share of groups in multi-request batches",
            sum(k * v for k, v in sizes.items() if k > 1) / report.groups, "fraction", "")
    benchmark.extra_info.update({"report": report.__dict__, "batch_groups": server["batch_groups"]})
