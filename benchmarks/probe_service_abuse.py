"""Hostile-client probes of `t2s serve` (issue 18): what each abusive request costs the server.

    .venv/bin/python -m benchmarks.probe_service_abuse [CASE ...]      (from the repository root)

Each case starts its own server on 127.0.0.1 (a subprocess, killed at the end), sends one
kind of abuse and prints one JSON line: the answer's status and first words, wall time, and
the server's resident memory before, after and at peak (VmRSS / VmHWM from /proc). Cases:

- ``mixup``: a ref naming another sample's ``image`` path beside an honest ref of that sample
  (grabcut, 20 rounds): how often the honest client gets a wrong score;
- ``image-size``: a 215-byte ref with ``image_size: 12000``;
- ``png-unused``: 16 black 6000² PNGs of which one group uses one;
- ``png-all``: 16 groups, each on its own black 6000² PNG;
- ``partial-bodies``: 6 connections each sending 60 MB of a declared 64 MB body, then silence;
- ``idle-connections``: 206 connections that send nothing;
- ``nan-request-id``: a valid request whose ``request_id`` is NaN.

Not a test: it measures, and every case is bounded (at most a minute or two of waiting).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import sys
import threading
import time
from typing import Any, Callable

import numpy as np

from t2s_env.instructions import format_completion
from t2s_env.prompt import GeometricPrompt
from think2seg.scripts import loadtest

COMPLETION = format_completion([GeometricPrompt(box=(200.0, 200.0, 600.0, 600.0),
                                                positive_points=((400.0, 400.0), (410.0, 410.0)))])


def memory_mb(pid: int) -> dict[str, float]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024.0
    return fields


def post(url: str, body: bytes, timeout: float = 300.0) -> tuple[int, str]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", "/score", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()[:300].decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        return -1, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def black_png(side: int, mode: str) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (side, side)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def synthetic_refs() -> tuple[str, dict[str, Any], dict[str, Any]]:
    from t2s_env.datasets import make_dataset
    from t2s_env.datasets.synthetic import embedded_root

    samples = {s.sample_id: s for s in make_dataset("synthetic:val")}
    honest = {"dataset": "synthetic:val", "sample_id": "val_00003", "image": str(samples["val_00003"].image_path),
              "mask": str(samples["val_00003"].mask_ref), "image_size": 840}
    hostile = {"dataset": "synthetic:val", "sample_id": "val_00007", "image": honest["image"], "image_size": 840}
    return str(embedded_root()), honest, hostile


def case_mixup(url: str) -> dict[str, Any]:
    from t2s_env.integrations.refs import RefResolver
    from t2s_env.remote import RemoteScorer
    from t2s_env.scoring import Scorer

    _, honest, hostile = synthetic_refs()
    resolved = RefResolver().resolve(honest)
    # (image, mask, key) before issue 18's fix, a ResolvedRef after it
    image, mask = (resolved.image, resolved.mask) if hasattr(resolved, "image") else resolved[:2]
    want = Scorer("grabcut").score(image, mask, [COMPLETION])[0].reward
    wrong, rounds, seen = 0, 20, set()
    for _ in range(rounds):
        got: dict[str, Any] = {}
        barrier = threading.Barrier(2)

        def send(name: str, ref: dict[str, Any]) -> None:
            client = RemoteScorer(url, retries=0)
            client.health()
            barrier.wait()
            try:
                got[name] = client.score_refs([(ref, [COMPLETION])])[0][0].reward
            except Exception as exc:  # noqa: BLE001 - a refused hostile request is the fixed behaviour
                got[name] = type(exc).__name__

        threads = [threading.Thread(target=send, args=a) for a in (("hostile", hostile), ("honest", honest))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        wrong += got.get("honest") != want
        seen.add(str(got.get("honest")))
    return {"honest_wrong": f"{wrong} of {rounds}", "want": round(want, 3), "honest_got": sorted(seen)}


def case_image_size(url: str) -> dict[str, Any]:
    ref = {"dataset": "synthetic:val", "sample_id": "val_00001", "image_size": 12000}
    body = json.dumps({"groups": [{"ref": ref, "completions": [COMPLETION]}]}).encode()
    status, text = post(url, body)
    return {"status": status, "answer": text, "body_bytes": len(body)}


def case_png(url: str, all_used: bool) -> dict[str, Any]:
    image = {"format": "encoded", "data": black_png(6000, "RGB")}
    mask = {"format": "encoded", "data": black_png(6000, "L")}
    groups = [{"image": k if all_used else 0, "gt_mask": mask, "completions": [COMPLETION]}
              for k in range(16 if all_used else 1)]
    body = json.dumps({"images": [image] * 16, "groups": groups}).encode()
    status, text = post(url, body)
    return {"status": status, "answer": text, "body_bytes": len(body)}


def _hold(n: int, payload: Callable[[socket.socket], None], hold_s: float, url: str) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)), timeout=5)
        payload(s)
        socks.append(s)
    time.sleep(hold_s)
    open_, answered = 0, []
    for s in socks:
        s.settimeout(0.2)
        try:
            data = s.recv(200)
            if data:
                answered.append(data.split(b"\r\n")[0].decode("ascii", "replace"))
            # b"": the server closed it
        except socket.timeout:
            open_ += 1
        except OSError:
            pass
        s.close()
    status, text = post(url, json.dumps({"groups": [{"ref": {}, "completions": ["x"]}]}).encode(), timeout=30)
    return {"held": n, "still_open_after_s": {hold_s: open_}, "answers": sorted(set(answered)),
            "next_request": [status, text[:120]]}


def case_partial_bodies(url: str) -> dict[str, Any]:
    chunk = b" " * (1 << 20)

    def send(s: socket.socket) -> None:
        s.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n{" % (64 << 20))
        for _ in range(60):
            s.sendall(chunk)

    return _hold(6, send, 40.0, url)


def case_idle_connections(url: str) -> dict[str, Any]:
    return _hold(206, lambda s: None, 40.0, url)


def case_nan_request_id(url: str) -> dict[str, Any]:
    from t2s_env.remote import RemoteScorer, encode_image, encode_mask

    image, gt = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool)
    body = ('{"request_id": NaN, "images": [%s], "groups": [{"image": 0, "gt_mask": %s, "completions": ["x"]}]}'
            % (json.dumps(encode_image(image)), json.dumps(encode_mask(gt)))).encode()
    status, text = post(url, body)
    metrics = RemoteScorer(url).metrics()
    return {"status": status, "answer": text, "metrics_requests": metrics["requests"],
            "metrics_status": metrics["responses_by_status"]}


CASES: dict[str, tuple[Callable[[str], dict[str, Any]], tuple[str, ...]]] = {
    "mixup": (case_mixup, ("--segmenter", "grabcut", "--max-wait-ms", "50")),
    "image-size": (case_image_size, ()),
    "png-unused": (lambda url: case_png(url, all_used=False), ()),
    "png-all": (lambda url: case_png(url, all_used=True), ()),
    "partial-bodies": (case_partial_bodies, ()),
    "idle-connections": (case_idle_connections, ()),
    "nan-request-id": (case_nan_request_id, ()),
}


def main(argv: list[str]) -> int:
    names = argv or list(CASES)
    data_root, _, _ = synthetic_refs()
    for name in names:
        run, args = CASES[name]
        proc, url = loadtest.spawn_server("--data-root", data_root, *args)
        try:
            before = memory_mb(proc.pid)
            t0 = time.perf_counter()
            out = run(url)
            seconds = time.perf_counter() - t0
            after = memory_mb(proc.pid) if proc.poll() is None else {"VmRSS": None, "VmHWM": None}
        finally:
            loadtest.stop_server(proc)
        print(json.dumps({"case": name, "seconds": round(seconds, 2), "rss_mb_before": round(before["VmRSS"]),
                          "rss_mb_after": after["VmRSS"] and round(after["VmRSS"]),
                          "peak_rss_mb": after["VmHWM"] and round(after["VmHWM"]), **out}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
