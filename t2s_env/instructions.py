"""The prompt protocol: the exact upstream instruction strings and their ablation variants.

Released Think2Seg-RS checkpoints were trained on these strings byte for byte (SPEC §2),
so the default variant must not change. Each :class:`PromptVariant` also carries the
counts the parser expects, so nothing downstream hard-codes "two points".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from .errors import ConfigError
from .prompt import GeometricPrompt

SYSTEM_PROMPT = (
    "You are a remote sensing analysis assistant. Your task is to generate spatial prompts "
    "for the Segment Anything Model (SAM) based on a user's request."
)

_HEAD = 'Please find "{Question}", identify the target. For each target instance, provide'
# Note the trailing space after "</think>" on the example line: it is in upstream's string.
_TAIL = (
    "Output your thinking process in <think> </think> tags.\n"
    "Output the final answer in <answer> </answer> tags with the specified JSON format. "
    "If no targets are found, output an empty list.\n"
    "i.e. <think> thinking process here </think> \n"
    "<answer>```json{example}```</answer>"
)

_BOX_LINE = "1.  `bbox_2d`: A tight bounding box."
_NEG_LINE = (
    "3.  `negative_points`: Exactly two points, placed outside the target's boundary to "
    "separate it from the background."
)


@dataclass(frozen=True)
class PromptVariant:
    """One way of asking for prompts: what each instance must contain, and the wording."""

    name: str
    use_box: bool
    n_positive: int
    n_negative: int
    body: str  # the lines between the "Please find" head and the output instructions
    example: str  # the JSON list shown in the instruction

    def user_text(self, question: str) -> str:
        """The user turn's text with ``{Question}`` substituted (no other formatting)."""
        return _HEAD.replace("{Question}", question) + self.body + "\n" + _TAIL.replace(
            "{example}", self.example
        )


VARIANTS: dict[str, PromptVariant] = {
    v.name: v
    for v in (
        PromptVariant(
            "bbox+2pos", True, 2, 0,
            ":\n" + _BOX_LINE + "\n2.  `positive_points`: Exactly two points, placed inside the target.",
            '[{"bbox_2d": [310,360,567,586], "positive_points": [[434, 474], [450, 460]]}, '
            '{"bbox_2d": [10,200,100,320], "positive_points": [[50, 250], [90, 300]]}]',
        ),
        PromptVariant(
            "bbox", True, 0, 0,
            " a tight bounding box.",
            '[{"bbox_2d": [310,360,567,586]}, {"bbox_2d": [10,200,100,320]}]',
        ),
        PromptVariant(
            "2pos", False, 2, 0,
            " two positive points, placed inside the target.",
            '[{"positive_points": [[434, 474], [450, 460]]}, {"positive_points": [[50, 250], [90, 300]]}]',
        ),
        PromptVariant(
            "bbox+4pos", True, 4, 0,
            ":\n" + _BOX_LINE + "\n2.  `positive_points`: Exactly four points, placed inside the target.",
            '[{"bbox_2d": [310,360,567,586], "positive_points": [[434, 474], [450, 460], [500, 480], [520, 500]]}, '
            '{"bbox_2d": [10,200,100,320], "positive_points": [[50, 250], [90, 300], [70, 280], [30, 240]]}]',
        ),
        PromptVariant(
            "bbox+2pos+2neg", True, 2, 2,
            ":\n" + _BOX_LINE + "\n2.  `positive_points`: Exactly two points, placed inside the target.\n" + _NEG_LINE,
            '[{"bbox_2d": [310,360,567,586], "positive_points": [[434, 474], [450, 460]], "negative_points":[[320, 400], [500, 480]]}, '
            '{"bbox_2d": [10,200,100,320], "positive_points": [[50, 250], [90, 300]], "negative_points":[[20, 240], [30, 250]]}]',
        ),
    )
}
DEFAULT_VARIANT = "bbox+2pos"


#: Side of the frame upstream's example coordinates are written in (SPEC §5's 840).
_EXAMPLE_FRAME = 840
#: The line a relative-frame variant adds after the instance description, per frame.
_FRAME_LINES = {
    "rel1000": "All coordinates are integers from 0 to 1000 on both axes: [0, 0] is the image's "
    "top-left corner and [1000, 1000] its bottom-right corner.",
    "rel1": "All coordinates are fractions of the image's width and height, from 0 to 1 with "
    "three decimals: [0, 0] is the image's top-left corner and [1, 1] its bottom-right corner.",
}


def coord_variant(variant: "str | PromptVariant", coord_frame: str) -> PromptVariant:
    """The variant asking for answers in ``coord_frame`` (t2s_env.coords). ``abs`` is
    upstream's wording unchanged. Upstream has no string for a relative frame, so
    ``NAME@rel1000`` / ``NAME@rel1`` are new variants: the same wording with one line
    saying the frame and the example's coordinates converted from the 840 frame."""
    import re

    from .coords import get_coord_frame

    v = get_variant(variant)
    frame = get_coord_frame(coord_frame)
    base, _, current = v.name.partition("@")
    if (current or "abs") == frame.name:
        return v
    if current:
        v = VARIANTS[base]
    if frame.extent is None:
        return v

    def convert(m: "re.Match[str]") -> str:
        value = int(m.group(0)) * frame.extent / _EXAMPLE_FRAME
        return f"{value:.{frame.decimals}f}" if frame.decimals else str(int(round(value)))

    return PromptVariant(
        f"{base}@{frame.name}", v.use_box, v.n_positive, v.n_negative,
        v.body + "\n" + _FRAME_LINES[frame.name],
        re.sub(r"(?<![\w.])\d+(?![\w.])", convert, v.example),
    )


