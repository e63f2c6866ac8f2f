"""Turns any completion text into geometric prompts, never raising.

Follows upstream's parser (SPEC §3) step by step, so that released checkpoints score as
published, and hardens it: non-finite or non-numeric coordinates are rejected, boxes are
reordered and clipped, the instance count is capped, and inputs too long or too deeply
nested to parse quickly are failures rather than exceptions.

Modes:
- ``strict`` (training): the answer must sit in a ```` ```json … ``` ```` fence, and every
  instance must carry exactly the variant's point counts.
- ``lenient`` (evaluation): no fence needed; point lists are checked only when present
  (a present ``"positive_points": null`` is invalid in both modes, as upstream).

Prompt geometry (``prompt_geometry``):
- ``clipped`` (default): boxes get their corners reordered and, given ``image_size``, every
  coordinate is clipped into the frame; duplicate removal then runs on those boxes.
- ``raw`` (upstream, SPEC §8.1): coordinates as written, reversed corners and out-of-frame
  values included; duplicate removal runs on the raw boxes with upstream's signed box
  areas. Every segmenter accepts such prompts.

Speed: upstream's three regular expressions backtrack (cubic on whitespace after an
unclosed fence, quadratic for the ``<answer>`` and think/answer patterns). Here each is a
linear scan with ``str.find`` that returns exactly what the pattern would (the test suite
checks this against the patterns on a large random corpus).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from .coords import get_coord_frame, relative_to_pixels as frame_to_pixels
from .instructions import DEFAULT_VARIANT, PromptVariant, get_variant
from .prompt import GeometricPrompt, deduplicate

ParserMode = Literal["strict", "lenient"]
PARSER_MODES = ("strict", "lenient")
PromptGeometry = Literal["clipped", "raw"]
PROMPT_GEOMETRIES = ("clipped", "raw")

#: Completions longer than this are not parsed (an LVLM stopped at 2048 tokens stays far below).
MAX_COMPLETION_CHARS = 200_000
#: Longer answers that are not valid JSON are failures rather than repaired.
MAX_REPAIR_CHARS = 32_000
#: Character reads the JSON-repair fallback may make per answer (~30 ms at worst here).
MAX_REPAIR_READS = 12_000
#: At most this many instances are kept after de-duplication.
DEFAULT_MAX_INSTANCES = 64
#: ``parse_error`` of an answer whose JSON repair stopped at MAX_REPAIR_READS: not the
#: "not a JSON list" of an answer that is no list (the repair might have found one).
REPAIR_BOUND_ERROR = (f"answer needs more JSON repair than the bound allows ({MAX_REPAIR_READS:,} character reads: "
                      "about 60-70 instances of near-JSON); valid JSON is not bounded this way")

#: Upstream's format-reward pattern (SPEC §4), kept as the definition that
#: :func:`think_format_ok` reproduces in linear time; never run it on model output.
THINK_ANSWER_PATTERN = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
#: A run of whitespace (``\s`` is exactly ``str.isspace`` for str patterns); linear.
_WS = re.compile(r"\s*")
#: a comma before a closing bracket (linear: one fixed-width match per comma)
_TRAILING_COMMA = re.compile(r",(\s*[\]}])")


@dataclass(frozen=True)
class ParsedAnswer:
    """What a completion says, as the segmenter needs it.

    ``ok``: the answer parsed under the requested mode. ``prompts``: the instances after
    validation, clipping and de-duplication (empty when ``ok`` is False or the answer is
    ``[]``). ``think_ok``: the whole text is ``<think>…</think> <answer>…</answer>``.
    ``error``: why parsing failed, for logs.
    """

    ok: bool
    prompts: tuple[GeometricPrompt, ...] = field(default_factory=tuple)
    think_ok: bool = False
    error: str | None = None

    @property
    def is_empty_answer(self) -> bool:
        """The answer parsed and is ``[]``: the agent says there is no target."""
        return self.ok and not self.prompts


def think_format_ok(text: str) -> bool:
    """Upstream's format reward test, ``THINK_ANSWER_PATTERN.fullmatch(text)``, in linear time."""
    return isinstance(text, str) and len(text) <= MAX_COMPLETION_CHARS and _think_fullmatch(text)


