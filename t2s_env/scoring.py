"""Scoring completions: parse, segment, IoU and reward, with the image encoded once.

:class:`Scorer` is the one code path behind ``env.step``, the benchmark harness and the
GRPO reward functions. Given one image and many completions (a GRPO group), it encodes
the image once and decodes every prompt set in batched calls; given many images, it
encodes them in batches. Upstream re-encoded the image for every completion (G× the
encoder work). IoU is computed on the segmenter's device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .coords import get_coord_frame
from .errors import ConfigError
from .instructions import DEFAULT_VARIANT, PromptVariant, format_completion, get_variant
from .iou import intersection_union
from .parser import (
    DEFAULT_MAX_INSTANCES,
    PROMPT_GEOMETRIES,
    ParsedAnswer,
    ParserMode,
    PromptGeometry,
    parse_with_strict,
)
from .prompt import GeometricPrompt, prompts_from_any
from .reward import RewardWeights, reward_components, total_reward
from .segmenters import Segmenter, make_segmenter


@dataclass
class ScoreResult:
    """Everything known about one scored completion.

    ``iou`` is the reward's mask term (SPEC §4, upstream's empty-GT rule);
    ``intersection``/``union`` are pixel counts in the protocol frame; ``parsed_ok`` is the
    parse under the scorer's mode, ``json_ok`` the strict parse that earns the JSON point;
    ``mask`` is the (H, W) bool prediction when the scorer keeps masks.
    """

    iou: float
    intersection: int
    union: int
    json_ok: bool
    think_ok: bool
    parsed_ok: bool
    answer_empty: bool
    gt_empty: bool
    pred_empty: bool
    prompts: list[dict[str, Any]]
    reward: float
    reward_components: dict[str, float]
    error: str | None = None
    mask: np.ndarray | None = field(default=None, repr=False)

    def info(self) -> dict[str, Any]:
        """The env's step info."""
        return {
            "iou": self.iou,
            "intersection": self.intersection,
            "union": self.union,
            "json_ok": self.json_ok,
            "think_ok": self.think_ok,
            "parsed_ok": self.parsed_ok,
            "gt_empty": self.gt_empty,
            "pred_empty": self.pred_empty,
            "prompts": self.prompts,
            "reward_components": dict(self.reward_components),
            "parse_error": self.error,
        }


class _Unparsable:
    """Stands for an action that has no text: the parser rejects it (a failed parse, 0)."""

    def __init__(self, why: str) -> None:
        self.why = why


def _is_messages(completion: Any) -> bool:
    """trl's conversational shape: a non-empty list of dicts with a role or a content."""
    return (
        isinstance(completion, list)
        and bool(completion)
        and all(isinstance(m, dict) for m in completion)
        and any(("content" in m or "role" in m) for m in completion)
    )


def _message_text(messages: list) -> "str | _Unparsable":
    """The last turn's text; content parts (``[{"type": "text", "text": ...}]``) are joined.
    Wrong inner types (content not text, a part's text not a string) make no text."""
    content = messages[-1].get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                t = part.get("text", "")
                if not isinstance(t, str):
                    return _Unparsable(f"message content part text is {type(t).__name__}")
                texts.append(t)
            else:
                return _Unparsable(f"message content part is {type(part).__name__}")
        return "".join(texts)
    return _Unparsable(f"message content is {type(content).__name__}")


def completion_text(completion: Any) -> str | Any:
    """Plain text from a str, trl's ``[{"role": "assistant", "content": ...}]``, or a
    structured action (GeometricPrompt / dict / list of them), which becomes a canonical
    completion. Anything else (wrong inner types included) becomes a value the parser
    rejects: a failed parse scored 0, never an exception."""
    if isinstance(completion, str):
        return completion
    if _is_messages(completion):
        return _message_text(completion)
    if isinstance(completion, (GeometricPrompt, dict)) or (
        isinstance(completion, (list, tuple)) and all(isinstance(c, (GeometricPrompt, dict)) for c in completion)
    ):
        try:
            return format_completion(prompts_from_any(completion))
        except Exception as exc:  # noqa: BLE001 - any malformed structure is a failed parse
            return _Unparsable(f"structured action: {type(exc).__name__}")
    return completion


def _group_keys(groups: Sequence[Any], image_keys: Sequence[Any] | None) -> Sequence[Any]:
    """One image key per group (default: every group its own image)."""
    if image_keys is None:
        return list(range(len(groups)))
    if len(image_keys) != len(groups):
        raise ValueError(f"{len(image_keys)} image keys for {len(groups)} groups")
    return image_keys


