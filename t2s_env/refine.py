"""Look and refine: one sample's multi-turn episode, the same rules for every caller.

:class:`RefineSession` runs the rules of docs/refine.md for the env (``max_turns`` K > 1),
the benchmark runner, ``t2s serve`` and the trainer adapters, independent of gymnasium:

    session = RefineSession(scorer, image, gt_mask, max_turns=3, mode="replace")
    turn = session.step(completion)          # a TurnResult: reward, terminated, truncated, info, mask

- The image is encoded once per session (at the first turn that has something to segment)
  and every turn decodes the answer in force with ``segmenter.decode_with_state`` and the
  previous turn's :class:`~t2s_env.segmenters.base.MaskState`.
- Turn 1 is scored exactly as the one-shot :class:`~t2s_env.scoring.Scorer` scores it.
- Later turns are parsed with :func:`~t2s_env.instructions.refine_variant` (any number of
  points); the answer in force is the new answer (``replace``) or the union with those so far
  (``add``: an instance whose :func:`~t2s_env.prompt.anchor` matches an existing one adds its
  points to it).
- R_t is the one-shot reward of turn t's completion with the IoU term of the answer in force;
  R_0 = 0; turn t earns R_t − R_{t−1} (− ``turn_cost`` after the first turn), so the return
  telescopes to the last scored turn's R (K = 1: today's reward exactly).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import ConfigError
from .instructions import REFINE_MODES, is_stop_answer, refine_variant
from .iou import intersection_union
from .parser import ParsedAnswer, parse_with_strict
from .prompt import GeometricPrompt, anchor
from .reward import reward_components, total_reward
from .scoring import Scorer, ScoreResult, completion_text


def check_refine_options(max_turns: Any, mode: Any, turn_cost: Any = 0.0, overshoot_penalty: Any = 0.0) -> None:
    """ConfigError (one line) for a bad ``max_turns``, ``refine_mode``, ``turn_cost`` or
    ``overshoot_penalty``."""
    if isinstance(max_turns, bool) or not isinstance(max_turns, (int, np.integer)) or max_turns < 1:
        raise ConfigError(f"max_turns must be an integer >= 1 (1: one-shot episodes), got {max_turns!r}")
    if mode not in REFINE_MODES:
        raise ConfigError(f"refine_mode must be one of {', '.join(REFINE_MODES)}, got {mode!r}")
    for name, value in (("turn_cost", turn_cost), ("overshoot_penalty", overshoot_penalty)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")


def merge_prompts(current: tuple[GeometricPrompt, ...], new: tuple[GeometricPrompt, ...]) -> tuple[GeometricPrompt, ...]:
    """``add`` mode: ``new`` joined to ``current``. A new instance with an existing instance's
    anchor adds the points that instance lacks (in order); any other is appended."""
    out = list(current)
    where = {anchor(p): k for k, p in enumerate(out)}
    for p in new:
        a = anchor(p)
        if a in where:
            q = out[where[a]]
            pos = q.positive_points + tuple(x for x in p.positive_points if x not in q.positive_points)
            neg = q.negative_points + tuple(x for x in p.negative_points if x not in q.negative_points)
            out[where[a]] = GeometricPrompt(q.box, pos, neg)
        else:
            where[a] = len(out)
            out.append(p)
    return tuple(out)


@dataclass
class TurnResult:
    """One turn: its reward (R_t − R_{t−1}, costs included), the episode's end flags, the
    step info, the mask in force (H, W) bool and the ScoreResult of the answer in force
    (``parsed_ok``: some answer is in force; ``info["turn_parsed_ok"]``: this turn's parsed)."""

    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    mask: np.ndarray = field(repr=False)
    score: ScoreResult = field(repr=False)
    stopped: bool = False


class RefineSession:
    """A multi-turn episode on one image (H, W, 3) with its GT (H, W) bool.

    ``parse_size`` is the (width, height) the answers are written in (default: the image's);
    ``answer_map`` maps each parsed answer into the image's pixels (the benchmark scores at
    the original size: :func:`t2s_env.framing.map_answer`). ``embedding``: the image's, if
    already encoded.
    """

    def __init__(self, scorer: Scorer, image: np.ndarray, gt_mask: np.ndarray, *, max_turns: int = 1,
                 mode: str = "replace", turn_cost: float = 0.0, overshoot_penalty: float = 0.0,
                 embedding: Any = None, parse_size: tuple[int, int] | None = None, answer_map: Any = None) -> None:
        check_refine_options(max_turns, mode, turn_cost, overshoot_penalty)
        if image.shape[:2] != gt_mask.shape:
            raise ValueError(f"image {image.shape[:2]} and mask {gt_mask.shape} differ in size")
        self.scorer = scorer
        self.image = image
        self.gt = np.asarray(gt_mask, dtype=bool)
        self.max_turns = int(max_turns)
        self.mode = mode
        self.turn_cost = float(turn_cost)
        self.overshoot_penalty = float(overshoot_penalty)
        self.embedding = embedding
        h, w = self.gt.shape
        self.parse_size = parse_size or (w, h)
        self.answer_map = answer_map
        self.later_variant = refine_variant(scorer.variant)
        self.turn = 0
        self.done = False
        self.state: Any = None  # the MaskState of the answer in force
        self.mask = np.zeros_like(self.gt)
        self.prompts_in_force: tuple[GeometricPrompt, ...] = ()
        self.in_force_ok = False  # some answer has parsed
        self.iou_per_turn: list[float] = []
        self.answers: list[str] = []
        self.last_reward = 0.0  # R_{t-1}
        self.returns = 0.0
        self._gt_t: torch.Tensor | None = None
        self._inter, self._union = 0, int(np.count_nonzero(self.gt))
        self.last_score: ScoreResult | None = None

    # -- the pieces ------------------------------------------------------------------------
    def _parse(self, text: Any, turn: int) -> tuple[ParsedAnswer, bool]:
        s = self.scorer
        if turn == 1:
            answer, json_ok = s.parse(text, self.parse_size)
        elif not isinstance(text, str):
            answer, json_ok = ParsedAnswer(False, error=f"completion is {type(text).__name__}, not text"), False
        else:
            answer, json_ok = parse_with_strict(text, self.later_variant, s.parser_mode, self.parse_size,
                                                s.max_instances, prompt_geometry=s.prompt_geometry,
                                                coord_frame=s.coord_frame)
        if self.answer_map is not None and answer.ok:
            answer = self.answer_map(answer)
        return answer, json_ok

    def _decode(self) -> None:
        """The mask of the answer in force, its intersection and union with the GT."""
        prompts = [p for p in self.prompts_in_force if not p.is_empty]
        if not prompts:
            self.mask, self.state = np.zeros_like(self.gt), None
            self._inter, self._union = 0, int(np.count_nonzero(self.gt))
            return
        seg = self.scorer.segmenter
        if self.embedding is None:
            self.embedding = seg.encode_batch([self.image])[0]
        pred, states = seg.decode_with_state(self.embedding, [list(self.prompts_in_force)], [self.state])
        if tuple(pred.shape[-2:]) != self.gt.shape:
            raise RuntimeError(f"segmenter returned masks of {tuple(pred.shape)} for a {self.gt.shape} image")
        if self._gt_t is None or self._gt_t.device != pred.device:
            self._gt_t = torch.from_numpy(np.ascontiguousarray(self.gt)).to(pred.device)
        i_t, u_t = intersection_union(pred[:1], self._gt_t)
        self._inter, self._union = int(i_t.tolist()[0]), int(u_t.tolist()[0])
        self.mask = pred[0].cpu().numpy().astype(bool)
        self.state = states[0]

    def _score(self, answer: ParsedAnswer, json_ok: bool, think_ok: bool) -> ScoreResult:
        gt_area = int(np.count_nonzero(self.gt))
        gt_empty = gt_area == 0
        in_force_empty = self.in_force_ok and not self.prompts_in_force
        comps = reward_components(self.in_force_ok, in_force_empty, self._inter, self._union, gt_empty, json_ok,
                                  think_ok)
        return ScoreResult(
            iou=comps["iou"], intersection=self._inter, union=self._union, json_ok=json_ok, think_ok=think_ok,
            parsed_ok=self.in_force_ok, answer_empty=in_force_empty, gt_empty=gt_empty,
            pred_empty=self._union - gt_area + self._inter == 0,
            prompts=[p.to_dict() for p in self.prompts_in_force],
            reward=total_reward(comps, self.scorer.weights), reward_components=comps, error=answer.error,
            mask=self.mask.copy() if self.scorer.keep_masks else None,
        )

    # -- a turn ------------------------------------------------------------------------------
    def step(self, completion: Any) -> TurnResult:
        """Score the next turn's completion (any value: nothing an agent writes raises)."""
        if self.done:
            raise RuntimeError(f"this refine episode ended after turn {self.turn}: reset() before step()")
        turn = self.turn + 1
        text = completion_text(completion)
        self.answers.append(text if isinstance(text, str) else "")
        stopped = turn >= 2 and is_stop_answer(text)
        terminated = False
        turn_parsed_ok = False
        if stopped:
            score = self.last_score
            assert score is not None
            reward, terminated = 0.0, True
            components = {k: 0.0 for k in score.reward_components}
        else:
            answer, json_ok = self._parse(text, turn)
            think_ok = answer.think_ok
            turn_parsed_ok = answer.ok
            changed = True
            if turn == 1:
                self.prompts_in_force, self.in_force_ok = answer.prompts, answer.ok
                terminated = answer.is_empty_answer  # "[]" at turn 1: no target, the episode ends
            elif not answer.ok:  # a later answer that does not parse: format 0, the mask stays
                json_ok = think_ok = False
                changed = False
            elif self.mode == "replace":
                self.prompts_in_force, self.in_force_ok = answer.prompts, True
            else:
                merged = merge_prompts(self.prompts_in_force, answer.prompts)
                changed = merged != self.prompts_in_force or not self.in_force_ok
                self.prompts_in_force, self.in_force_ok = merged, True
            if changed:
                self._decode()
            score = self._score(answer, json_ok, think_ok)
            reward = score.reward - self.last_reward - (self.turn_cost if turn > 1 else 0.0)
            self.last_reward = score.reward
            self.last_score = score
            components = dict(score.reward_components)
        self.turn = turn
        self.iou_per_turn.append(score.iou)
        truncated = not terminated and turn >= self.max_turns
        self.done = terminated or truncated
        penalty = 0.0
        if self.done and self.overshoot_penalty:
            penalty = self.overshoot_penalty * (max(self.iou_per_turn) - score.iou)
            reward -= penalty
        self.returns += reward
        info = score.info()
        info.update(
            turn=turn, max_turns=self.max_turns, refine_mode=self.mode, stopped=stopped,
            iou_per_turn=list(self.iou_per_turn), turn_reward_components=components, delta_reward=reward,
            best_iou=max(self.iou_per_turn), overshoot_penalty=penalty, turn_parsed_ok=turn_parsed_ok,
        )
        return TurnResult(reward, terminated, truncated, info, self.mask.copy(), score, stopped)


__all__ = ["RefineSession", "TurnResult", "check_refine_options", "merge_prompts"]
