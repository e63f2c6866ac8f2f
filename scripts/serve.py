"""Serve the scorer over HTTP: POST /score, GET /health, GET /metrics.

    t2s serve --segmenter sam2:small --device cuda:0 --host 127.0.0.1 --port 8765

One process holds the segmenter; trainers and evaluators anywhere on the host (or the
network, with a token) send groups of completions and get exactly what
``Scorer.score`` returns in-process (the wire format is documented in
:mod:`t2s_env.remote` and docs/scale-out.md; the client is :class:`t2s_env.remote.RemoteScorer`).

Dynamic batching: requests are decoded and validated on a thread pool, then queued; one
scoring thread takes the first waiting request, waits at most ``--max-wait-ms`` for more,
up to ``--max-batch`` groups, and scores them in one ``Scorer.score_many`` call: images
are encoded in batches across requests, each distinct image once (equal pixels from
different requests share one encoding, and an LRU keeps recent embeddings for requests that
arrive later); groups about the same image and mask are merged across requests, and each
group's prompt sets are decoded in one batched call. Images and masks are identified by
digests of their decoded pixels only: nothing a client writes (a path, a name, an index)
can make another client's group share its encoding or its mask.

Safety: binds to 127.0.0.1 unless told otherwise; when the environment variable named by
``--token-env`` (default ``T2S_SERVE_TOKEN``) is set, /score and /metrics need
``Authorization: Bearer <token>``. Every field has a limit (``Limits``): over one, 413;
malformed, 400; a request that does not arrive within ``--read-timeout-s``, 408 (or the
connection closed, while its headers are incomplete); over ``--limit-concurrency``
requests in flight, 503. Each refusal is one line naming the field and the limit, and changes no
state (no cache entry, no request counted). No request can stop the server.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# Request is imported lazily inside create_app (so `t2s --help` works without fastapi).
import argparse
import asyncio
import hmac
import json
import logging
import os
import queue
import socket
import sys
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

import numpy as np

from t2s_env.coords import COORD_FRAMES, DEFAULT_COORD_FRAME
from t2s_env.errors import ConfigError, DatasetError, T2SError, did_you_mean
from t2s_env.instructions import coord_variant
from t2s_env.integrations.cache import EncodeCache, image_digest
from t2s_env.integrations.refs import GroundTruthRef, RefResolver, ResolvedRef
from t2s_env.options import parse_key_values
from t2s_env.remote import TOKEN_ENV, TooLarge, WireArray, WireError, read_image, read_mask, result_to_wire, scorer_config
from t2s_env.scoring import Scorer

MiB = 1 << 20
REQUEST_KEYS = ("request_id", "images", "groups")
GROUP_KEYS = ("image", "gt_mask", "completions", "ref")
MAX_REQUEST_ID_CHARS = 256
log = logging.getLogger("t2s.serve")


@dataclass
class Limits:
    max_request_bytes: int = 64 * MiB
    max_completions: int = 1024  # per request, all groups together
    max_completion_chars: int = 32_768
    max_image_pixels: int = 40_000_000  # per image or mask (H * W), a ref's image_size² included
    max_groups: int = 256
    max_images: int = 256  # entries of "images" per request
    max_request_pixels: int = 80_000_000  # images and masks a request decodes, all together
    read_timeout_s: float = 30.0  # for a request's headers, and again for its body
    limit_concurrency: int = 128  # /score requests in flight (2x + 16 connections); more get 503


#: CLI flag of each limit, for the messages that name it
LIMIT_FLAGS = {
    "max_request_bytes": "--max-request-mib", "max_completions": "--max-completions",
    "max_completion_chars": "--max-completion-chars", "max_image_pixels": "--max-image-pixels",
    "max_groups": "--max-groups", "max_images": "--max-images", "max_request_pixels": "--max-request-pixels",
    "read_timeout_s": "--read-timeout-s", "limit_concurrency": "--limit-concurrency",
}


@dataclass
class Prepared:
    request_id: Any
    groups: list[tuple[np.ndarray, np.ndarray, list[Any]]]
    keys: list[tuple[str, str]]  # (image digest, mask digest) per group: equal keys, equal pixels


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
        self.aborted = 0  # requests whose client went away before its body arrived
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

    def accepted(self, prepared: Prepared) -> None:
        with self.lock:
            self.requests += 1
            self.groups += len(prepared.groups)
            self.completions += sum(len(g[2]) for g in prepared.groups)

    @staticmethod
    def _pct(values: Sequence[float]) -> dict[str, float | None]:
        if not values:
            return {"p50": None, "p99": None, "mean": None}
        arr = np.asarray(values) * 1000.0
        return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "mean": float(arr.mean())}

    def snapshot(self, queue_depth: int, cache: EncodeCache, resolver: RefResolver | None) -> dict[str, Any]:
        embeddings, embedding_bytes = cache.held
        refs, ref_bytes = resolver.held if resolver is not None else (0, 0)
        with self.lock:
            return {
                "uptime_s": time.time() - self.started,
                "queue_depth": queue_depth,
                "requests": self.requests,
                "groups": self.groups,
                "completions": self.completions,
                "aborted": self.aborted,
                "responses_by_status": {str(k): v for k, v in sorted(self.status.items())},
                "batches": self.batches,
                "batch_groups": {str(k): v for k, v in sorted(self.batch_groups.items())},
                "batch_requests": {str(k): v for k, v in sorted(self.batch_requests.items())},
                "latency_ms": self._pct(list(self.latencies)),
                "queue_wait_ms": self._pct(list(self.queue_waits)),
                "score_seconds": self.score_seconds,
                "decoded_groups": self.decoded_groups,
                "encode_cache": {"hits": cache.hits, "misses": cache.misses, "capacity": cache.capacity,
                                 "entries": embeddings, "bytes": embedding_bytes},
                "ref_cache": {"entries": refs, "bytes": ref_bytes},
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
        # The keys are digests of the pixels, so merged groups have equal pixels.
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


# -- validating and decoding one request ------------------------------------------------------

def _known_keys(obj: dict, valid: Sequence[str], where: str) -> None:
    for key in obj:
        if key not in valid:
            raise WireError(f"unknown field {key!r} in {where}{did_you_mean(key, valid)}; valid: {', '.join(valid)}")


def _check_completions(groups_in: list, limits: Limits) -> None:
    total = 0
    for k, g in enumerate(groups_in):
        if not isinstance(g, dict):
            raise WireError(f"groups[{k}] must be an object with completions and an image or a ref")
        _known_keys(g, GROUP_KEYS, f"groups[{k}]")
        if "ref" in g and ("image" in g or "gt_mask" in g):
            raise WireError(f"groups[{k}] has a ref and an image/gt_mask; give one or the other")
        comps = g.get("completions")
        if not isinstance(comps, list) or not comps:
            raise WireError(f"groups[{k}].completions must be a non-empty list")
        total += len(comps)
        for i, c in enumerate(comps):
            if c is not None and not isinstance(c, str):
                raise WireError(f"groups[{k}].completions[{i}] must be a string or null")
            if isinstance(c, str) and len(c) > limits.max_completion_chars:
                raise TooLarge(
                    f"groups[{k}].completions[{i}] has {len(c)} characters; the limit is {limits.max_completion_chars}"
                    " (--max-completion-chars)"
                )
    if total > limits.max_completions:
        raise TooLarge(f"{total} completions in one request; the limit is {limits.max_completions} (--max-completions)")


class _PixelBudget:
    """The pixels a request will decode, charged before any decoding happens."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.used = 0

    def charge(self, pixels: int, what: str) -> None:
        self.used += pixels
        if self.used > self.limits.max_request_pixels:
            raise TooLarge(
                f"{what} brings the images and masks of this request to {self.used} pixels; the limit is "
                f"{self.limits.max_request_pixels} per request (--max-request-pixels)"
            )