class Scorer:
    """Parse → segment → IoU → reward for groups of completions.

    Arguments:
        segmenter: a :class:`Segmenter` or a spec (``"box"``, ``"grabcut"``, ``"sam2:small"``).
        prompt_variant: which prompt protocol the completions answer.
        parser_mode: ``strict`` (training) or ``lenient`` (evaluation) for the prompts that
            are segmented; the JSON reward point always uses the strict parse.
        reward_weights: weights of (iou, json, think); default (2, 1, 1).
        keep_masks: return each predicted mask (for rendering).
        encode_batch_size: images encoded per batched encoder call.
        prompt_geometry: ``"clipped"`` (default: corners reordered, clipped to the frame,
            then de-duplicated) or ``"raw"`` (upstream: as written, de-duplicated on the
            raw boxes, passed to the segmenter unclipped). See :mod:`t2s_env.parser`.
        coord_frame: the units completions are written in (``abs`` pixels of the image,
            ``rel1000``, ``rel1``; :mod:`t2s_env.coords`); prompts are converted to pixels.
    """

    def __init__(
        self,
        segmenter: "Segmenter | str" = "box",
        prompt_variant: "str | PromptVariant" = DEFAULT_VARIANT,
        parser_mode: ParserMode = "strict",
        reward_weights: "RewardWeights | Mapping[str, float] | None" = None,
        keep_masks: bool = False,
        max_instances: int = DEFAULT_MAX_INSTANCES,
        encode_batch_size: int = 8,
        prompt_geometry: PromptGeometry = "clipped",
        coord_frame: str = "abs",
    ) -> None:
        self.segmenter = make_segmenter(segmenter)
        self.coord_frame = get_coord_frame(coord_frame).name
        self.variant = get_variant(prompt_variant)
        if parser_mode not in ("strict", "lenient"):
            raise ConfigError(f"parser_mode must be 'strict' or 'lenient', got {parser_mode!r}")
        if prompt_geometry not in PROMPT_GEOMETRIES:
            raise ConfigError(
                f"prompt_geometry must be one of {', '.join(PROMPT_GEOMETRIES)}, got {prompt_geometry!r}"
            )
        self.parser_mode = parser_mode
        self.prompt_geometry = prompt_geometry
        self.weights = RewardWeights.from_any(reward_weights)
        self.keep_masks = keep_masks
        self.max_instances = max_instances
        self.encode_batch_size = max(1, int(encode_batch_size))

    # -- parsing --------------------------------------------------------------------------
    def parse(self, completion: Any, image_size: tuple[int, int] | None = None) -> tuple[ParsedAnswer, bool]:
        """(answer under the scorer's mode, strict-parse flag for the JSON point)."""
        return self._parse_text(completion_text(completion), image_size)

    def _parse_text(self, text: Any, image_size: tuple[int, int] | None) -> tuple[ParsedAnswer, bool]:
        if isinstance(text, _Unparsable):
            return ParsedAnswer(False, error=text.why), False
        return parse_with_strict(
            text, self.variant, self.parser_mode, image_size, self.max_instances, prompt_geometry=self.prompt_geometry,
            coord_frame=self.coord_frame,
        )

    # -- scoring --------------------------------------------------------------------------
    def score(self, image: np.ndarray, gt_mask: np.ndarray, completions: Sequence[Any]) -> list[ScoreResult]:
        """Score completions that all answer about one image (H, W, 3) with GT (H, W) bool."""
        return self.score_many([(image, gt_mask, completions)])[0]

    def score_many(
        self,
        groups: Sequence[tuple[np.ndarray, np.ndarray, Sequence[Any]]],
        image_keys: Sequence[Any] | None = None,
    ) -> list[list[ScoreResult]]:
        """Score several groups ``(image, gt_mask, completions)``: each completion parsed
        (identical ones once per group), then :meth:`score_parsed`.

        Images are encoded in batches of ``encode_batch_size``, and only when some
        completion of the group needs a mask. Groups with equal ``image_keys`` show the
        same image (e.g. two referring expressions with different masks): it is encoded
        once for all of them.
        """
        image_keys = _group_keys(groups, image_keys)
        parsed = []
        for image, gt, completions in groups:
            h, w = gt.shape
            # Identical completions (frequent within a GRPO group) are parsed once.
            seen: dict[str, tuple[ParsedAnswer, bool]] = {}
            answers = []
            for c in completions:
                text = completion_text(c)
                if isinstance(text, str):
                    if text not in seen:
                        seen[text] = self._parse_text(text, (w, h))
                    answers.append(seen[text])
                else:
                    answers.append(self._parse_text(text, (w, h)))
            parsed.append((image, gt, answers))
        return self.score_parsed(parsed, image_keys)

    def score_parsed(
        self,
        groups: Sequence[tuple[np.ndarray, np.ndarray, Sequence[tuple[ParsedAnswer, bool]]]],
        image_keys: Sequence[Any] | None = None,
    ) -> list[list[ScoreResult]]:
        """Score groups ``(image, gt_mask, answers)`` whose answers are already parsed:
        ``(ParsedAnswer, json_ok)`` pairs as :meth:`parse` returns them, possibly mapped
        since (e.g. to another frame with ``t2s_env.framing.map_answer``). The answers'
        prompts are pixels of ``image`` (H, W, 3); ``gt_mask`` is (H, W) bool.

        Encoding is as in :meth:`score_many`: in batches, only for groups with something
        to segment, once per distinct ``image_keys`` value.
        """
        image_keys = _group_keys(groups, image_keys)
        for image, gt, _ in groups:
            if image.shape[:2] != gt.shape:
                raise ValueError(f"image {image.shape[:2]} and mask {gt.shape} differ in size")
        # Groups that need a mask, batched by distinct image.
        by_image: dict[Any, list[int]] = {}
        for g, (_, _, answers) in enumerate(groups):
            if any(a.ok and a.prompts for a, _ in answers):
                by_image.setdefault(image_keys[g], []).append(g)
        keys = list(by_image)
        results: list[list[ScoreResult] | None] = [None] * len(groups)
        for start in range(0, len(keys), self.encode_batch_size):
            chunk = keys[start : start + self.encode_batch_size]
            embeddings = self.segmenter.encode_batch([groups[by_image[k][0]][0] for k in chunk])
            for k, emb in zip(chunk, embeddings):
                for g in by_image[k]:
                    results[g] = self._finish(groups[g][1], list(groups[g][2]), emb)
            del embeddings
        for g in range(len(groups)):
            if results[g] is None:
                results[g] = self._finish(groups[g][1], list(groups[g][2]), None)
        return results  # type: ignore[return-value]

    def _finish(self, gt: np.ndarray, answers: list[tuple[ParsedAnswer, bool]], embedding: Any) -> list[ScoreResult]:
        gt_area = int(np.count_nonzero(gt))
        gt_empty = gt_area == 0
        todo = [i for i, (a, _) in enumerate(answers) if a.ok and a.prompts]
        inter = [0] * len(answers)
        union = [gt_area] * len(answers)
        pred_empty = [True] * len(answers)
        masks: list[np.ndarray | None] = [None] * len(answers)
        if todo:
            pred = self.segmenter.decode(embedding, [answers[i][0].prompts for i in todo])
            if tuple(pred.shape[-2:]) != gt.shape:
                raise RuntimeError(f"segmenter returned masks of {tuple(pred.shape)} for a {gt.shape} image")
            gt_t = torch.from_numpy(np.ascontiguousarray(gt)).to(pred.device)
            i_t, u_t = intersection_union(pred, gt_t)
            for j, (i_j, u_j) in enumerate(zip(i_t.tolist(), u_t.tolist())):
                i = todo[j]
                inter[i], union[i] = i_j, u_j
                # |P| = |P∪G| - |G| + |P∩G|: no extra pass over the masks
                pred_empty[i] = u_j - gt_area + i_j == 0
            if self.keep_masks:
                host = pred.cpu().numpy()
                for j, i in enumerate(todo):
                    masks[i] = host[j]
        out = []
        for i, (answer, json_ok) in enumerate(answers):
            comps = reward_components(
                answer.ok, answer.is_empty_answer, inter[i], union[i], gt_empty, json_ok, answer.think_ok
            )
            if self.keep_masks and masks[i] is None:
                masks[i] = np.zeros_like(gt, dtype=bool)
            out.append(
                ScoreResult(
                    iou=comps["iou"],
                    intersection=inter[i],
                    union=union[i],
                    json_ok=json_ok,
                    think_ok=answer.think_ok,
                    parsed_ok=answer.ok,
                    answer_empty=answer.is_empty_answer,
                    gt_empty=gt_empty,
                    pred_empty=pred_empty[i],
                    prompts=[p.to_dict() for p in answer.prompts],
                    reward=total_reward(comps, self.weights),
                    reward_components=comps,
                    error=answer.error,
                    mask=masks[i],
                )
            )
        return out