def _think_fullmatch(text: str) -> bool:
    """``re.fullmatch(r"<think>.*?</think>\\s*<answer>.*?</answer>", text, re.DOTALL)``.

    A full match exists iff the text starts with ``<think>``, ends with ``</answer>``, and
    some ``</think>`` (after the opening tag) is followed by whitespace and an ``<answer>``
    that ends before the final ``</answer>``. The whitespace runs after distinct
    ``</think>`` tags are disjoint, so the scan is linear.
    """
    n = len(text)
    if n < 32 or not text.startswith("<think>") or not text.endswith("</answer>"):
        return False
    last = n - 9  # where the closing </answer> starts
    a = text.find("</think>", 7)
    while a != -1:
        b = _WS.match(text, a + 8).end()
        if b + 8 > last:
            return False  # later </think> tags leave even less room
        if text.startswith("<answer>", b):
            return True
        a = text.find("</think>", a + 8)
    return False


def _answer_span(s: str) -> str:
    """What upstream keeps of the text: ``re.search(r"<answer>(.*?)</answer>", s, DOTALL)``'s
    group, stripped, or the text itself when there is no match."""
    i = s.find("<answer>")
    if i == -1:
        return s
    j = s.find("</answer>", i + 8)  # the leftmost <answer> has the most closers after it
    return s if j == -1 else s[i + 8 : j].strip()


def _fence_body(s: str) -> str | None:
    """``re.search(r"```json\\s*(.*?)\\s*```", s, DOTALL).group(1).strip()``, or None.

    The leftmost ```` ```json ```` decides (the tag cannot overlap itself, so a later one
    lies after the first's closer candidates); the lazy group ends at the first ```` ``` ````
    after it, and the whitespace the pattern leaves around the group is what ``strip``
    removes anyway.
    """
    i = s.find("```json")
    if i == -1:
        return None
    j = s.find("```", i + 7)
    return None if j == -1 else s[i + 7 : j].strip()


def parse_completion(
    text: Any,
    variant: str | PromptVariant = DEFAULT_VARIANT,
    mode: ParserMode = "strict",
    image_size: tuple[int, int] | None = None,
    max_instances: int = DEFAULT_MAX_INSTANCES,
    nms_iou: float = 0.5,
    *,
    prompt_geometry: PromptGeometry = "clipped",
    coord_frame: str = "abs",
) -> ParsedAnswer:
    """Parse one completion. ``image_size`` is ``(width, height)`` for clipping.

    ``coord_frame``: the units the answer is written in (``abs`` pixels, ``rel1000``,
    ``rel1``; see :mod:`t2s_env.coords`); given ``image_size``, prompts come back in pixels.

    ``prompt_geometry``: ``"clipped"`` (reorder corners, clip into ``image_size``, then
    remove duplicates) or ``"raw"`` (upstream: prompts as written, duplicates removed on
    the raw boxes). Never raises on any input (non-strings are failures too).
    """
    return parse_with_strict(
        text, variant, mode, image_size, max_instances, nms_iou, prompt_geometry=prompt_geometry, coord_frame=coord_frame
    )[0]


