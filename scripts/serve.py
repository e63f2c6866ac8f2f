"""Serve the scorer over HTTP: POST /score, GET /health, GET /metrics.

    t2s serve --segmenter sam2:small --device cuda:0 --host 127.0.0.1 --port 8765

One process holds the segmenter; trainers and evaluators anywhere on the host (or the
network, with a token) send groups of completions and get exactly what
``Scorer.score`` returns in-process (the wire format is documented in
:mod:`t2s_env.remote`; the client is :class:`t2s_env.remote.RemoteScorer`).

Dynamic batching: requests are decoded and validated on a thread pool, then queued; one
scoring thread takes the first waiting request, waits at most ``--max-wait-ms`` for more,
up to ``--max-batch`` groups, and scores them in one ``Scorer.score_many`` call: images
are encoded in batches across requests, each distinct image once (equal pixels from
different requests share one encoding, and an LRU keeps recent embeddings for requests that
arrive later); groups about the same image and mask are merged across requests, and each
group's prompt sets are decoded in one batched call.

Safety: binds to 127.0.0.1 unless told otherwise; when the environment variable named by
``--token-env`` (default ``T2S_SERVE_TOKEN``) is set, /score and /metrics need
``Authorization: Bearer <token>``. Oversized requests, too many completions, too long
completions and too large images get 413 with a message; malformed requests get 400; no
request can stop the server.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# Request is imported lazily inside create_app (so `t2s --help` works without fastapi).
import argparse
import asyncio
import hmac
import json
import os
import queue
import socket
import sys
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from t2s_env.errors import ConfigError, T2SError
from t2s_env.integrations.cache import EncodeCache, image_digest
from t2s_env.integrations.refs import RefResolver
from t2s_env.remote import TOKEN_ENV, TooLarge, WireError, decode_image, decode_mask, result_to_wire, scorer_config
from t2s_env.scoring import Scorer

MiB = 1 << 20


@dataclass
class Limits:
    max_request_bytes: int = 64 * MiB
    max_completions: int = 1024  # per request, all groups together
    max_completion_chars: int = 32_768
    max_image_pixels: int = 40_000_000  # per image or mask (H * W)
    max_groups: int = 256


@dataclass
class Prepared:
    request_id: Any
    groups: list[tuple[np.ndarray, np.ndarray, list[Any]]]
    keys: list[tuple[str, str]]  # (image key, target key) per group: equal pixels, equal mask


@dataclass
class Job:
    groups: list[tuple[np.ndarray, np.ndarray, list[Any]]]
    keys: list[tuple[str, str]]
    future: Future
    enqueued: float = field(default_factory=time.perf_counter)


class Metrics:
    """Counters and recent latencies for GET /metrics (thread-safe)."""

    def __init__(self, window: int = 4096) -> None:
        self.lock = threading.Lock()
        self.started = time.time()
        self.requests = 0
        self.groups = 0
        self.completions = 0
        self.status: Counter[int] = Counter()
        self.batches = 0
        self.batch_groups: Counter[int] = Counter()
        self.batch_requests: Counter[int] = Counter()
        self.latencies: deque[float] = deque(maxlen=window)
        self.queue_waits: deque[float] = deque(maxlen=window)
        self.score_seconds = 0.0
        self.decoded_groups = 0  # groups after merging equal (image, mask) pairs

    def answered(self, status: int, latency: float | None = None) -> None:
        with self.lock:
            self.status[status] += 1
            if latency is not None:
                self.latencies.append(latency)

    @staticmethod
    def _pct(values: Sequence[float]) -> dict[str, float | None]:
        if not values:
            return {"p50": None, "p99": None, "mean": None}
        arr = np.asarray(values) * 1000.0
        return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "mean": float(arr.mean())}

    def snapshot(self, queue_depth: int, cache: EncodeCache) -> dict[str, Any]:
        with self.lock:
            return {
                "uptime_s": time.time() - self.started,
                "queue_depth": queue_depth,
                "requests": self.requests,
                "groups": self.groups,
                "completions": self.completions,
                "responses_by_status": {str(k): v for k, v in sorted(self.status.items())},
                "batches": self.batches,
                "batch_groups": {str(k): v for k, v in sorted(self.batch_groups.items())},
                "batch_requests": {str(k): v for k, v in sorted(self.batch_requests.items())},
                "latency_ms": self._pct(list(self.latencies)),
                "queue_wait_ms": self._pct(list(self.queue_waits)),
                "score_seconds": self.score_seconds,
                "decoded_groups": self.decoded_groups,
                "encode_cache": {"hits": cache.hits, "misses": cache.misses, "capacity": cache.capacity},
            }


class Batcher:
    """One scoring thread that merges queued requests into ``score_many`` batches."""

    def __init__(self, scorer: Scorer, metrics: Metrics, max_batch_groups: int = 32, max_wait_s: float = 0.005) -> None:
        self.scorer = scorer
        self.metrics = metrics
        self.max_batch_groups = max(1, int(max_batch_groups))
        self.max_wait_s = max(0.0, float(max_wait_s))
        self.queue: queue.Queue[Job] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="t2s-scorer", daemon=True)
        self.thread.start()

    def submit(self, groups, keys) -> Future:
        job = Job(groups, keys, Future())
        self.queue.put(job)
        return job.future

    def _take(self) -> list[Job]:
        jobs = [self.queue.get()]
        n = len(jobs[0].groups)
        deadline = time.perf_counter() + self.max_wait_s
        while n < self.max_batch_groups:
            left = deadline - time.perf_counter()
            try:
                job = self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            jobs.append(job)
            n += len(job.groups)
        return jobs

    def _score(self, jobs: list[Job]) -> None:
        groups = [g for j in jobs for g in j.groups]
        keys = [k for j in jobs for k in j.keys]
        # Groups about the same image and mask (e.g. the G per-sample requests of one GRPO
        # group) become one group: one encoding and one batched decode for all of them.
        merged: dict[tuple[str, str], int] = {}
        todo: list[tuple[np.ndarray, np.ndarray, list[Any]]] = []
        where: list[tuple[int, int, int]] = []
        for (image, gt, completions), key in zip(groups, keys):
            slot = merged.setdefault(key, len(todo))
            if slot == len(todo):
                todo.append((image, gt, []))
            at = len(todo[slot][2])
            todo[slot][2].extend(completions)
            where.append((slot, at, at + len(completions)))
        start = time.perf_counter()
        scored = self.scorer.score_many(todo, image_keys=[k[0] for k in merged])
        results = [scored[slot][a:b] for slot, a, b in where]
        with self.metrics.lock:
            self.metrics.batches += 1
            self.metrics.batch_groups[len(groups)] += 1
            self.metrics.decoded_groups += len(todo)
            self.metrics.batch_requests[len(jobs)] += 1
            self.metrics.score_seconds += time.perf_counter() - start
            for j in jobs:
                self.metrics.queue_waits.append(start - j.enqueued)
        at = 0
        for j in jobs:
            j.future.set_result(results[at : at + len(j.groups)])
            at += len(j.groups)

    def _run(self) -> None:
        while True:
            jobs = self._take()
            try:
                self._score(jobs)
            except Exception:
                # One bad request must not fail the others batched with it: score each alone.
                for j in jobs:
                    if j.future.done():
                        continue
                    try:
                        self._score([j])
                    except Exception as exc:  # noqa: BLE001 - reported to that request only
                        j.future.set_exception(exc)


def prepare(body: bytes, limits: Limits, resolver: RefResolver | None) -> Prepared:
    """Decode and validate one /score body (raises WireError -> 400, TooLarge -> 413)."""
    try:
        req = json.loads(body)
    except ValueError as exc:
        raise WireError(f"body is not JSON: {exc}") from None
    if not isinstance(req, dict):
        raise WireError("body must be a JSON object with 'groups'")
    groups_in = req.get("groups")
    images_in = req.get("images", [])
    if not isinstance(groups_in, list) or not groups_in:
        raise WireError("'groups' must be a non-empty list")
    if not isinstance(images_in, list):
        raise WireError("'images' must be a list")
    if len(groups_in) > limits.max_groups:
        raise TooLarge(f"{len(groups_in)} groups in one request; the limit is {limits.max_groups}")
    total = 0
    for k, g in enumerate(groups_in):
        comps = g.get("completions") if isinstance(g, dict) else None
        if not isinstance(comps, list) or not comps:
            raise WireError(f"groups[{k}].completions must be a non-empty list")
        total += len(comps)
        for i, c in enumerate(comps):
            if c is not None and not isinstance(c, str):
                raise WireError(f"groups[{k}].completions[{i}] must be a string or null")
            if isinstance(c, str) and len(c) > limits.max_completion_chars:
                raise TooLarge(
                    f"groups[{k}].completions[{i}] has {len(c)} characters; the limit is {limits.max_completion_chars}"
                )
    if total > limits.max_completions:
        raise TooLarge(f"{total} completions in one request; the limit is {limits.max_completions}")
    images = [decode_image(im, f"images[{i}]", limits.max_image_pixels) for i, im in enumerate(images_in)]
    digests: list[str | None] = [None] * len(images)
    groups, keys = [], []
    for k, g in enumerate(groups_in):
        if "ref" in g:
            if resolver is None:
                raise WireError("this server resolves no references; start it with --data-root DIR")
            image, gt, key = resolver.resolve(g["ref"])
            target = json.dumps(g["ref"], sort_keys=True)
        else:
            slot = g.get("image")
            if not isinstance(slot, int) or not 0 <= slot < len(images):
                raise WireError(f"groups[{k}].image must index 'images' (0..{len(images) - 1})")
            image = images[slot]
            gt = decode_mask(g.get("gt_mask"), f"groups[{k}].gt_mask", limits.max_image_pixels)
            if gt.shape != image.shape[:2]:
                raise WireError(f"groups[{k}]: image {list(image.shape[:2])} and gt_mask {list(gt.shape)} differ in size")
            if digests[slot] is None:
                digests[slot] = image_digest(image)
            key = digests[slot]
            target = image_digest(gt)
        groups.append((image, gt, list(g["completions"])))
        keys.append((key, target))
    return Prepared(req.get("request_id"), groups, keys)


def create_app(
    scorer: Scorer,
    limits: Limits | None = None,
    max_batch_groups: int = 32,
    max_wait_s: float = 0.005,
    token: str | None = None,
    data_roots: Sequence[str] | None = None,
):
    """The FastAPI application around ``scorer`` (its segmenter gets an embedding LRU)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    limits = limits or Limits()
    if not isinstance(scorer.segmenter, EncodeCache):
        scorer.segmenter = EncodeCache(scorer.segmenter)
    cache: EncodeCache = scorer.segmenter  # type: ignore[assignment]
    metrics = Metrics()
    batcher = Batcher(scorer, metrics, max_batch_groups, max_wait_s)
    resolver = RefResolver(allowed_roots=list(data_roots)) if data_roots else None
    app = FastAPI(title="Think2Seg scorer", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher, app.state.metrics = batcher, metrics

    def error(status: int, message: str, t0: float | None = None) -> JSONResponse:
        metrics.answered(status, None if t0 is None else time.perf_counter() - t0)
        return JSONResponse({"detail": message}, status_code=status)

    def authorized(request: Request) -> bool:
        if not token:
            return True
        got = request.headers.get("authorization", "")
        return hmac.compare_digest(got.encode(), f"Bearer {token}".encode())

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "segmenter": cache.describe(), "scorer": scorer_config(scorer),
                "auth": bool(token), "limits": vars(limits)}

    @app.get("/metrics")
    async def get_metrics(request: Request):
        if not authorized(request):
            return error(401, "missing or wrong bearer token (Authorization: Bearer ...)")
        return metrics.snapshot(batcher.queue.qsize(), cache)

    @app.post("/score")
    async def score(request: Request):
        t0 = time.perf_counter()
        if not authorized(request):
            return error(401, "missing or wrong bearer token (Authorization: Bearer ...)", t0)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_request_bytes:
            return error(413, f"request of {declared} bytes; the limit is {limits.max_request_bytes} (--max-request-mib)", t0)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_request_bytes:
                return error(413, f"request over {limits.max_request_bytes} bytes (--max-request-mib)", t0)
        try:
            prepared = await run_in_threadpool(prepare, bytes(body), limits, resolver)
        except TooLarge as exc:
            return error(413, str(exc), t0)
        except (WireError, T2SError) as exc:
            return error(400, str(exc), t0)
        except Exception as exc:  # noqa: BLE001 - any malformed input is the client's problem
            return error(400, f"malformed request: {type(exc).__name__}: {exc}", t0)
        with metrics.lock:
            metrics.requests += 1
            metrics.groups += len(prepared.groups)
            metrics.completions += sum(len(g[2]) for g in prepared.groups)
        try:
            results = await asyncio.wrap_future(batcher.submit(prepared.groups, prepared.keys))
        except Exception as exc:  # noqa: BLE001
            return error(500, f"scoring failed: {type(exc).__name__}: {exc}", t0)
        payload = {"request_id": prepared.request_id,
                   "results": [[result_to_wire(r) for r in group] for group in results]}
        metrics.answered(200, time.perf_counter() - t0)
        return JSONResponse(payload)

    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (SO_REUSEADDR, so a restarted server gets its port back at once)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port or --host") from None
    sock.listen(2048)
    return sock


