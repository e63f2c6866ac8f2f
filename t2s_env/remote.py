"""The scorer over HTTP: the wire format of ``t2s serve`` and its client, :class:`RemoteScorer`.

:class:`RemoteScorer` has the :class:`~t2s_env.scoring.Scorer` methods that callers use
(``score``, ``score_many``, ``parse``, ``weights``), so it drops in wherever a Scorer goes,
including :func:`~t2s_env.scoring.make_reward_functions`. It needs only the standard
library (``http.client``); the server side lives in ``think2seg.scripts.serve``.

Failures are never a silent reward: connection errors, timeouts, 5xx answers and
malformed answers are retried with bounded exponential backoff, then raise
:class:`ServiceError` naming the URL, the attempts and the last cause. A 4xx answer (the
request itself is wrong or too large) raises at once with the server's message.

Wire format (JSON, ``POST /score``)::

    {"request_id": str,
     "images": [{"format": "raw", "shape": [H, W, 3], "data": <base64 uint8>}
                | {"format": "encoded", "data": <base64 PNG/JPEG bytes>}, ...],
     "groups": [{"image": <index into images>, "gt_mask": {"format": "bits", "shape": [H, W],
                 "data": <base64 np.packbits>} | {"format": "encoded", "data": ...},
                 "completions": [str | null, ...]}
                | {"ref": <ground-truth reference, see t2s_env.integrations.refs>,
                   "completions": [...]}, ...]}

Answer: ``{"request_id": <echo>, "results": [[<ScoreResult fields but mask>, ...], ...]}``.
"""

from __future__ import annotations

import base64
import http.client
import inspect
import io
import json
import os
import random
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

import numpy as np

from .errors import T2SError
from .scoring import Scorer, ScoreResult, completion_text

#: Environment variable holding the bearer token shared by ``t2s serve`` and the client.
TOKEN_ENV = "T2S_SERVE_TOKEN"
_RESULT_FIELDS = tuple(f.name for f in fields(ScoreResult) if f.name != "mask")


class ServiceError(T2SError):
    """The scoring service could not produce scores (unreachable, slow, refused, garbage)."""


class WireError(ValueError):
    """A request or answer that does not follow the wire format (the server answers 400)."""


class TooLarge(WireError):
    """A request over one of the server's limits (the server answers 413)."""


# -- arrays on the wire -------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise WireError(f"{what}.data must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise WireError(f"{what}.data is not valid base64") from None


def _shape(value: Any, ndim: int, what: str) -> tuple[int, ...]:
    if not (isinstance(value, list) and len(value) == ndim and all(isinstance(v, int) and v > 0 for v in value)):
        raise WireError(f"{what}.shape must be a list of {ndim} positive integers")
    return tuple(value)


def encode_image(image: np.ndarray) -> dict[str, Any]:
    arr = np.ascontiguousarray(np.asarray(image), dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8, got {arr.shape}")
    return {"format": "raw", "shape": list(arr.shape), "data": _b64(arr.tobytes())}


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    arr = np.asarray(mask, dtype=bool)
    if arr.ndim != 2:
        raise ValueError(f"mask must be (H, W), got {arr.shape}")
    return {"format": "bits", "shape": list(arr.shape), "data": _b64(np.packbits(arr, axis=None).tobytes())}


def _decode_file_bytes(data: bytes, what: str, mode: str, max_pixels: int | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if max_pixels is not None and im.width * im.height > max_pixels:
                raise TooLarge(f"{what} is {im.width}x{im.height}, over the limit of {max_pixels} pixels")
            return np.asarray(im.convert(mode))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, WireError):
            raise
        raise WireError(f"{what} is not a readable image: {exc}") from None


def decode_image(obj: Any, what: str = "image", max_pixels: int | None = None) -> np.ndarray:
    if not isinstance(obj, dict):
        raise WireError(f"{what} must be an object with format and data")
    fmt = obj.get("format")
    if fmt == "raw":
        shape = _shape(obj.get("shape"), 3, what)
        if shape[2] != 3:
            raise WireError(f"{what}.shape must be [H, W, 3]")
        if max_pixels is not None and shape[0] * shape[1] > max_pixels:
            raise TooLarge(f"{what} is {shape[1]}x{shape[0]}, over the limit of {max_pixels} pixels")
        data = _unb64(obj.get("data"), what)
        if len(data) != shape[0] * shape[1] * 3:
            raise WireError(f"{what} has {len(data)} bytes, shape {list(shape)} needs {shape[0] * shape[1] * 3}")
        return np.frombuffer(data, dtype=np.uint8).reshape(shape).copy()  # writable, as a segmenter may need
    if fmt == "encoded":
        return _decode_file_bytes(_unb64(obj.get("data"), what), what, "RGB", max_pixels)
    raise WireError(f"{what}.format must be 'raw' or 'encoded', got {fmt!r}")


def decode_mask(obj: Any, what: str = "gt_mask", max_pixels: int | None = None) -> np.ndarray:
    if not isinstance(obj, dict):
        raise WireError(f"{what} must be an object with format and data")
    fmt = obj.get("format")
    if fmt == "bits":
        shape = _shape(obj.get("shape"), 2, what)
        if max_pixels is not None and shape[0] * shape[1] > max_pixels:
            raise TooLarge(f"{what} is {shape[1]}x{shape[0]}, over the limit of {max_pixels} pixels")
        data = _unb64(obj.get("data"), what)
        n = shape[0] * shape[1]
        if len(data) != (n + 7) // 8:
            raise WireError(f"{what} has {len(data)} bytes, shape {list(shape)} needs {(n + 7) // 8}")
        return np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=n).astype(bool).reshape(shape)
    if fmt == "encoded":
        arr = _decode_file_bytes(_unb64(obj.get("data"), what), what, "L", max_pixels)
        return arr > 0
    raise WireError(f"{what}.format must be 'bits' or 'encoded', got {fmt!r}")


