"""Turns any completion text into geometric prompts, never raising.

Follows upstream's parser (SPEC §3) step by step, so that released checkpoints score as
published, and hardens it: non-finite or non-numeric coordinates are rejected, boxes are
reordered and clipped, the instance count is capped, and inputs too long or too deeply
nested to parse quickly are failures rather than exceptions.

Modes:
- ``strict`` (training): the answer must sit in a ```` ```json … ``` ```` fence, and every
  instance must carry exactly the variant's point counts.
- ``lenient`` (evaluation): no fence needed; point lists are checked only when present.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from .instructions import DEFAULT_VARIANT, PromptVariant, get_variant
from .prompt import GeometricPrompt, deduplicate

ParserMode = Literal["strict", "lenient"]
PARSER_MODES = ("strict", "lenient")

#: Completions longer than this are not parsed (an LVLM stopped at 2048 tokens stays far below).
MAX_COMPLETION_CHARS = 200_000
#: Longer answers that are not valid JSON are failures rather than repaired.
MAX_REPAIR_CHARS = 32_000
#: At most this many instances are kept after de-duplication.
DEFAULT_MAX_INSTANCES = 64

THINK_ANSWER_PATTERN = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FENCE = re.compile(r"```json\s*(.*?)\s*```", re.DOTALL)


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
    """Upstream's format reward test: ``re.fullmatch`` of think-then-answer."""
    return isinstance(text, str) and len(text) <= MAX_COMPLETION_CHARS and (
        THINK_ANSWER_PATTERN.fullmatch(text) is not None
    )


def parse_completion(
    text: Any,
    variant: str | PromptVariant = DEFAULT_VARIANT,
    mode: ParserMode = "strict",
    image_size: tuple[int, int] | None = None,
    max_instances: int = DEFAULT_MAX_INSTANCES,
    nms_iou: float = 0.5,
) -> ParsedAnswer:
    """Parse one completion. ``image_size`` is ``(width, height)`` for clipping.

    Never raises on any input (non-strings are failures too).
    """
    v = get_variant(variant)
    if mode not in PARSER_MODES:
        raise ValueError(f"parser mode must be one of {PARSER_MODES}, got {mode!r}")
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        return ParsedAnswer(False, error=f"completion is {type(text).__name__}, not text")
    if len(text) > MAX_COMPLETION_CHARS:
        return ParsedAnswer(False, error=f"completion longer than {MAX_COMPLETION_CHARS} characters")
    think_ok = THINK_ANSWER_PATTERN.fullmatch(text) is not None
    try:
        prompts, error = _parse_answer(text, v, mode)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
        prompts, error = None, f"unparsable answer ({type(exc).__name__})"
    if prompts is None:
        return ParsedAnswer(False, think_ok=think_ok, error=error)
    if image_size is not None:
        prompts = [p.clipped(*image_size) for p in prompts]
    else:
        prompts = [_reordered(p) for p in prompts]
    prompts = deduplicate(prompts, nms_iou)[:max_instances]
    return ParsedAnswer(True, tuple(prompts), think_ok=think_ok)


def _parse_answer(text: str, v: PromptVariant, mode: str) -> tuple[list[GeometricPrompt] | None, str | None]:
    s = text
    if "<answer>" in s and "</answer>" in s:
        m = _ANSWER.search(s)
        if m:
            s = m.group(1).strip()
    if mode == "strict":
        if "```json" not in s:
            return None, "answer lacks the ```json fence (strict mode)"
        m = _FENCE.search(s)
        if not m:
            return None, "answer has an unclosed ```json fence (strict mode)"
        s = m.group(1).strip()
    if "[" in s and "]" in s:
        s = s[s.find("[") : s.rfind("]") + 1]
    data = _loads(s)
    if not isinstance(data, list):
        return None, "answer is not a JSON list"
    prompts = []
    for i, inst in enumerate(data):
        prompt, error = _instance(inst, v, mode)
        if prompt is None:
            return None, f"instance {i}: {error}"
        prompts.append(prompt)
    return prompts, None


def _loads(s: str) -> Any:
    try:
        return json.loads(s)
    except (ValueError, RecursionError):
        pass
    # Same fallback as upstream: a maintained repair parser for near-JSON (quotes, commas).
    # It costs ~70 µs per character, so very long answers are not repaired (a real answer
    # of 2048 tokens is ~8k characters).
    if len(s) > MAX_REPAIR_CHARS:
        return None
    import json_repair

    try:
        return json_repair.loads(s)
    except Exception:  # noqa: BLE001
        return None


def _instance(inst: Any, v: PromptVariant, mode: str) -> tuple[GeometricPrompt | None, str | None]:
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
    pos = _points(inst, "positive_points", v.n_positive, required=(mode == "strict"))
    if pos is None:
        return None, f"positive_points must be exactly {v.n_positive} [x, y] pairs"
    neg = _points(inst, "negative_points", v.n_negative, required=(mode == "strict"))
    if neg is None:
        return None, f"negative_points must be exactly {v.n_negative} [x, y] pairs"
    if box is None and not pos:  # e.g. {"positive_points": null}: nothing to segment
        return None, "needs bbox_2d or positive_points"
    return GeometricPrompt(box=box, positive_points=pos, negative_points=neg), None


def _points(inst: dict, key: str, count: int, required: bool) -> tuple | None:
    """The point list under ``key``; None when invalid. Absent is valid when the variant
    asks for none, or (lenient mode) whatever the count."""
    if key not in inst or inst[key] is None:
        return () if (count == 0 or not required) else None
    pts = inst[key]
    if not isinstance(pts, list) or len(pts) != count or count == 0:
        return None
    out = []
    for p in pts:
        xy = _numbers(p, 2)
        if xy is None:
            return None
        out.append(xy)
    return tuple(out)


def _numbers(value: Any, n: int) -> tuple[float, ...] | None:
    if not isinstance(value, (list, tuple)) or len(value) != n:
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


def _reordered(p: GeometricPrompt) -> GeometricPrompt:
    if p.box is None:
        return p
    x1, y1, x2, y2 = p.box
    return GeometricPrompt((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), p.positive_points, p.negative_points)
