"""The scorer over HTTP: the wire format of ``t2s serve`` and its client, :class:`RemoteScorer`.

:class:`RemoteScorer` has the :class:`~t2s_env.scoring.Scorer` methods that callers use
(``score``, ``score_many``, ``parse``, ``weights``), so it drops in wherever a Scorer goes,
including :func:`~t2s_env.integrations.trl.make_reward_functions`. It needs only the standard
library (``http.client``); the server side lives in ``think2seg.scripts.serve``.

Failures are never a silent reward: connection errors, timeouts, 5xx answers and
malformed answers are retried with bounded exponential backoff, then raise
:class:`ServiceError` naming the URL, the attempts and the last cause. A 4xx answer (the
request itself is wrong or too large) raises at once with the server's message.

Wire format (JSON, ``POST /score``)::

    {"request_id": str (at most 256 characters; optional, echoed),
     "images": [{"format": "raw", "shape": [H, W, 3], "data": <base64 uint8, row-major RGB>}
                | {"format": "encoded", "data": <base64 PNG/JPEG bytes>}, ...],
     "groups": [{"image": <index into images>, "gt_mask": {"format": "bits", "shape": [H, W],
                 "data": <base64 np.packbits>} | {"format": "encoded", "data": ...},
                 "completions": [str | null, ...]}
                | {"ref": <ground-truth reference, see t2s_env.integrations.refs>,
                   "completions": [...]}, ...]}

Only the ``images`` some group names are decoded. Answer:
``{"request_id": <echo>, "results": [[<ScoreResult fields but mask>, ...], ...]}``, one list
per group, one result per completion, in order. A refused request gets a 4xx and
``{"detail": "<one line naming the field and the limit>"}``. ``GET /health`` tells the
scorer's settings (``parser_mode``, ``coord_frame``, ``prompt_variant``) and the limits.
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
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlsplit

import numpy as np

from .coords import DEFAULT_COORD_FRAME, get_coord_frame
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
    # bool is an int in Python: `true` must not pass as a side of 1
    if not (isinstance(value, list) and len(value) == ndim
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
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


class WireArray:
    """An image or mask read from the wire, checked and sized but not decoded yet: a server
    charges its pixels against its limits before it pays for the decode."""

    def __init__(self, what: str, shape: tuple[int, int], decode: Callable[[], np.ndarray]) -> None:
        self.what = what
        self.shape = shape  # (H, W)
        self._decode = decode

    @property
    def pixels(self) -> int:
        return self.shape[0] * self.shape[1]

    def check(self, max_pixels: int | None) -> "WireArray":
        if max_pixels is not None and self.pixels > max_pixels:
            h, w = self.shape
            raise TooLarge(f"{self.what} is {w}x{h} = {self.pixels} pixels, over the limit of {max_pixels} pixels")
        return self

    def decode(self) -> np.ndarray:
        return self._decode()


def _file_array(data: bytes, what: str, mode: str) -> WireArray:
    """A PNG/JPEG/... whose size comes from its header; the pixels on ``decode()``."""
    from PIL import Image

    def opened() -> Any:
        try:
            return Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise TooLarge(f"{what} is too large to decode: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise OSError, SyntaxError, struct.error ...
            raise WireError(f"{what} is not a readable image: {type(exc).__name__}: {exc}") from None

    with opened() as im:
        width, height = im.size

    def decode() -> np.ndarray:
        with opened() as im:
            try:
                return np.asarray(im.convert(mode))
            except Exception as exc:  # noqa: BLE001 - a truncated or corrupt file, whatever the plugin raises
                raise WireError(f"{what} is not a readable image: {type(exc).__name__}: {exc}") from None

    return WireArray(what, (height, width), decode)


def read_image(obj: Any, what: str = "image") -> WireArray:
    """An image of the wire format, sized but not decoded."""
    if not isinstance(obj, dict):
        raise WireError(f"{what} must be an object with format and data")
    fmt = obj.get("format")
    if fmt == "raw":
        shape = _shape(obj.get("shape"), 3, what)
        if shape[2] != 3:
            raise WireError(f"{what}.shape must be [H, W, 3]")
        data = _unb64(obj.get("data"), what)
        if len(data) != shape[0] * shape[1] * 3:
            raise WireError(f"{what} has {len(data)} bytes, shape {list(shape)} needs {shape[0] * shape[1] * 3}")
        # a writable copy, as a segmenter may need
        return WireArray(what, shape[:2], lambda: np.frombuffer(data, dtype=np.uint8).reshape(shape).copy())
    if fmt == "encoded":
        return _file_array(_unb64(obj.get("data"), what), what, "RGB")
    raise WireError(f"{what}.format must be 'raw' or 'encoded', got {fmt!r}")


def read_mask(obj: Any, what: str = "gt_mask") -> WireArray:
    """A mask of the wire format (foreground: bit set / pixel > 0), sized but not decoded."""
    if not isinstance(obj, dict):
        raise WireError(f"{what} must be an object with format and data")
    fmt = obj.get("format")
    if fmt == "bits":
        shape = _shape(obj.get("shape"), 2, what)
        data = _unb64(obj.get("data"), what)
        n = shape[0] * shape[1]
        if len(data) != (n + 7) // 8:
            raise WireError(f"{what} has {len(data)} bytes, shape {list(shape)} needs {(n + 7) // 8}")
        return WireArray(what, shape, lambda: np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=n)
                         .astype(bool).reshape(shape))
    if fmt == "encoded":
        gray = _file_array(_unb64(obj.get("data"), what), what, "L")
        return WireArray(what, gray.shape, lambda: gray.decode() > 0)
    raise WireError(f"{what}.format must be 'bits' or 'encoded', got {fmt!r}")


def decode_image(obj: Any, what: str = "image", max_pixels: int | None = None) -> np.ndarray:
    return read_image(obj, what).check(max_pixels).decode()


def decode_mask(obj: Any, what: str = "gt_mask", max_pixels: int | None = None) -> np.ndarray:
    return read_mask(obj, what).check(max_pixels).decode()


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
    cfg["coord_frame"] = getattr(scorer, "coord_frame", DEFAULT_COORD_FRAME)
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
            this many groups, sent concurrently (the server batches them again). Requests
            are also split to stay within the server's limits (completions, images, pixels,
            bytes), which it reports in ``/health``.
        coord_frame: the frame the caller's completions are written in (``abs``,
            ``rel1000``, ``rel1``); default: the server's. A server that scores another
            frame is refused with a :class:`ServiceError` before anything is scored.
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
        coord_frame: str | None = None,
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
        self.expected = {"coord_frame": None if coord_frame is None else get_coord_frame(coord_frame).name}
        self._local: Scorer | None = None
        self._server: dict[str, Any] | None = None

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

    def _call(self, method: str, path: str, payload: "Mapping[str, Any] | bytes | None" = None, check=None) -> Any:
        """One logical call with bounded retries. ``check(answer)`` validates a 200 answer
        (raising WireError on garbage, which is retried like a dropped connection)."""
        body = payload if isinstance(payload, bytes) or payload is None else json.dumps(payload).encode()
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

    # -- the server's settings ------------------------------------------------------------
    @property
    def server(self) -> dict[str, Any]:
        """The server's /health, fetched once and checked against what this client expects."""
        if self._server is None:
            health = self.health()
            if not isinstance(health, dict) or not isinstance(health.get("scorer"), dict):
                raise ServiceError(f"{self.url}/health did not describe its scorer; is it a `t2s serve` server?")
            scorer = health["scorer"]
            # a server too old to report its frame scores pixels: that was its only frame
            served = {"coord_frame": scorer.get("coord_frame", DEFAULT_COORD_FRAME)}
            for name, want in self.expected.items():
                if want is not None and served[name] != want:
                    raise ServiceError(
                        f"scoring service {self.url} scores answers with {name} {served[name]!r} but this client "
                        f"was asked for {want!r}; start `t2s serve --{name.replace('_', '-')} {want}` or pass "
                        f"{name}={served[name]!r}"
                    )
            self._server = health
        return self._server

    @property
    def config(self) -> dict[str, Any]:
        """The server's scorer settings (prompt variant, parser mode, coordinate frame, ...)."""
        return self.server["scorer"]

    @property
    def limits(self) -> dict[str, Any]:
        limits = self.server.get("limits")
        return limits if isinstance(limits, dict) else {}

    # -- Scorer interface -----------------------------------------------------------------
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

    @property
    def coord_frame(self) -> str:
        return self.local.coord_frame

    def parse(self, completion: Any, image_size: tuple[int, int] | None = None):
        return self.local.parse(completion, image_size)

    def score(self, image: np.ndarray, gt_mask: np.ndarray, completions: Sequence[Any]) -> list[ScoreResult]:
        return self.score_many([(image, gt_mask, completions)])[0]

    def score_many(
        self,
        groups: Sequence[tuple[np.ndarray, np.ndarray, Sequence[Any]]],
        image_keys: Sequence[Any] | None = None,
    ) -> list[list[ScoreResult]]:
        """Like :meth:`Scorer.score_many`; groups with equal ``image_keys`` send the image
        once per request (the server identifies images by their pixels, not by these keys)."""
        if image_keys is not None and len(image_keys) != len(groups):
            raise ValueError(f"{len(image_keys)} image keys for {len(groups)} groups")
        if not groups:
            return []
        wire_images: dict[Any, tuple[str, int]] = {}  # key -> (JSON of the image, pixels)
        parts: list[_WirePart] = []
        for g, (image, gt, completions) in enumerate(groups):
            key = image_keys[g] if image_keys is not None else ("#", g)
            if key not in wire_images:
                arr = np.asarray(image)
                wire_images[key] = (json.dumps(encode_image(arr)), int(arr.shape[0] * arr.shape[1]))
            mask = np.asarray(gt)
            body = json.dumps({"gt_mask": encode_mask(mask), "completions": [wire_completion(c) for c in completions]})
            parts.append(_WirePart(body, len(completions), int(mask.size), key, *wire_images[key]))
        return self._score_parts(parts)

    def score_refs(self, groups: Sequence[tuple[Any, Sequence[Any]]]) -> list[list[ScoreResult]]:
        """Score ``(reference, completions)`` groups whose image and mask the *server*
        resolves (it must be started with ``--data-root`` covering them)."""
        from .integrations.refs import GroundTruthRef

        parts = []
        for ref, completions in groups:
            ref = GroundTruthRef.from_any(ref)
            pixels = 2 * ref.image_size ** 2 if ref.image_size is not None else 0  # image and mask
            body = json.dumps({"ref": json.loads(ref.to_json()), "completions": [wire_completion(c) for c in completions]})
            parts.append(_WirePart(body, len(completions), pixels))
        return self._score_parts(parts)

    def _chunks(self, parts: Sequence["_WirePart"]) -> list[list[int]]:
        """Consecutive runs of ``parts`` that fit one request under the server's limits (a
        part over a limit by itself travels alone, and the server names the limit)."""
        limits = self.limits

        def limit(name: str) -> float:
            value = limits.get(name)
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("inf")

        max_groups = min(self.max_groups_per_request, limit("max_groups"))
        max_bytes = limit("max_request_bytes") - 4096  # the request id and the brackets
        caps = (limit("max_completions"), limit("max_images"), limit("max_request_pixels"), max_bytes)
        def cost(part: _WirePart, new_image: bool) -> list[int]:  # completions, images, pixels, bytes
            return [part.completions, int(new_image), part.pixels + part.image_pixels * new_image,
                    len(part.body) + 16 + (len(part.image_json) + 2) * new_image]

        chunks: list[list[int]] = []
        current: list[int] = []
        images: set[Any] = set()
        used = [0, 0, 0, 0]
        for i, part in enumerate(parts):
            add = cost(part, part.image_key is not None and part.image_key not in images)
            if current and (len(current) + 1 > max_groups or any(u + a > c for u, a, c in zip(used, add, caps))):
                chunks.append(current)
                current, images, used = [], set(), [0, 0, 0, 0]
                add = cost(part, part.image_key is not None)
            current.append(i)
            if part.image_key is not None:
                images.add(part.image_key)
            used = [u + a for u, a in zip(used, add)]
        chunks.append(current)
        return chunks

    def _score_parts(self, parts: Sequence["_WirePart"]) -> list[list[ScoreResult]]:
        if not parts:
            return []
        payloads, sizes = [], []
        for chunk in self._chunks(parts):
            slot: dict[Any, int] = {}
            images, bodies = [], []
            for i in chunk:
                part = parts[i]
                body = part.body
                if part.image_key is not None:
                    if part.image_key not in slot:
                        slot[part.image_key] = len(images)
                        images.append(part.image_json)
                    body = f'{{"image": {slot[part.image_key]}, {body[1:]}'
                bodies.append(body)
            payloads.append(f'{{"images": [{", ".join(images)}], "groups": [{", ".join(bodies)}]}}')
            sizes.append([parts[i].completions for i in chunk])
        return self._score_payloads(payloads, sizes)

    def _score_payloads(self, payloads: list[str], sizes: list[list[int]]) -> list[list[ScoreResult]]:
        def send(i: int) -> list[list[ScoreResult]]:
            request_id = uuid.uuid4().hex
            body = f'{{"request_id": "{request_id}", {payloads[i][1:]}'

            def check(answer: Any) -> list[list[ScoreResult]]:
                # An answer must be for this request and have one result per completion:
                # anything else is treated as garbage and retried, never attached.
                if not isinstance(answer, dict) or answer.get("request_id") != request_id:
                    raise WireError("answer is not for this request (request_id differs)")
                results = answer.get("results")
                if not isinstance(results, list) or [len(r) if isinstance(r, list) else -1 for r in results] != sizes[i]:
                    raise WireError(f"answer has the wrong number of results (expected {sizes[i]})")
                return [[result_from_wire(r) for r in group] for group in results]

            return self._call("POST", "/score", body.encode(), check)

        if len(payloads) == 1:
            return send(0)
        out: list[list[ScoreResult]] = []
        with ThreadPoolExecutor(max_workers=min(8, len(payloads))) as pool:
            for part in pool.map(send, range(len(payloads))):
                out.extend(part)
        return out


@dataclass(frozen=True)
class _WirePart:
    """One group as it travels: its JSON (without its ``image`` index, which depends on the
    request it lands in) and what it costs against the server's limits."""

    body: str
    completions: int
    pixels: int  # of its mask (a ref: of its image and mask)
    image_key: Any = None  # a group with its own image: which one, its JSON and pixels
    image_json: str = ""
    image_pixels: int = 0