def result_to_wire(r: ScoreResult) -> dict[str, Any]:
    return {name: getattr(r, name) for name in _RESULT_FIELDS}


def result_from_wire(obj: Any) -> ScoreResult:
    if not isinstance(obj, dict) or any(name not in obj for name in _RESULT_FIELDS):
        raise WireError("a result lacks ScoreResult fields")
    return ScoreResult(**{name: obj[name] for name in _RESULT_FIELDS})


def wire_completion(c: Any) -> str | None:
    """Completions travel as text; anything that is not text after :func:`completion_text`
    travels as null, which the parser rejects exactly as it rejects the object."""
    text = completion_text(c)
    return text if isinstance(text, str) else None


def scorer_config(scorer: Scorer) -> dict[str, Any]:
    """What a client needs to parse exactly as the server's scorer does."""
    cfg: dict[str, Any] = {
        "prompt_variant": scorer.variant.name,
        "parser_mode": scorer.parser_mode,
        "reward_weights": {k: getattr(scorer.weights, k) for k in ("iou", "json", "think")},
        "max_instances": scorer.max_instances,
    }
    if hasattr(scorer, "prompt_geometry"):
        cfg["prompt_geometry"] = scorer.prompt_geometry
    return cfg


# -- the client -----------------------------------------------------------------------------