def _ref_of(g: dict, k: int, limits: Limits, resolver: RefResolver | None) -> tuple[GroundTruthRef, int]:
    """The group's reference and the pixels its image and mask will take, checked."""
    if resolver is None:
        raise WireError("this server resolves no references; start it with --data-root DIR")
    try:
        ref = GroundTruthRef.from_any(g["ref"])
    except DatasetError as exc:
        raise WireError(f"groups[{k}].ref: {exc}") from None
    try:
        h, w = resolver.frame_shape(ref)  # the data-root check first; a sized frame reads nothing
    except DatasetError as exc:
        raise WireError(f"groups[{k}].ref: {exc}") from None
    size = ref.image_size
    if size is not None and size * size > limits.max_image_pixels:
        raise TooLarge(
            f"groups[{k}].ref.image_size {size} means {size}x{size} = {size * size} pixels, over the limit of "
            f"{limits.max_image_pixels} pixels (--max-image-pixels)"
        )
    if h * w > limits.max_image_pixels:
        raise TooLarge(
            f"groups[{k}].ref resolves to a {w}x{h} image at native size, over the limit of "
            f"{limits.max_image_pixels} pixels (--max-image-pixels); give it an image_size"
        )
    return ref, 2 * h * w  # the image and its mask


def prepare(body: bytes, limits: Limits, resolver: RefResolver | None) -> Prepared:
    """Decode and validate one /score body (raises WireError -> 400, TooLarge -> 413).

    Everything is checked before anything is decoded or cached: the structure, the
    counts, then every image and mask's size from its header (only images some group
    names), and only then are pixels decoded and references resolved."""
    try:
        req = json.loads(body)
    except ValueError as exc:
        raise WireError(f"body is not JSON: {exc}") from None
    if not isinstance(req, dict):
        raise WireError("body must be a JSON object with 'groups'")
    _known_keys(req, REQUEST_KEYS, "the request")
    request_id = req.get("request_id")
    if request_id is not None and not (isinstance(request_id, str) and len(request_id) <= MAX_REQUEST_ID_CHARS):
        shown = repr(request_id) if isinstance(request_id, (int, float)) else type(request_id).__name__
        raise WireError(f"request_id must be a string of at most {MAX_REQUEST_ID_CHARS} characters, got {shown[:40]}")
    groups_in = req.get("groups")
    images_in = req.get("images", [])
    if not isinstance(groups_in, list) or not groups_in:
        raise WireError("'groups' must be a non-empty list")
    if not isinstance(images_in, list):
        raise WireError("'images' must be a list")
    if len(groups_in) > limits.max_groups:
        raise TooLarge(f"{len(groups_in)} groups in one request; the limit is {limits.max_groups} (--max-groups)")
    if len(images_in) > limits.max_images:
        raise TooLarge(f"{len(images_in)} images in one request; the limit is {limits.max_images} (--max-images)")
    _check_completions(groups_in, limits)

    # Sizes first, from the shapes and file headers: nothing is decoded until all fit.
    budget = _PixelBudget(limits)
    images: dict[int, WireArray] = {}
    masks: dict[int, WireArray] = {}
    refs: dict[int, GroundTruthRef] = {}
    charged_refs: set[str] = set()
    for k, g in enumerate(groups_in):
        if "ref" in g:
            refs[k], pixels = _ref_of(g, k, limits, resolver)
            if refs[k].source_key not in charged_refs:
                charged_refs.add(refs[k].source_key)
                budget.charge(pixels, f"groups[{k}].ref")
            continue
        slot = g.get("image")
        if not isinstance(slot, int) or isinstance(slot, bool) or not 0 <= slot < len(images_in):
            raise WireError(f"groups[{k}].image must index 'images' (0..{len(images_in) - 1})")
        if slot not in images:
            images[slot] = read_image(images_in[slot], f"images[{slot}]").check(limits.max_image_pixels)
            budget.charge(images[slot].pixels, f"images[{slot}]")
        masks[k] = read_mask(g.get("gt_mask"), f"groups[{k}].gt_mask").check(limits.max_image_pixels)
        if masks[k].shape != images[slot].shape:
            raise WireError(f"groups[{k}]: image {list(images[slot].shape)} and gt_mask {list(masks[k].shape)} differ in size")
        budget.charge(masks[k].pixels, f"groups[{k}].gt_mask")

    # Then pixels, each image decoded and digested once.
    pixels = {slot: arr.decode() for slot, arr in images.items()}
    digests = {slot: image_digest(im) for slot, im in pixels.items()}
    resolved: dict[str, ResolvedRef] = {}
    groups, keys = [], []
    for k, g in enumerate(groups_in):
        completions = list(g["completions"])
        if k in refs:
            ref = refs[k]
            if ref.source_key not in resolved:
                try:
                    resolved[ref.source_key] = resolver.lookup(ref)  # type: ignore[union-attr]
                except DatasetError as exc:
                    raise WireError(f"groups[{k}].ref: {exc}") from None
            r = resolved[ref.source_key]
            groups.append((r.image, r.mask, completions))
            keys.append((r.image_key, r.mask_key))
        else:
            gt = masks[k].decode()
            groups.append((pixels[g["image"]], gt, completions))
            keys.append((digests[g["image"]], image_digest(gt)))
    # The request is accepted: only now may its references enter the cache.
    for k, ref in refs.items():
        resolver.remember(ref, resolved[ref.source_key])  # type: ignore[union-attr]
    return Prepared(request_id, groups, keys)


