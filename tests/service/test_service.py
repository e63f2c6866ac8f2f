"""`t2s serve` and RemoteScorer: parity with in-process scores, batching under load, limits,
malformed input, auth, client failures, and recovery from a server killed mid-load.

Servers run as real subprocesses on 127.0.0.1 (loopback only) with the weightless `box`
segmenter."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from t2s_env.errors import T2SError
from t2s_env.instructions import format_completion
from t2s_env.prompt import GeometricPrompt
from t2s_env.remote import RemoteScorer, ServiceError, encode_image, encode_mask
from t2s_env.integrations.trl import make_reward_functions
from t2s_env.scoring import Scorer
from think2seg.scripts import loadtest


free_port = loadtest.free_port
start_server = loadtest.spawn_server
stop = loadtest.stop_server


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from tests.datagen import write_rectangle_dataset

    root = tmp_path_factory.mktemp("serve-data") / "rects"
    write_rectangle_dataset(root, split="val", n=4, n_empty=1, seed=3, size=96)
    return root


@pytest.fixture(scope="module")
def server(data_root):
    proc, url = start_server(
        "--max-completions", "64", "--max-completion-chars", "4000", "--max-image-pixels", "90000",
        "--max-request-mib", "2", "--data-root", str(data_root),
    )
    yield url
    stop(proc)


def post_raw(url: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", "/score", body=body, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def comparable(results):
    return [[loadtest.comparable(r) for r in group] for group in results]


ODD_COMPLETIONS = [
    "", "[]", "<think></think><answer>```json[]```</answer>", "\x00\ud7ff ünï €", "<answer>" * 50,
    '<think> a </think>\n<answer>```json[{"bbox_2d": [1e308, -1e308, NaN, 5], "positive_points": [[1,2],[3,4]]}]```</answer>',
    '<think> a </think>\n<answer>```json[{"bbox_2d": [10, 10, 60, 50], "positive_points": [[20, 20], [30, 30]]}, '
    '{"bbox_2d": [12, 12, 58, 48], "positive_points": [[20, 20], [30, 30]]}]```</answer>',
    '<think>x</think><answer>[{"bbox_2d": [5, 5, 40, 40]}]</answer>',
]


def test_parity_with_in_process_scores(server):
    remote = RemoteScorer(server)
    local = Scorer("box")
    rng = np.random.default_rng(0)
    groups = []
    for k in range(5):
        image = rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)
        gt = np.zeros((80, 96), dtype=bool)
        if k:
            gt[10 + k : 50, 8 : 60 + k] = True
        comps = ODD_COMPLETIONS + [format_completion([GeometricPrompt(box=(8.0 + k, 10.0, 60.0, 50.0 - k),
                                                                       positive_points=((20.0, 20.0), (30.0, 30.0)))])]
        groups.append((image, gt, comps))
    keys = [0, 0, 1, 2, 3]  # groups 0 and 1 say they share an image: it is sent once
    groups[1] = (groups[0][0], groups[1][1], groups[1][2])
    assert comparable(remote.score_many(groups, image_keys=keys)) == comparable(local.score_many(groups, image_keys=keys))
    # Structured actions and trl's conversational completions travel as their text.
    conv = [[{"role": "assistant", "content": c}] for c in ODD_COMPLETIONS[:3]]
    acts = [GeometricPrompt(box=(1.0, 2.0, 30.0, 40.0))]
    for comps in (conv, [acts]):
        assert comparable([remote.score(*groups[2][:2], comps)]) == comparable([local.score(*groups[2][:2], comps)])
    assert remote.weights == local.weights and remote.parser_mode == local.parser_mode
    assert remote.score_many([]) == local.score_many([]) == []


def test_drops_into_make_reward_functions(server):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    gt = np.zeros((64, 64), dtype=bool)
    gt[5:40, 10:50] = True
    comps = [[{"role": "assistant", "content": c}] for c in ODD_COMPLETIONS]
    cols = {"image": [image] * len(comps), "gt_mask": [gt] * len(comps), "sample_id": ["s0"] * len(comps)}
    got = [f(prompts=None, completions=comps, **cols) for f in make_reward_functions(RemoteScorer(server))]
    want = [f(prompts=None, completions=comps, **cols) for f in make_reward_functions(Scorer("box"))]
    assert got == want and any(v > 0 for v in got[0])


def test_concurrent_clients_batch_and_match(server):
    """CI-sized version of the 16 x 200 load benchmark (tests/perf/test_bench_service.py)."""
    workload = loadtest.make_workload(clients=8, groups=12, g=8, size=64)
    loadtest.expect(workload, Scorer("box"))
    before = RemoteScorer(server).metrics()
    report = loadtest.run_load(lambda: RemoteScorer(server), workload)
    after = RemoteScorer(server).metrics()
    assert report.errors == [] and report.mismatches == 0
    assert after["requests"] - before["requests"] == 96
    multi = sum(int(v) for k, v in after["batch_requests"].items() if int(k) > 1) - sum(
        int(v) for k, v in before["batch_requests"].items() if int(k) > 1)
    assert multi > 0, after["batch_requests"]  # requests from different clients shared a batch
    assert after["latency_ms"]["p99"] is not None and after["queue_depth"] == 0


def test_per_sample_requests_about_one_image_share_a_decode(server):
    """verl's naive manager sends one completion per call: concurrent requests about the same
    image and mask are merged into one group (one encoding, one batched decode)."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    gt = np.zeros((48, 48), dtype=bool)
    gt[4:30, 6:40] = True
    comps = [format_completion([GeometricPrompt(box=(float(k), 4.0, 30.0 + k, 30.0), positive_points=((10.0, 10.0), (12.0, 12.0)))])
             for k in range(8)]
    want = [loadtest.comparable(r) for r in Scorer("box").score(image, gt, comps)]
    for _ in range(3):  # concurrency is up to the scheduler: a few rounds make a merge certain
        before = RemoteScorer(server).metrics()
        start = threading.Barrier(len(comps))
        got: dict[int, dict] = {}

        def one(k: int) -> None:
            remote = RemoteScorer(server)
            start.wait()
            got[k] = loadtest.comparable(remote.score(image, gt, [comps[k]])[0])

        threads = [threading.Thread(target=one, args=(k,)) for k in range(len(comps))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [got[k] for k in range(len(comps))] == want
        after = RemoteScorer(server).metrics()
        if after["decoded_groups"] - before["decoded_groups"] < after["groups"] - before["groups"]:
            break
    else:
        pytest.fail("8 concurrent requests about one image were never merged into one decode")


def test_malformed_requests_get_400_and_server_lives(server):
    image, gt = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool)
    ok = {"images": [encode_image(image)], "groups": [{"image": 0, "gt_mask": encode_mask(gt), "completions": ["x"]}]}
    bad_bodies = [
        b"not json", b"[1, 2]", b"{}", json.dumps({"groups": []}).encode(),
        json.dumps({**ok, "groups": [{"image": 3, "gt_mask": encode_mask(gt), "completions": ["x"]}]}).encode(),
        json.dumps({**ok, "groups": [{"image": 0, "gt_mask": encode_mask(np.zeros((4, 8), bool)), "completions": ["x"]}]}).encode(),
        json.dumps({**ok, "groups": [{"image": 0, "gt_mask": encode_mask(gt), "completions": [7]}]}).encode(),
        json.dumps({**ok, "groups": [{"image": 0, "gt_mask": encode_mask(gt), "completions": "x"}]}).encode(),
        json.dumps({**ok, "images": [{"format": "raw", "shape": [8, 8, 3], "data": "@@@"}]}).encode(),
        json.dumps({**ok, "images": [{"format": "raw", "shape": [8, 9, 3], "data": encode_image(image)["data"]}]}).encode(),
        json.dumps({**ok, "images": [{"format": "encoded", "data": "aGVsbG8="}]}).encode(),
        json.dumps({**ok, "groups": [{"ref": {"image": "/etc/passwd", "mask": "/etc/passwd"}, "completions": ["x"]}]}).encode(),
        json.dumps({**ok, "groups": [None]}).encode(),
    ]
    for body in bad_bodies:
        status, answer = post_raw(server, body)
        assert status == 400, (body[:80], status, answer)
        assert isinstance(answer["detail"], str) and answer["detail"]
    status, answer = post_raw(server, json.dumps(ok).encode())
    assert status == 200 and len(answer["results"][0]) == 1
    with pytest.raises(ServiceError, match="HTTP 400.*differ in size"):
        RemoteScorer(server)._call("POST", "/score", json.loads(bad_bodies[5]))