def get_variant(variant: str | PromptVariant) -> PromptVariant:
    """A variant by name; ``NAME@FRAME`` (e.g. ``bbox+2pos@rel1000``) is NAME asking for
    answers in a relative coordinate frame (:func:`coord_variant`)."""
    if isinstance(variant, PromptVariant):
        return variant
    if isinstance(variant, str) and "@" in variant:
        base, _, frame = variant.partition("@")
        if base in VARIANTS and frame in _FRAME_LINES:
            return coord_variant(base, frame)
    try:
        return VARIANTS[variant]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown prompt_variant {variant!r}; choose one of: {', '.join(VARIANTS)} "
            f"(optionally @{' or @'.join(_FRAME_LINES)})"
        ) from None


def _sentence_with_period(text: str) -> str:
    return text + "."


def _single_spaced(text: str) -> str:
    return " ".join(text.split())


def _as_written(text: str) -> str:
    return text


#: How each dataset's annotation text becomes the ``{Question}`` of the user turn, as
#: upstream Think2Seg-RS builds it for evaluation (every dataset uses the same
#: ``bbox+2pos`` instruction around it):
#:
#: - ``earthreason``: a question of the image's QA file, unchanged.
#: - ``rrsisd``: the ref's sentence (``sent``) with a ``.`` appended (SPEC §2).
#: - ``refsegrs``: the words after the id on a phrase-file line, joined by single spaces
#:   (upstream splits the line on whitespace and re-joins the rest).
#: - ``risbench``: the rest of the stripped line after its first space, unchanged.
QUESTION_TEMPLATES = {
    "earthreason": _as_written,
    "synthetic": _as_written,
    "rrsisd": _sentence_with_period,
    "refsegrs": _single_spaced,
    "risbench": _as_written,
}


def referring_question(dataset: str, text: str) -> str:
    """The ``{Question}`` upstream builds from a dataset's annotation ``text``."""
    try:
        return QUESTION_TEMPLATES[dataset](text)
    except KeyError:
        raise ConfigError(f"no question template for dataset {dataset!r}; known: {', '.join(QUESTION_TEMPLATES)}") from None


def build_messages(question: str, variant: str | PromptVariant = DEFAULT_VARIANT) -> list[dict[str, Any]]:
    """Chat messages for an LVLM: a system turn, then a user turn with the image first.

    The image appears as the placeholder ``{"type": "image"}``; the caller supplies the
    pixels (the observation's 840×840 image) to its processor.
    """
    v = get_variant(variant)
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": v.user_text(question)}]},
    ]


def format_completion(prompts: Sequence[GeometricPrompt], think: str = "") -> str:
    """A completion in the protocol's answer format that the strict parser accepts."""
    # 4 decimals: a rel1 coordinate stays within 0.1 px at 840 (2 decimals moved it up to 4 px)
    body = json.dumps([p.to_dict(decimals=4) for p in prompts])
    return f"<think> {think} </think>\n<answer>```json{body}```</answer>"


# -- refine episodes (max_turns > 1; docs/refine.md) ---------------------------------------------

#: What a later turn answers to end the episode: ``<answer>stop</answer>`` (also accepted:
#: a ```json fence, quotes, any case, surrounding whitespace; see :func:`is_stop_answer`).
STOP_ANSWER = "stop"

_FEEDBACK_HEAD = (
    "This is the image with the mask your prompts produced, in semi-transparent green, and your "
    "prompts drawn on it (boxes red, positive points blue circles, negative points magenta crosses). "
)
_FEEDBACK_TAIL = (
    "Any number of positive_points and negative_points per instance is allowed. "
    "If the mask is right, output <answer>stop</answer> instead."
)
#: The user turn's text after each non-final turn of a refine episode, per ``refine_mode``.
FEEDBACK: dict[str, str] = {
    "replace": _FEEDBACK_HEAD
    + "Output the full corrected answer in the same format: every target instance with all of its prompts "
    "(a positive point where the mask misses the target, a negative point where it covers background). "
    + _FEEDBACK_TAIL,
    "add": _FEEDBACK_HEAD
    + "Output only the prompts to add, in the same format: an instance with the same bbox_2d as one of "
    "yours adds its points to that instance (a positive point where the mask misses the target, a "
    "negative point where it covers background); any other instance is added as a new one. "
    + _FEEDBACK_TAIL,
}
REFINE_MODES = tuple(FEEDBACK)


def refine_variant(variant: "str | PromptVariant") -> PromptVariant:
    """How the later turns of a refine episode are parsed: ``variant``'s format (fence, box)
    with any number of positive and negative points per instance, absent included."""
    v = get_variant(variant)
    return PromptVariant(f"{v.name}+refine", v.use_box, None, None, v.body, v.example)  # type: ignore[arg-type]


def is_stop_answer(text: Any) -> bool:
    """Whether a completion's answer is :data:`STOP_ANSWER`: the text inside the first
    ``<answer>…</answer>`` (or the whole text without one), optional ```json fence and
    quotes removed, compared case-insensitively after trimming whitespace."""
    if not isinstance(text, str) or len(text) > 10_000:
        return False
    s = text
    i = s.find("<answer>")
    if i != -1:
        j = s.find("</answer>", i + 8)
        s = s[i + 8 :] if j == -1 else s[i + 8 : j]
    s = s.strip()
    for fence in ("```json", "```"):
        if s.startswith(fence):
            s = s[len(fence):]
            break
    if s.endswith("```"):
        s = s[:-3]
    s = s.strip().strip("\"'").strip()
    return s.lower() == STOP_ANSWER


def feedback_turn(refine_mode: str) -> dict[str, Any]:
    """The user message that follows an answer in a refine episode: the overlay image (the
    placeholder ``{"type": "image"}``, as in :func:`build_messages`) and ``FEEDBACK[mode]``."""
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": FEEDBACK[refine_mode]}]}