def parse_with_strict(
    text: Any,
    variant: str | PromptVariant = DEFAULT_VARIANT,
    mode: ParserMode = "strict",
    image_size: tuple[int, int] | None = None,
    max_instances: int = DEFAULT_MAX_INSTANCES,
    nms_iou: float = 0.5,
    *,
    prompt_geometry: PromptGeometry = "clipped",
    coord_frame: str = "abs",
) -> tuple[ParsedAnswer, bool]:
    """``(parse_completion(text, …, mode), whether the strict parse succeeds)`` in one pass:
    the think test, the answer extraction and the JSON decoding are shared by both modes
    (the scorer needs both: the lenient parse is segmented, the strict one earns the
    JSON point)."""
    v = get_variant(variant)
    if mode not in PARSER_MODES:
        raise ValueError(f"parser mode must be one of {PARSER_MODES}, got {mode!r}")
    if prompt_geometry not in PROMPT_GEOMETRIES:
        raise ValueError(f"prompt_geometry must be one of {PROMPT_GEOMETRIES}, got {prompt_geometry!r}")
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        return ParsedAnswer(False, error=f"completion is {type(text).__name__}, not text"), False
    if len(text) > MAX_COMPLETION_CHARS:
        return ParsedAnswer(False, error=f"completion longer than {MAX_COMPLETION_CHARS} characters"), False
    think_ok = _think_fullmatch(text)
    decoded: dict[str, Any] = {}  # cropped JSON text -> decoded value, shared by both modes
    if prompt_geometry == "raw":
        frame: Any = None
    elif image_size is not None:
        frame = (float(image_size[0]), float(image_size[1]))
    else:
        frame = _REORDER
    # An answer in a relative frame (t2s_env.coords) is clipped in its own units, then
    # converted to pixels of the observed image; without image_size it stays in its units.
    to_pixels = None
    if coord_frame != "abs" and image_size is not None:
        extent = get_coord_frame(coord_frame).extent
        if extent is not None:
            to_pixels = (float(image_size[0]), float(image_size[1]), extent)
            if isinstance(frame, tuple):
                frame = (extent, extent)
    try:
        prompts, error = _parse_answer(text, v, mode, decoded, frame)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
        prompts, error = None, f"unparsable answer ({type(exc).__name__})"
    if mode == "strict":
        strict_ok = prompts is not None
    else:
        try:
            strict_ok = _parse_answer(text, v, "strict", decoded, None)[0] is not None
        except Exception:  # noqa: BLE001
            strict_ok = False
    if prompts is None:
        return ParsedAnswer(False, think_ok=think_ok, error=error), strict_ok
    if to_pixels is not None:
        prompts = frame_to_pixels(prompts, *to_pixels, clip=frame is not None and frame is not _REORDER)
    # The instances already carry their final geometry (see _instance).
    prompts = deduplicate(prompts, nms_iou, signed_area=frame is None)
    return ParsedAnswer(True, tuple(prompts[:max_instances]), think_ok=think_ok), strict_ok


#: ``frame`` value of :func:`_instance`: reorder box corners, clip nothing.
_REORDER = "reorder"


def _parse_answer(
    text: str, v: PromptVariant, mode: str, decoded: dict[str, Any], frame: Any
) -> tuple[list[GeometricPrompt] | None, str | None]:
    s = _answer_span(text)
    if mode == "strict":
        body = _fence_body(s)
        if body is None:
            if "```json" not in s:
                return None, "answer lacks the ```json fence (strict mode)"
            return None, "answer has an unclosed ```json fence (strict mode)"
        s = body
    i, j = s.find("["), s.rfind("]")
    if i != -1 and j != -1:  # upstream's crop; j < i gives "", which is not JSON
        s = s[i : j + 1]
    if s in decoded:
        data = decoded[s]
    else:
        data = decoded[s] = _loads(s)
    if data is _REPAIR_BOUND:
        return None, REPAIR_BOUND_ERROR
    if not isinstance(data, list):
        return None, "answer is not a JSON list"
    prompts = []
    for k, inst in enumerate(data):
        prompt, error = _instance(inst, v, mode, frame)
        if prompt is None:
            return None, f"instance {k}: {error}"
        prompts.append(prompt)
    return prompts, None