# -- the application --------------------------------------------------------------------------

def _client(request: Any) -> str:
    c = request.client
    return f"{c.host}:{c.port}" if c else "a client"


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
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect

    limits = limits or Limits()
    if not isinstance(scorer.segmenter, EncodeCache):
        scorer.segmenter = EncodeCache(scorer.segmenter)
    cache: EncodeCache = scorer.segmenter  # type: ignore[assignment]
    metrics = Metrics()
    batcher = Batcher(scorer, metrics, max_batch_groups, max_wait_s)
    resolver = RefResolver(allowed_roots=list(data_roots)) if data_roots else None
    # Decoding is CPU work: more requests decoding at once than cores only adds memory.
    decoding = asyncio.Semaphore(max(1, min(4, os.cpu_count() or 1)))
    app = FastAPI(title="Think2Seg scorer", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher, app.state.metrics, app.state.resolver = batcher, metrics, resolver

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
        # the settings that decide a score, at top level: a first hand-made request that
        # scores 0 is most often a strict parse or a frame mismatch
        return {"status": "ok", "parser_mode": scorer.parser_mode, "coord_frame": scorer.coord_frame,
                "prompt_variant": scorer.variant.name, "segmenter": cache.describe(),
                "scorer": scorer_config(scorer), "auth": bool(token), "limits": asdict(limits)}

    @app.get("/metrics")
    async def get_metrics(request: Request):
        if not authorized(request):
            return error(401, "missing or wrong bearer token (Authorization: Bearer ...)")
        return metrics.snapshot(batcher.queue.qsize(), cache, resolver)

    in_flight = [0]  # /score requests between their headers and their answer (one event loop: no lock)

    @app.post("/score")
    async def score(request: Request):
        t0 = time.perf_counter()
        if not authorized(request):
            return error(401, "missing or wrong bearer token (Authorization: Bearer ...)", t0)
        if in_flight[0] >= limits.limit_concurrency:
            # 503, not 4xx: the request may be fine, the server is busy (RemoteScorer retries it)
            return error(503, f"{in_flight[0]} requests in flight; the limit is {limits.limit_concurrency} "
                              "(--limit-concurrency); retry later", t0)
        in_flight[0] += 1
        try:
            return await answer(request, t0)
        finally:
            in_flight[0] -= 1

    async def answer(request: Request, t0: float):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_request_bytes:
            return error(413, f"request of {declared} bytes; the limit is {limits.max_request_bytes} (--max-request-mib)", t0)
        body = bytearray()

        async def read_body() -> bool:
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > limits.max_request_bytes:
                    return False
            return True

        try:
            complete = await asyncio.wait_for(read_body(), limits.read_timeout_s)
        except asyncio.TimeoutError:
            log.warning("%s sent %d of %s body bytes in %g s; answered 408", _client(request), len(body),
                        declared or "?", limits.read_timeout_s)
            return error(408, f"request body not received within {limits.read_timeout_s:g} s ({len(body)} bytes "
                              "arrived); the limit is --read-timeout-s", t0)
        except ClientDisconnect:
            log.warning("%s went away after %d of %s body bytes; request dropped", _client(request), len(body),
                        declared or "?")
            with metrics.lock:
                metrics.aborted += 1
            return Response(status_code=400)  # never sent: nobody is listening
        if not complete:
            return error(413, f"request over {limits.max_request_bytes} bytes (--max-request-mib)", t0)
        try:
            async with decoding:
                prepared = await run_in_threadpool(prepare, bytes(body), limits, resolver)
        except TooLarge as exc:
            return error(413, str(exc), t0)
        except (WireError, T2SError) as exc:
            return error(400, str(exc), t0)
        except Exception as exc:  # noqa: BLE001 - any malformed input is the client's problem
            return error(400, f"malformed request: {type(exc).__name__}: {exc}", t0)
        metrics.accepted(prepared)
        try:
            results = await asyncio.wrap_future(batcher.submit(prepared.groups, prepared.keys))
            response = JSONResponse({"request_id": prepared.request_id,
                                     "results": [[result_to_wire(r) for r in group] for group in results]})
        except Exception as exc:  # noqa: BLE001 - a server fault, answered and counted as one
            log.error("scoring failed: %s: %s", type(exc).__name__, exc)
            return error(500, f"scoring failed: {type(exc).__name__}: {exc}", t0)
        metrics.answered(200, time.perf_counter() - t0)
        return response

    return app


def guarded_http_protocol(header_timeout_s: float) -> Any:
    """uvicorn's h11 protocol with a deadline for every request's headers: uvicorn has none,
    so a client that connects and then sends nothing, or half a request line, would hold its
    connection forever. The deadline runs from the connection (and from each answer on a
    kept-alive one); a request whose headers arrived in time is left to the app's body
    deadline."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_deadline()

        def _arm_header_deadline(self) -> None:
            waiting_after = self.cycle  # a new request replaces it

            def expire() -> None:
                if self.cycle is waiting_after and not self.transport.is_closing():
                    if waiting_after is None:
                        log.warning("%s:%s sent no complete request within %g s; connection closed",
                                    *(self.client or ("a client", "?")), header_timeout_s)
                    self.transport.close()

            self.loop.call_later(header_timeout_s, expire)

    return GuardedH11Protocol


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t2s serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--segmenter", default="box", help="box, grabcut or sam2:<size> (default box)")
    p.add_argument("--segmenter-option", action="append", default=[], metavar="KEY=VALUE",
                   help="segmenter option, repeatable (e.g. checkpoint=/ckpt/sam2.1_hiera_small.pt)")
    p.add_argument("--device", help="segmenter device, e.g. cuda:0")
    p.add_argument("--prompt-variant", default="bbox+2pos")
    p.add_argument("--parser-mode", default="strict", choices=["strict", "lenient"],
                   help="strict (default, as in training: the answer needs its ```json fence) or lenient (t2s bench's)")
    p.add_argument("--coord-frame", default=DEFAULT_COORD_FRAME, choices=list(COORD_FRAMES),
                   help="units of the answers' coordinates: abs pixels (default), rel1000 (Qwen3-VL), rel1")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free port, printed at start)")
    p.add_argument("--max-batch", type=int, default=32, help="most groups scored in one batch (default 32)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests (default 5)")
    p.add_argument("--max-request-mib", type=float, default=64.0, help="largest request body (default 64 MiB)")
    p.add_argument("--max-completions", type=int, default=Limits.max_completions, help="completions per request")
    p.add_argument("--max-completion-chars", type=int, default=Limits.max_completion_chars)
    p.add_argument("--max-image-pixels", type=int, default=Limits.max_image_pixels,
                   help="H*W of one image or mask, a reference's image_size² included")
    p.add_argument("--max-groups", type=int, default=Limits.max_groups, help="groups per request")
    p.add_argument("--max-images", type=int, default=Limits.max_images, help="entries of 'images' per request")
    p.add_argument("--max-request-pixels", type=int, default=Limits.max_request_pixels,
                   help="pixels of all images and masks one request decodes")
    p.add_argument("--read-timeout-s", type=float, default=Limits.read_timeout_s,
                   help="seconds for a request's headers, and again for its body (default 30)")
    p.add_argument("--limit-concurrency", type=int, default=Limits.limit_concurrency,
                   help="/score requests in flight (connections: twice that + 16); more are answered 503 (default 128)")
    p.add_argument("--data-root", action="append", default=[], metavar="DIR",
                   help="folder whose datasets requests may reference (repeatable; default: none)")
    p.add_argument("--token-env", default=TOKEN_ENV,
                   help=f"environment variable holding the bearer token (default {TOKEN_ENV}; unset: no auth)")
    return p


def limits_from_args(args: argparse.Namespace) -> Limits:
    values = {f.name: getattr(args, f.name) for f in fields(Limits) if f.name != "max_request_bytes"}
    values["max_request_bytes"] = int(args.max_request_mib * MiB)
    for name, value in values.items():
        if not value > 0:
            flag = LIMIT_FLAGS[name]
            raise ConfigError(f"{flag} must be positive, got {getattr(args, flag[2:].replace('-', '_'))}")
    return Limits(**values)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the scorer over HTTP (POST /score, GET /health, GET /metrics) with dynamic batching."""
    args = build_parser().parse_args(argv)
    import uvicorn

    from t2s_env.segmenters import make_segmenter

    limits = limits_from_args(args)
    options = parse_key_values(args.segmenter_option, "--segmenter-option", "e.g. checkpoint=/ckpt/sam2.pt")
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
    # the env's rule: a relative frame asks (and is parsed) in the variant NAME@FRAME
    variant = coord_variant(args.prompt_variant, args.coord_frame)
    scorer = Scorer(segmenter, prompt_variant=variant, parser_mode=args.parser_mode, coord_frame=args.coord_frame)
    app = create_app(scorer, limits, args.max_batch, args.max_wait_ms / 1000.0, token, args.data_root)
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("t2s serve: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    print(f"t2s serve: listening on http://{host}:{port} (segmenter {segmenter.name}, parser {scorer.parser_mode}, "
          f"coord_frame {scorer.coord_frame})", flush=True)
    # the app limits requests in flight; uvicorn's own limit caps connections (idle ones too)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=5,
                            limit_concurrency=2 * limits.limit_concurrency + 16,
                            http=guarded_http_protocol(limits.read_timeout_s))
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    from t2s_env.cli import main as t2s_main

    sys.exit(t2s_main(["serve", *sys.argv[1:]]))