def test_limits_answer_413_with_a_message(server):
    remote = RemoteScorer(server)
    image, gt = np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), bool)
    with pytest.raises(ServiceError, match=r"HTTP 413.*4001 characters; the limit is 4000"):
        remote.score(image, gt, ["a" * 4001])
    with pytest.raises(ServiceError, match=r"HTTP 413.*65 completions in one request; the limit is 64"):
        remote.score(image, gt, ["x"] * 65)
    big = np.zeros((310, 310, 3), np.uint8)
    with pytest.raises(ServiceError, match=r"HTTP 413.*over the limit of 90000 pixels"):
        remote.score(big, np.zeros((310, 310), bool), ["x"])
    status, answer = post_raw(server, b"{" + b" " * (3 << 20) + b"}")
    assert status == 413 and "limit is 2097152" in answer["detail"]


def test_server_resolves_dataset_references(server, data_root):
    from t2s_env.integrations.refs import GroundTruthRef, RefResolver

    remote = RemoteScorer(server)
    refs = [GroundTruthRef(dataset="earthreason:val", root=str(data_root), sample_id=f"img00{k}", image_size=64)
            for k in range(3)]
    refs.append(GroundTruthRef(image=str(data_root / "val/images/img003.png"), mask=str(data_root / "val/labels/img003.png"),
                               image_size=None))  # native 96², under this server's 90,000-pixel limit
    comps = ODD_COMPLETIONS
    got = remote.score_refs([(r, comps) for r in refs])
    resolver = RefResolver()
    want = []
    for r in refs:
        resolved = resolver.resolve(r)
        want.append(Scorer("box").score(resolved.image, resolved.mask, comps))
    assert comparable(got) == comparable(want)
    outside = GroundTruthRef(image="/etc/hostname", mask="/etc/hostname")
    with pytest.raises(ServiceError, match="HTTP 400.*outside the server's --data-root"):
        remote.score_refs([(outside, ["x"])])
    missing = GroundTruthRef(image=str(data_root / "val/images/img003.png"), mask=str(data_root / "val/labels/nope.png"),
                             image_size=64)
    with pytest.raises(ServiceError, match="nope.png"):
        remote.score_refs([(missing, ["x"])])