def _loads(s: str) -> Any:
    try:
        return json.loads(s)
    except RecursionError:
        return None  # json_repair's own first step, the same json.loads, would raise it too
    except ValueError:
        pass
    # The two repairs LVLMs need most (Python-style single quotes, trailing commas), done
    # by hand at a tenth of the repair parser's cost, where they give exactly its result
    # (tests/test_parser_repair.py checks it on a corpus): no double quote or backslash to
    # be confused with, and nothing the repair parser reads its own way (it drops empty
    # elements such as [] or '' inside arrays, and reads NaN/Infinity as strings).
    if _hand_repairable(s):
        try:
            return json.loads(_TRAILING_COMMA.sub(r"\1", s.replace("'", '"')))
        except (ValueError, RecursionError):
            pass
    # Same fallback as upstream: a maintained repair parser for near-JSON (quotes, commas).
    # Its cost is superlinear on some malformed inputs (e.g. "[" + "t]{" * n: 0.07 s at
    # 500 characters, 3.8 s at 4,000), so its work is bounded: it reads the text through
    # a str whose character reads are counted, and gives up past MAX_REPAIR_READS (a
    # failed parse with REPAIR_BOUND_ERROR, the same every time). Ordinary repairs read
    # 2.1-2.5 characters per character: near-JSON answers of up to 4,700-5,700 characters
    # (60-71 bbox+2pos instances; measured per kind of repair in docs/benchmark.md's
    # "Limits") are repaired as upstream.
    if len(s) > MAX_REPAIR_CHARS:
        return _REPAIR_BOUND  # it would run out of reads: at least one per character
    import json_repair

    text = _CountedText(s)
    text.budget = [MAX_REPAIR_READS]
    try:
        # skip_json_loads: its first step is the json.loads that just failed
        return json_repair.loads(text, skip_json_loads=True)
    except _RepairTooCostly:
        return _REPAIR_BOUND  # not "no list": the answer may be one, past the bound
    except Exception:  # noqa: BLE001
        return None


def _hand_repairable(s: str) -> bool:
    if '"' in s or "\\" in s or "NaN" in s or "Infinity" in s:
        return False
    parts = s.split("'")  # the odd parts are the quoted strings: JSON syntax stays outside
    if len(parts) % 2 == 0 or any(c in q for q in parts[1::2] for c in ",:[]{}"):
        return False
    compact = "".join(s.split())
    return not any(e in compact for e in ("[]", "{}", "''", ",,", "[,", "{,"))


#: what :func:`_loads` returns when the repair parser ran out of reads
_REPAIR_BOUND = object()


class _RepairTooCostly(BaseException):
    """Raised inside the repair parser when its read budget is spent. A BaseException, so
    that the parser's own ``except Exception`` handlers cannot swallow it."""


class _CountedText(str):
    """A str that counts ``text[i]`` reads (the repair parser reads characters this way)
    against a budget shared with its slices and concatenations (the parser rebuilds its
    text when it splits an object, and the rebuilt text must stay counted)."""

    budget: list  # [reads left], shared

    def __getitem__(self, key):
        budget = self.budget
        budget[0] -= 1
        if budget[0] < 0:
            raise _RepairTooCostly
        if type(key) is slice:
            return self._counted(str.__getitem__(self, key))
        return str.__getitem__(self, key)

    def _counted(self, value: str) -> "_CountedText":
        out = _CountedText(value)
        out.budget = self.budget
        return out

    def __add__(self, other):
        return self._counted(str.__add__(self, other))

    def __radd__(self, other):
        return self._counted(str.__add__(other, self))


