"""The Think2Seg Gymnasium environment."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .coords import DEFAULT_COORD_FRAME, get_coord_frame
from .datasets import Sample, make_dataset
from .errors import ConfigError
from .framing import DEFAULT_IMAGE_SIZE, MAX_IMAGE_SIZE, FramedSample, load_framed
from .instructions import DEFAULT_VARIANT, PromptVariant, coord_variant, get_variant
from .observation import make_observation
from .instructions import feedback_turn
from .parser import MAX_COMPLETION_CHARS, ParserMode
from .refine import RefineSession, check_refine_options
from .render import draw_overlay, feedback_overlay
from .reward import RewardWeights
from .sample_cache import FramedSampleCache, shared_frame_cache
from .scoring import Scorer, ScoreResult
from .segmenters import Segmenter
from .text_space import CHARSET, ProtocolText
from .vector import warn_if_shared_memory_worker

MAX_QUESTION_LENGTH = 2048
#: Default bound of each env's cache of framed samples (image + mask in the frame).
DEFAULT_FRAME_CACHE_MB = 256


class Think2SegEnv(gym.Env):
    """Reasoning segmentation as a one-step episode.

    ## Description
    The agent sees an aerial image and a question that does not name the target ("where
    could ships be repaired?"). It answers with geometric prompts (boxes and points) in
    the Think2Seg-RS answer format; a frozen segmenter turns them into a mask, which is
    scored against the ground truth. This is the loop of Think2Seg-RS (arXiv 2512.19302)
    with the reward lifted out of the trainer.

    ## Action Space
    ``Text(max_length=200000)``: a completion such as
    ``<think>…</think><answer>```json[{"bbox_2d": [x1,y1,x2,y2], "positive_points": [[x,y],[x,y]]}]```</answer>``
    in pixel coordinates of the observed image. ``step`` also accepts a structured action
    (a ``GeometricPrompt``, a protocol dict, or a list of them), scored as its canonical
    completion. Any string is scored; none raises.

    ## Observation Space
    ``Dict(image=Box(0, 255, (S, S, 3), uint8), question=Text(2048))`` with ``S =
    image_size`` (840 by default: the image resized with LANCZOS, its mask with NEAREST).

    ## Rewards
    ``2·IoU + 1[answer parses in strict mode] + 1[<think>…</think><answer>…</answer>]``,
    in [0, 4] (SPEC §4). On an empty ground truth the IoU term is 1 iff the answer is
    ``[]``. ``reward_weights`` changes the weights; ``info["reward_components"]`` holds
    the unweighted terms.

    ## Starting State
    ``reset`` draws a sample uniformly from the split with the env's RNG, or takes
    ``options={"index": i}`` / ``options={"sample_id": s}``. Its info holds
    ``sample_id`` and ``messages`` (system + user chat turns for an LVLM, per
    ``prompt_variant``), plus ``gt_mask`` (S, S) bool when ``privileged=True``.

    ## Episode End
    Every episode is one step: ``terminated=True`` after the answer is scored. The step
    info holds ``iou, intersection, union, json_ok, think_ok, parsed_ok, gt_empty,
    pred_empty, prompts, reward_components, parse_error``.

    ## Arguments
    - ``dataset``: a sequence of :class:`Sample` (overrides ``dataset_spec``/``root``/``split``).
    - ``dataset_spec``: ``synthetic`` or ``earthreason`` (any name of ``make_dataset``).
    - ``root``, ``split``: where the data lives.
    - ``segmenter``: ``"grabcut"``, ``"box"``, ``"sam2:small"`` … or a Segmenter instance.
    - ``image_size``: protocol frame side (default 840).
    - ``prompt_variant``: ``bbox+2pos`` (default), ``bbox``, ``2pos``, ``bbox+4pos``, ``bbox+2pos+2neg``.
    - ``question``: ``first``, ``random`` (seeded per image) or ``all``.
    - ``parser_mode``: ``strict`` (default, as in training) or ``lenient``.
    - ``reward_weights``: mapping of ``iou``, ``json``, ``think`` weights.
    - ``privileged``: put the GT mask in reset info (oracle agents).
    - ``seed``: the seed of the first ``reset`` when it is given none.
    - ``render_mode``: ``"rgb_array"`` or None.

    - ``frame_cache_mb``: bound of the cache of framed samples (default 256; 0 disables).
    - ``coord_frame``: units of the answer's coordinates: ``abs`` (pixels of the observed
      image, default), ``rel1000`` (0–1000, Qwen3-VL/InternVL) or ``rel1`` (0–1); the
      prompt variant becomes ``NAME@FRAME`` and prompts are converted to pixels
      (:mod:`t2s_env.coords`); structured actions are read in that frame too.
      ``info["coord_frame"]`` records it; ``info["prompts"]`` are pixels.

    ``reset`` and ``step`` return new copies of the cached frame (gymnasium's contract).

    Vector envs: use :func:`t2s_env.make_vec` (same-step autoreset, so every ``step``
    scores every action; async without shared memory, in a fork-safe context). An
    ``AsyncVectorEnv`` with gymnasium's default ``shared_memory=True`` returns stale Text
    observations: the env warns when it finds itself in such a worker.

    ## Refine episodes (``max_turns`` K > 1; docs/refine.md)
    The agent sees the mask its prompts produced and corrects them, for up to K turns. The
    observation adds ``mask`` (S, S) uint8 0/1 (the mask in force), ``overlay`` (S, S, 3) uint8
    (the image with that mask in semi-transparent green and the prompts drawn), ``turn``
    (turns taken, 0 at reset) and ``answers`` (the completions so far); ``info["messages"]``
    grows by each answer and a user turn with the overlay and ``FEEDBACK[refine_mode]``
    (:mod:`t2s_env.instructions`). ``<answer>stop</answer>`` after the first turn ends the
    episode (terminated), as does ``[]`` at the first turn; the K-th turn truncates it. Turn t
    earns R_t − R_{t−1} (R_t: the one-shot reward of turn t with the IoU of the answer in
    force; R_0 = 0), so the return is the last answer's one-shot reward. No ground truth and
    no IoU reach the observation or the messages. ``Think2Seg-Refine-*-v0`` ids: K = 3.

    - ``max_turns``: K (default 1: the one-step env, unchanged).
    - ``refine_mode``: ``replace`` (each answer is the full prompt set) or ``add`` (each answer
      adds to the prompts so far).
    - ``turn_cost``: subtracted from every turn after the first (default 0).
    - ``overshoot_penalty``: at the end, minus this times (best IoU − final IoU) (default 0).

    ## Version History
    - v0: Think2Seg-RS protocol (840 square frame, upstream strings and reward).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(
        self,
        dataset: Sequence[Sample] | None = None,
        *,
        dataset_spec: str = "earthreason",
        root: str | None = None,
        split: str = "train",
        segmenter: "Segmenter | str" = "grabcut",
        image_size: int = DEFAULT_IMAGE_SIZE,
        prompt_variant: "str | PromptVariant" = DEFAULT_VARIANT,
        question: str = "first",
        parser_mode: ParserMode = "strict",
        reward_weights: "RewardWeights | Mapping[str, float] | None" = None,
        privileged: bool = False,
        seed: int | None = None,
        render_mode: str | None = None,
        strict: bool = True,
        frame_cache_mb: float = DEFAULT_FRAME_CACHE_MB,
        coord_frame: str = DEFAULT_COORD_FRAME,
        max_turns: int = 1,
        refine_mode: str = "replace",
        turn_cost: float = 0.0,
        overshoot_penalty: float = 0.0,
    ) -> None:
        check_refine_options(max_turns, refine_mode, turn_cost, overshoot_penalty)
        self.max_turns = int(max_turns)
        self.refine_mode = refine_mode
        self.turn_cost = float(turn_cost)
        self.overshoot_penalty = float(overshoot_penalty)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if not isinstance(image_size, int) or isinstance(image_size, bool) or not 16 <= image_size <= MAX_IMAGE_SIZE:
            raise ConfigError(f"image_size must be an integer in [16, {MAX_IMAGE_SIZE}], got {image_size!r}")
        if not isinstance(frame_cache_mb, (int, float)) or isinstance(frame_cache_mb, bool) or not frame_cache_mb >= 0:
            raise ConfigError(f"frame_cache_mb must be a number >= 0, got {frame_cache_mb!r}")
        self.dataset = dataset if dataset is not None else make_dataset(
            f"{dataset_spec}:{split}", root=root, question=question, seed=seed or 0, strict=strict
        )
        if len(self.dataset) == 0:
            raise ConfigError(f"dataset {dataset_spec}:{split} has no samples")
        self.coord_frame = get_coord_frame(coord_frame).name
        # a relative frame asks in its own wording (NAME@FRAME) and parses in its units
        self.variant = coord_variant(get_variant(prompt_variant), self.coord_frame)
        self.image_size = image_size
        self.privileged = privileged
        self.render_mode = render_mode
        self._first_seed = seed
        self.scorer = Scorer(
            segmenter, self.variant, parser_mode, reward_weights, keep_masks=render_mode is not None,
            coord_frame=self.coord_frame,
        )
        self.action_space = ProtocolText(MAX_COMPLETION_CHARS, min_length=0, charset=CHARSET)
        obs_spaces: dict[str, spaces.Space] = {
            "image": spaces.Box(0, 255, (image_size, image_size, 3), np.uint8),
            "question": ProtocolText(MAX_QUESTION_LENGTH, min_length=0, charset=CHARSET),
        }
        if self.max_turns > 1:
            obs_spaces.update(
                mask=spaces.Box(0, 1, (image_size, image_size), np.uint8),
                overlay=spaces.Box(0, 255, (image_size, image_size, 3), np.uint8),
                turn=spaces.Discrete(self.max_turns + 1),
                answers=spaces.Sequence(self.action_space, stack=False),
            )
        self.observation_space = spaces.Dict(obs_spaces)
        max_bytes = int(frame_cache_mb * 2**20)
        # A dataset built here from (spec, split, root, ...) is the same data in every env made
        # with those arguments, so their framed samples are shared; a dataset object passed in
        # keeps a cache of its own.
        self.frame_cache = (
            shared_frame_cache((dataset_spec, split, None if root is None else str(root), question, seed or 0, strict,
                                image_size), max_bytes)
            if dataset is None and max_bytes > 0 else FramedSampleCache(max_bytes)
        )
        self._checked_worker = False
        self._framed: FramedSample | None = None
        self._obs: dict[str, Any] | None = None
        self._result: ScoreResult | None = None
        self._session: RefineSession | None = None
        self._messages: list[dict[str, Any]] = []
        self._index = {s.sample_id: i for i, s in enumerate(self.dataset)}

    @property
    def segmenter(self) -> Segmenter:
        return self.scorer.segmenter

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None and self._first_seed is not None:
            seed, self._first_seed = self._first_seed, None
        super().reset(seed=seed)
        options = options or {}
        if "sample_id" in options:
            if options["sample_id"] not in self._index:
                raise ConfigError(f"unknown sample_id {options['sample_id']!r}")
            index = self._index[options["sample_id"]]
        elif "index" in options:
            index = int(options["index"])
            if not 0 <= index < len(self.dataset):
                raise ConfigError(f"index {index} is outside 0..{len(self.dataset) - 1}")
        else:
            index = int(self.np_random.integers(len(self.dataset)))
        if not self._checked_worker:
            self._checked_worker = True
            warn_if_shared_memory_worker()
        framed = self.frame_cache.get_or_load(index, lambda: load_framed(self.dataset[index], self.image_size))
        self._framed = framed
        self._obs, info = make_observation(self._framed, self.variant, self.privileged)
        # Gymnasium's contract: every call returns new data (the cache keeps the original).
        self._obs["image"] = framed.image.copy()
        if self.privileged:
            info["gt_mask"] = framed.gt_mask.copy()
        info["coord_frame"] = self.coord_frame
        self._result = None
        if self.max_turns > 1:
            self._session = RefineSession(
                self.scorer, framed.image, framed.gt_mask, max_turns=self.max_turns, mode=self.refine_mode,
                turn_cost=self.turn_cost, overshoot_penalty=self.overshoot_penalty,
            )
            self._messages = info["messages"]
            info["messages"] = [dict(m) for m in self._messages]
            info.update(max_turns=self.max_turns, refine_mode=self.refine_mode)
            return self._refine_obs(), info
        return self._obs, info

    def _refine_obs(self) -> dict[str, Any]:
        """The observation of a refine episode after ``session.turn`` turns (new arrays)."""
        session = self._session
        assert session is not None and self._framed is not None
        prompts = [p.to_dict() for p in session.prompts_in_force]
        return {
            "image": self._framed.image.copy(),
            "question": self._obs["question"],
            "mask": session.mask.astype(np.uint8),
            "overlay": feedback_overlay(self._framed.image, session.mask, prompts),
            "turn": session.turn,
            "answers": tuple(session.answers),
        }

    def _refine_step(self, action: Any):
        session = self._session
        assert session is not None and self._framed is not None
        if session.done:
            raise RuntimeError(
                f"this refine episode ended after turn {session.turn} of {self.max_turns}: call reset() before step()"
            )
        turn = session.step(action)
        self._result = turn.score
        info = turn.info
        info["sample_id"] = self._framed.sample.sample_id
        info["coord_frame"] = self.coord_frame
        self._messages = self._messages + [{"role": "assistant", "content": session.answers[-1]}]
        if not (turn.terminated or turn.truncated):
            self._messages.append(feedback_turn(self.refine_mode))
            if self.privileged:
                info["gt_mask"] = self._framed.gt_mask.copy()
        info["messages"] = [dict(m) for m in self._messages]
        return self._refine_obs(), turn.reward, turn.terminated, turn.truncated, info

    def step(self, action: Any):
        if self.max_turns > 1:
            if self._framed is None or self._session is None:
                raise RuntimeError("call reset() before step()")
            return self._refine_step(action)
        if self._framed is None or self._result is not None:
            raise RuntimeError("Think2SegEnv episodes last one step: call reset() before step()")
        self._result = self.scorer.score(self._framed.image, self._framed.gt_mask, [action])[0]
        info = self._result.info()
        info["sample_id"] = self._framed.sample.sample_id
        info["coord_frame"] = self.coord_frame
        # A new array on every call, as gymnasium 1.4 requires (check_env's
        # check_returned_data_not_reused): users keep what reset and step return. A read-only
        # view of the cached frame would share memory with the previous step's (0.1 ms saved
        # at 840², 3 µs at the RL frame of 128²).
        obs = {"image": self._framed.image.copy(), "question": self._obs["question"]}
        return obs, self._result.reward, True, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self._framed is None:
            return None
        r = self._result
        return draw_overlay(
            self._framed.image,
            pred_mask=r.mask if r is not None else None,
            gt_mask=self._framed.gt_mask,
            prompts=r.prompts if r is not None else (),
            caption=None if r is None else f"IoU {r.iou:.3f}  reward {r.reward:.2f}",
        )