def test_bearer_token_from_environment():
    proc, url = start_server(env={"T2S_TEST_TOKEN": "s3cret"}, *["--token-env", "T2S_TEST_TOKEN"])
    try:
        image, gt = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool)
        with pytest.raises(ServiceError, match="HTTP 401"):
            RemoteScorer(url, token="wrong").score(image, gt, ["x"])
        assert RemoteScorer(url, token="s3cret").score(image, gt, ["x"])[0].reward == 0.0
        assert RemoteScorer(url, token="s3cret").health()["auth"] is True
    finally:
        stop(proc)


def _silent_server(mode: str):
    """A TCP server that accepts and then never answers ('hang') or answers garbage."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    conns = []

    def serve():
        while True:
            try:
                c, _ = sock.accept()
            except OSError:
                return
            conns.append(c)
            if mode == "garbage":
                c.recv(1 << 16)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot json!")
                c.close()
            elif mode == "wrong-id":
                c.recv(1 << 16)
                body = json.dumps({"request_id": "someone-else", "results": [[{}]]}).encode()
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
                c.close()

    threading.Thread(target=serve, daemon=True).start()
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("mode, message", [
    ("down", r"failed after 3 attempts.*ConnectionRefusedError"),
    ("hang", r"failed after 3 attempts.*no answer within 0.3 s"),
    ("garbage", r"failed after 3 attempts.*not JSON"),
    ("wrong-id", r"failed after 3 attempts.*not for this request"),
])
def test_client_fails_loudly_after_bounded_retries(mode, message):
    if mode == "down":
        url, sock = f"http://127.0.0.1:{free_port()}", None
    else:
        sock, url = _silent_server(mode)
    remote = RemoteScorer(url, timeout=0.3, retries=2, backoff=0.01)
    remote._server = {"scorer": {"prompt_variant": "bbox+2pos", "parser_mode": "strict"}}  # no /health round trip
    image, gt = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool)
    try:  # the retries are counted in the message; their duration is not asserted (machine speed)
        with pytest.raises(ServiceError, match=message):
            remote.score(image, gt, ["x"])
        # ... and through the trainer's reward function too: an error, never a reward of 0.
        iou = make_reward_functions(remote)[0]
        with pytest.raises(T2SError):
            iou(prompts=None, completions=["x"], image=[image], gt_mask=[gt])
    finally:
        if sock is not None:
            sock.close()


@pytest.mark.slow
def test_killed_and_restarted_server_loses_no_answer():
    """Kill -9 the server mid-load, restart it on the same port: every client finishes through
    retries and every answer equals the in-process score of its own request."""
    port = free_port()
    proc, url = start_server(port=port)
    workload = loadtest.make_workload(clients=6, groups=20, g=8, size=64, seed=7)
    loadtest.expect(workload, Scorer("box"))
    total = sum(len(m) for m in workload)
    state = {"killed_at": None, "proc": proc}
    restarted = threading.Event()

    def restart():
        time.sleep(0.5)  # clients keep retrying against a closed port meanwhile (a start takes 10-20 s under load)
        state["proc"], _ = start_server(port=port)
        restarted.set()

    def on_answer(n: int) -> None:
        if state["killed_at"] is None and n >= total // 3:
            state["killed_at"] = n
            os.kill(proc.pid, signal.SIGKILL)
            threading.Thread(target=restart, daemon=True).start()

    try:
        report = loadtest.run_load(lambda: RemoteScorer(url, retries=20, backoff=0.2, max_backoff=5.0), workload, on_answer)
        assert restarted.wait(60)
        assert report.errors == [] and report.mismatches == 0
        assert state["killed_at"] is not None and state["killed_at"] < total
        served_after = RemoteScorer(url).metrics()["requests"]
        assert 0 < served_after <= total  # the restarted server took over part of the load
    finally:
        stop(proc)
        if state["proc"] is not proc:
            stop(state["proc"])


def test_port_in_use_is_a_one_line_error(capsys):
    from t2s_env.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("t2s: error: cannot listen on 127.0.0.1:") and "--port" in err


def test_health_shows_what_decides_a_score(server):
    health = RemoteScorer(server).health()
    assert (health["parser_mode"], health["coord_frame"], health["prompt_variant"]) == ("strict", "abs", "bbox+2pos")
    assert all(health[k] == health["scorer"][k] for k in ("parser_mode", "coord_frame", "prompt_variant"))
    assert health["limits"]["max_image_pixels"] == 90000 and "max_request_pixels" in health["limits"]


def test_the_documented_first_request_scores_as_documented(server):
    """docs/scale-out.md's hand-made request (`first.json`): its answer is the one it shows."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "scale-out.md").read_text()
    section = doc[doc.index("`first.json`:"):]
    body = section[section.index("```json\n") + len("```json\n"):section.index("\n```", section.index("```json\n"))]
    status, answer = post_raw(server, body.encode())
    assert status == 200 and answer["request_id"] == "first"
    got = [(r["reward"], r["reward_components"], r["error"]) for r in answer["results"][0]]
    assert got == [(4.0, {"iou": 1.0, "json": 1.0, "think": 1.0}, None),
                   (1.0, {"iou": 0.0, "json": 0.0, "think": 1.0}, "answer lacks the ```json fence (strict mode)")]
    shown = section[section.index('{"request_id":"first"'):]
    assert '"reward":4.0' in shown and '"reward":1.0' in shown and "answer lacks the ```json fence (strict mode)" in shown