def _instance(inst: Any, v: PromptVariant, mode: str, frame: Any) -> tuple[GeometricPrompt | None, str | None]:
    """One validated instance in its final geometry. ``frame``: None keeps coordinates as
    written (raw); ``_REORDER`` orders box corners; ``(W, H)`` orders corners and clips
    every coordinate into the frame (what :meth:`GeometricPrompt.clipped` does, without
    building the prompt twice). Written for speed: this is the parser's inner loop."""
    if not isinstance(inst, dict):
        return None, "not a JSON object"
    has_box, has_pos = "bbox_2d" in inst, "positive_points" in inst
    if not (has_box or has_pos):
        return None, "needs bbox_2d or positive_points"
    box = None
    if has_box:
        box = _numbers(inst["bbox_2d"], 4)
        if box is None:
            return None, "bbox_2d must be 4 finite numbers"
    required = mode == "strict"
    pos = _points(inst, "positive_points", v.n_positive, required)
    if pos is None:
        return None, f"positive_points must be {_count_text(v.n_positive)} [x, y] pairs"
    if "negative_points" in inst or (required and v.n_negative):
        neg = _points(inst, "negative_points", v.n_negative, required)
        if neg is None:
            return None, f"negative_points must be {_count_text(v.n_negative)} [x, y] pairs"
    else:
        neg = ()
    if box is None and not pos:  # e.g. {"positive_points": null}: nothing to segment
        return None, "needs bbox_2d or positive_points"
    if frame is not None:
        if box is not None:
            x1, y1, x2, y2 = box
            if x2 < x1:
                x1, x2 = x2, x1
            if y2 < y1:
                y1, y2 = y2, y1
            box = (x1, y1, x2, y2)
        if frame is not _REORDER:
            # min(max(c, 0), side), written out: the builtins' call overhead dominated here
            w, h = frame
            if box is not None:
                box = (
                    0.0 if x1 < 0.0 else (w if w < x1 else x1),
                    0.0 if y1 < 0.0 else (h if h < y1 else y1),
                    0.0 if x2 < 0.0 else (w if w < x2 else x2),
                    0.0 if y2 < 0.0 else (h if h < y2 else y2),
                )
            if pos:
                pos = tuple(
                    (0.0 if x < 0.0 else (w if w < x else x), 0.0 if y < 0.0 else (h if h < y else y)) for x, y in pos
                )
            if neg:
                neg = tuple(
                    (0.0 if x < 0.0 else (w if w < x else x), 0.0 if y < 0.0 else (h if h < y else y)) for x, y in neg
                )
    return GeometricPrompt.of_floats(box, pos, neg), None


def _count_text(count: int | None) -> str:
    return "a list of" if count is None else f"exactly {count}"


def _points(inst: dict, key: str, count: int | None, required: bool) -> tuple | None:
    """The point list under ``key``; None when invalid. Absent is valid when the variant
    asks for none, or (lenient mode) whatever the count. A present ``null`` counts as
    absent, except ``positive_points: null`` where the variant asks for positive points:
    upstream's point check rejects that in both of its parsers. ``count`` None (the later
    turns of a refine episode, :func:`t2s_env.instructions.refine_variant`): any number of
    points, absent or ``null`` included."""
    pts = inst.get(key)
    if count is None:
        if pts is None:
            return ()
        if not isinstance(pts, list):
            return None
    elif pts is None:
        if key in inst and key == "positive_points" and count > 0:
            return None
        return () if (count == 0 or not required) else None
    elif not isinstance(pts, list) or len(pts) != count or count == 0:
        return None
    out = []
    for p in pts:
        # fast path for a plain [int|float, int|float]; everything else goes through _numbers
        if type(p) is list and len(p) == 2:
            x, y = p
            if type(x) in _PLAIN_NUMBERS and type(y) in _PLAIN_NUMBERS:
                try:
                    fx, fy = float(x), float(y)
                except OverflowError:
                    return None
                if (fx + fy) * 0.0 == 0.0 or (math.isfinite(fx) and math.isfinite(fy)):
                    out.append((fx, fy))
                    continue
                return None
        xy = _numbers(p, 2)
        if xy is None:
            return None
        out.append(xy)
    return tuple(out)


_PLAIN_NUMBERS = frozenset((int, float))


def _numbers(value: Any, n: int) -> tuple[float, ...] | None:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        return None
    if _PLAIN_NUMBERS.issuperset(map(type, value)):  # the usual case, checked in bulk
        try:
            out_fast = tuple(map(float, value))
        except OverflowError:
            return None
        # A finite sum proves every term finite (inf and NaN propagate); only an overflowing
        # sum of finite terms needs the term-by-term test.
        if sum(out_fast) * 0.0 == 0.0 or all(map(math.isfinite, out_fast)):
            return out_fast
        return None
    out = []
    for x in value:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return None
        try:
            f = float(x)
        except OverflowError:
            return None
        if not math.isfinite(f):
            return None
        out.append(f)
    return tuple(out)
