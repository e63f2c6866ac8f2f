"""The metric protocol: every choice of how a split is scored, named and recorded (SPEC §8, §8.1).

A :class:`MetricProtocol` names every choice the published codebases make differently:
how an empty ground truth is scored, the Pr@X comparator and denominator, whether
empty-GT samples count in cIoU, what an empty denominator reports, the geometry the
prompts reach the segmenter with, and the frames (resolution) the agent, the segmenter and
the IoU work in (:mod:`t2s_env.framing`). ``strict`` (the default) hides nothing;
``t2s-compat`` reproduces Think2Seg-RS's evaluation so that numbers compare with the
paper; ``native`` and ``segearth-1024`` change only the frame. docs/benchmark.md tables
every field; :mod:`t2s_env.metrics` computes the summaries under a protocol.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from .coords import COORD_FRAMES
from .datasets.base import QUESTION_CHOICES
from .errors import ConfigError
from .framing import IOU_FRAMES, MAX_IMAGE_SIZE, RESIZES
from .parser import PROMPT_GEOMETRIES

EMPTY_RULES = ("t2s", "one", "zero", "skip")
COMPARATORS = (">=", ">")
PR_DENOMINATORS = ("all", "parsed", "predicted")
EMPTY_DENOMINATORS = ("none", "zero")
QUESTIONS = QUESTION_CHOICES

#: field -> its valid values (None: any value of the field's type)
_CHOICES: dict[str, tuple | None] = {
    "empty_rule": EMPTY_RULES,
    "comparator": COMPARATORS,
    "ciou_includes_empty_gt": (True, False),
    "pr_denominator": PR_DENOMINATORS,
    "empty_denominator": EMPTY_DENOMINATORS,
    "prompt_geometry": PROMPT_GEOMETRIES,
    "image_size": None,
    "resize": RESIZES,
    "iou_frame": IOU_FRAMES,
    "question": QUESTIONS,
    "coord_frame": tuple(COORD_FRAMES),
}


@dataclass(frozen=True)
class MetricProtocol:
    """How a split is scored. Stored in full with every result.

    - ``empty_rule`` (empty GT): ``t2s`` 1 iff the answer is exactly ``[]`` (Think2Seg-RS:
      a non-empty answer scores 0 even when its mask comes out empty); ``one`` 1 iff the
      union is 0 (LISA, SegEarth-R1); ``zero`` always 0 (RMSIN); ``skip`` the sample is left
      out of gIoU, cIoU and Pr@X (Seg-Zero).
    - ``comparator``: Pr@X counts IoU ``>=`` X or ``>`` X.
    - ``ciou_includes_empty_gt``: empty-GT samples add their false positives to ΣU.
    - ``pr_denominator``: who is in the Pr@X denominator: ``all`` samples; ``parsed``
      ones; ``predicted`` ones, i.e. samples with a mask (the answer parsed and is not
      ``[]``, or the GT is empty: upstream gives those an all-zero mask).
    - ``empty_denominator``: a metric with nothing in its denominator is ``none`` (null)
      or ``zero`` (0.0, as upstream prints).
    - ``prompt_geometry``: ``clipped`` prompts are clipped to the frame, box corners
      reordered, before de-duplication and the segmenter; ``raw`` as written (upstream).
    - ``image_size``: side of the agent's frame; ``resize``: ``square`` stretches the
      image to it, ``pad`` scales the long side to it and pads bottom/right with black.
    - ``iou_frame``: the segmenter and the IoU work in the ``agent`` frame, or at the
      ``original`` size (the agent's prompts are mapped back).
    - ``question``: which question of an image is asked (``first``, ``random``, ``all``).
    - ``coord_frame``: the units answers are written in (``abs`` pixels of the agent's
      frame, ``rel1000``, ``rel1``; t2s_env.coords), converted to pixels when parsed.
    """

    name: str = "strict"
    empty_rule: str = "t2s"
    comparator: str = ">="
    ciou_includes_empty_gt: bool = True
    pr_denominator: str = "all"
    empty_denominator: str = "none"
    prompt_geometry: str = "clipped"
    image_size: int = 840
    resize: str = "square"
    iou_frame: str = "agent"
    question: str = "first"
    coord_frame: str = "abs"

    def __post_init__(self) -> None:
        for key, valid in _CHOICES.items():
            value = getattr(self, key)
            if valid is not None and (value not in valid or type(value) is not type(valid[0])):
                raise ConfigError(
                    f"protocol field {key}={value!r} is not valid; valid: {', '.join(map(_show, valid))}"
                )
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or not (
            16 <= self.image_size <= MAX_IMAGE_SIZE
        ):
            raise ConfigError(f"protocol field image_size={self.image_size!r} must be an integer in 16..{MAX_IMAGE_SIZE}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MetricProtocol":
        """A protocol from a recorded dict, including run.yaml files of earlier versions."""
        data = dict(data)
        if "pr_counts_failures" in data:  # schema 1: a bool
            data.setdefault("pr_denominator", "all" if data.pop("pr_counts_failures") else "parsed")
        if data.get("image_size", 840) is None:  # schema 1: None meant native
            data.update(image_size=840, iou_frame="original")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown protocol field(s) {', '.join(unknown)}; valid: {', '.join(protocol_fields())}")
        return cls(**data)


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def protocol_fields() -> list[str]:
    """The fields a ``--protocol-option`` may set."""
    return [f.name for f in fields(MetricProtocol) if f.name != "name"]


PROTOCOLS: dict[str, MetricProtocol] = {
    "strict": MetricProtocol(),
    # Think2Seg-RS's evaluation (SPEC §8.1): empty GT out of cIoU, only samples with a
    # mask in the Pr denominator, 0.0 for empty denominators, raw prompts, a seeded random
    # question per image, everything at 840×840.
    "t2s-compat": MetricProtocol(
        name="t2s-compat",
        empty_rule="t2s",
        comparator=">=",
        ciou_includes_empty_gt=False,
        pr_denominator="predicted",
        empty_denominator="zero",
        prompt_geometry="raw",
        image_size=840,
        question="random",
    ),
    # The agent sees the 840 frame (what released checkpoints expect); its prompts are
    # mapped back, the segmenter runs on the original image, IoU at the original size.
    "native": MetricProtocol(name="native", iou_frame="original"),
    # SegEarth-R1: long side 1024, padded to a square; always the first question.
    "segearth-1024": MetricProtocol(name="segearth-1024", empty_rule="one", image_size=1024, resize="pad"),
}


def get_protocol(protocol: "str | MetricProtocol | Mapping[str, Any]") -> MetricProtocol:
    """A preset by name, a protocol, or a mapping (``{"preset": ..., **overrides}``)."""
    if isinstance(protocol, MetricProtocol):
        return protocol
    if isinstance(protocol, str):
        try:
            return PROTOCOLS[protocol]
        except KeyError:
            raise ConfigError(
                f"unknown protocol {protocol!r}; choose one of: {', '.join(PROTOCOLS)}"
            ) from None
    options = dict(protocol)
    base = get_protocol(options.pop("preset", "strict"))
    unknown = sorted(set(options) - set(protocol_fields()) - {"name"})
    if unknown:
        raise ConfigError(f"unknown protocol field(s) {', '.join(unknown)}; valid: {', '.join(protocol_fields())}")
    changed = {k: v for k, v in options.items() if getattr(base, k) != v}
    name = options.pop("name", None) or (
        base.name + "".join(f"+{k}={_show(v)}" for k, v in sorted(changed.items()) if k != "name")
    )
    return replace(base, **{**options, "name": name})


def protocol_with_options(preset: str, options: Mapping[str, str]) -> MetricProtocol:
    """``--protocol NAME --protocol-option KEY=VALUE ...``: values are text, converted to
    each field's type; unknown fields and values are errors listing the valid ones."""
    base = get_protocol(preset)
    typed: dict[str, Any] = {}
    for key, text in options.items():
        if key not in protocol_fields():
            raise ConfigError(f"unknown --protocol-option {key!r}; valid: {', '.join(protocol_fields())}")
        valid = _CHOICES[key]
        if key == "image_size":
            try:
                typed[key] = int(str(text))
            except ValueError:
                raise ConfigError(f"--protocol-option image_size={text!r} must be an integer") from None
        else:
            match = [v for v in valid if _show(v) == str(text).strip().lower() or v == text]
            if not match:
                raise ConfigError(f"--protocol-option {key}={text!r} is not valid; valid: {', '.join(map(_show, valid))}")
            typed[key] = match[0]
    return get_protocol({"preset": base.name, **typed}) if typed else base


__all__ = [
    "COMPARATORS",
    "EMPTY_DENOMINATORS",
    "EMPTY_RULES",
    "MetricProtocol",
    "PROTOCOLS",
    "PR_DENOMINATORS",
    "QUESTIONS",
    "get_protocol",
    "protocol_fields",
    "protocol_with_options",
]