def _options(pairs: Sequence[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ConfigError(f"--segmenter-option {pair!r} must look like KEY=VALUE (e.g. checkpoint=/ckpt/sam2.pt)")
        out[key] = yaml.safe_load(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t2s serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--segmenter", default="box", help="box, grabcut or sam2:<size> (default box)")
    p.add_argument("--segmenter-option", action="append", default=[], metavar="KEY=VALUE",
                   help="segmenter option, repeatable (e.g. checkpoint=/ckpt/sam2.1_hiera_small.pt)")
    p.add_argument("--device", help="segmenter device, e.g. cuda:0")
    p.add_argument("--prompt-variant", default="bbox+2pos")
    p.add_argument("--parser-mode", default="strict", choices=["strict", "lenient"])
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free port, printed at start)")
    p.add_argument("--max-batch", type=int, default=32, help="most groups scored in one batch (default 32)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests (default 5)")
    p.add_argument("--max-request-mib", type=float, default=64.0, help="largest request body (default 64 MiB)")
    p.add_argument("--max-completions", type=int, default=Limits.max_completions, help="completions per request")
    p.add_argument("--max-completion-chars", type=int, default=Limits.max_completion_chars)
    p.add_argument("--max-image-pixels", type=int, default=Limits.max_image_pixels, help="H*W of one image or mask")
    p.add_argument("--data-root", action="append", default=[], metavar="DIR",
                   help="folder whose datasets requests may reference (repeatable; default: none)")
    p.add_argument("--token-env", default=TOKEN_ENV,
                   help=f"environment variable holding the bearer token (default {TOKEN_ENV}; unset: no auth)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the scorer over HTTP (POST /score, GET /health, GET /metrics) with dynamic batching."""
    args = build_parser().parse_args(argv)
    import uvicorn

    from t2s_env.segmenters import make_segmenter

    options = _options(args.segmenter_option)
    if args.device:
        options["device"] = args.device
    for d in args.data_root:
        if not os.path.isdir(d):
            raise ConfigError(f"--data-root {d} is not a folder")
    token = os.environ.get(args.token_env) or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and not token:
        print(f"t2s serve: warning: listening on {args.host} without a token; set {args.token_env}", file=sys.stderr)
    try:
        segmenter = make_segmenter(args.segmenter, **options)
    except TypeError as exc:
        raise ConfigError(f"segmenter {args.segmenter!r} does not take these options: {exc}") from None
    scorer = Scorer(segmenter, prompt_variant=args.prompt_variant, parser_mode=args.parser_mode)
    limits = Limits(int(args.max_request_mib * MiB), args.max_completions, args.max_completion_chars,
                    args.max_image_pixels)
    app = create_app(scorer, limits, args.max_batch, args.max_wait_ms / 1000.0, token, args.data_root)
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    print(f"t2s serve: listening on http://{host}:{port} (segmenter {segmenter.name})", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=30))
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    from t2s_env.cli import main as t2s_main

    sys.exit(t2s_main(["serve", *sys.argv[1:]]))