class RemoteScorer:
    """A :class:`Scorer` whose parse → segment → IoU → reward runs in ``t2s serve``.

    Arguments:
        url: ``http://host:port`` of the server.
        token: bearer token; default: the ``T2S_SERVE_TOKEN`` environment variable.
        timeout: seconds to wait for one answer before that attempt counts as failed.
        retries: further attempts after the first (bounded); backoff doubles from
            ``backoff`` up to ``max_backoff`` seconds, with jitter.
        max_groups_per_request: larger ``score_many`` calls are split into requests of
            this many groups, sent concurrently (the server batches them again).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 60.0,
        retries: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        max_groups_per_request: int = 16,
    ) -> None:
        parts = urlsplit(url if "//" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ServiceError(f"scoring service URL {url!r} must look like http://127.0.0.1:8765")
        self.url = f"http://{parts.hostname}:{parts.port or 80}"
        self._host, self._port = parts.hostname, parts.port or 80
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_groups_per_request = max(1, int(max_groups_per_request))
        self._local: Scorer | None = None
        self._config: dict[str, Any] | None = None

    # -- HTTP -------------------------------------------------------------------------------
    def _once(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            headers = {"Content-Type": "application/json"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def _call(self, method: str, path: str, payload: Mapping[str, Any] | None = None, check=None) -> Any:
        """One logical call with bounded retries. ``check(answer)`` validates a 200 answer
        (raising WireError on garbage, which is retried like a dropped connection)."""
        body = None if payload is None else json.dumps(payload).encode()
        start = time.monotonic()
        last = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                time.sleep(delay * random.uniform(0.5, 1.0))
            try:
                status, data = self._once(method, path, body)
            except (socket.timeout, TimeoutError):
                last = f"no answer within {self.timeout:g} s (raise timeout= or check the server's load)"
                continue
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if status >= 500:
                last = f"HTTP {status}: {data[:200].decode('utf-8', 'replace')}"
                continue
            try:
                answer = json.loads(data)
            except ValueError:
                last = f"HTTP {status} with a body that is not JSON: {data[:80]!r}"
                continue
            if status >= 400:
                detail = answer.get("detail") if isinstance(answer, dict) else answer
                raise ServiceError(f"scoring service {self.url}{path} refused the request (HTTP {status}): {detail}")
            try:
                return check(answer) if check is not None else answer
            except WireError as exc:
                last = f"malformed answer: {exc}"
                continue
        took = time.monotonic() - start
        raise ServiceError(
            f"scoring service {self.url}{path} failed after {self.retries + 1} attempts in {took:.1f} s: {last}; "
            f"is `t2s serve` running there?"
        )

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def metrics(self) -> dict[str, Any]:
        return self._call("GET", "/metrics")

    # -- Scorer interface -----------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            health = self.health()
            if not isinstance(health, dict) or not isinstance(health.get("scorer"), dict):
                raise ServiceError(f"{self.url}/health did not describe its scorer; is it a `t2s serve` server?")
            self._config = health["scorer"]
        return self._config

    @property
    def local(self) -> Scorer:
        """A local scorer with the server's settings, used only to parse (no segmenter work)."""
        if self._local is None:
            accepted = inspect.signature(Scorer).parameters
            kwargs = {k: v for k, v in self.config.items() if k in accepted}
            self._local = Scorer("box", **kwargs)
        return self._local

    @property
    def weights(self):
        return self.local.weights

    @property
    def variant(self):
        return self.local.variant

    @property
    def parser_mode(self) -> str:
        return self.local.parser_mode

    def parse(self, completion: Any, image_size: tuple[int, int] | None = None):
        return self.local.parse(completion, image_size)

    def score(self, image: np.ndarray, gt_mask: np.ndarray, completions: Sequence[Any]) -> list[ScoreResult]:
        return self.score_many([(image, gt_mask, completions)])[0]

    def score_many(
        self,
        groups: Sequence[tuple[np.ndarray, np.ndarray, Sequence[Any]]],
        image_keys: Sequence[Any] | None = None,
    ) -> list[list[ScoreResult]]:
        """Like :meth:`Scorer.score_many`; groups with equal ``image_keys`` send the image once."""
        if image_keys is not None and len(image_keys) != len(groups):
            raise ValueError(f"{len(image_keys)} image keys for {len(groups)} groups")
        if not groups:
            return []
        chunks = [range(s, min(s + self.max_groups_per_request, len(groups)))
                  for s in range(0, len(groups), self.max_groups_per_request)]

        def payload(idx: range) -> dict[str, Any]:
            images: list[dict[str, Any]] = []
            slot: dict[Any, int] = {}
            wire_groups = []
            for g in idx:
                image, gt, completions = groups[g]
                key = image_keys[g] if image_keys is not None else ("#", g)
                if key not in slot:
                    slot[key] = len(images)
                    images.append(encode_image(image))
                wire_groups.append({"image": slot[key], "gt_mask": encode_mask(gt),
                                    "completions": [wire_completion(c) for c in completions]})
            return {"images": images, "groups": wire_groups}

        sizes = [len(groups[g][2]) for g in range(len(groups))]
        return self._score_payloads([payload(c) for c in chunks], [[sizes[g] for g in c] for c in chunks])

    def score_refs(self, groups: Sequence[tuple[Any, Sequence[Any]]]) -> list[list[ScoreResult]]:
        """Score ``(reference, completions)`` groups whose image and mask the *server*
        resolves (it must be started with ``--data-root`` covering them)."""
        from .integrations.refs import GroundTruthRef

        if not groups:
            return []
        chunks = [range(s, min(s + self.max_groups_per_request, len(groups)))
                  for s in range(0, len(groups), self.max_groups_per_request)]
        payloads = [{"images": [], "groups": [
            {"ref": json.loads(GroundTruthRef.from_any(groups[g][0]).to_json()),
             "completions": [wire_completion(c) for c in groups[g][1]]} for g in c]} for c in chunks]
        return self._score_payloads(payloads, [[len(groups[g][1]) for g in c] for c in chunks])

    def _score_payloads(self, payloads: list[dict[str, Any]], sizes: list[list[int]]) -> list[list[ScoreResult]]:
        def send(i: int) -> list[list[ScoreResult]]:
            request_id = uuid.uuid4().hex
            body = dict(payloads[i], request_id=request_id)

            def check(answer: Any) -> list[list[ScoreResult]]:
                # An answer must be for this request and have one result per completion:
                # anything else is treated as garbage and retried, never attached.
                if not isinstance(answer, dict) or answer.get("request_id") != request_id:
                    raise WireError("answer is not for this request (request_id differs)")
                results = answer.get("results")
                if not isinstance(results, list) or [len(r) if isinstance(r, list) else -1 for r in results] != sizes[i]:
                    raise WireError(f"answer has the wrong number of results (expected {sizes[i]})")
                return [[result_from_wire(r) for r in group] for group in results]

            return self._call("POST", "/score", body, check)

        if len(payloads) == 1:
            return send(0)
        out: list[list[ScoreResult]] = []
        with ThreadPoolExecutor(max_workers=min(8, len(payloads))) as pool:
            for part in pool.map(send, range(len(payloads))):
                out.extend(part)
        return out
