"""The stages of a ``t2s bench`` job, batch by batch: act, score, record.

A :class:`Job` holds every run of one dataset. Its samples are processed in batches, and
each batch goes through three stages, one function each:

1. :func:`act_stage`: every run that still needs a sample answers it (``act_batch``; a
   raising batch is retried sample by sample, so only the raising sample fails);
2. :func:`score_stage`: all the runs' answers are scored in one :class:`t2s_env.Scorer`
   call, one group per image, so the segmenter encodes each image once for every agent;
3. :func:`record_stage`: each run appends its records to ``samples.jsonl`` (fsynced).

:func:`.jobs.process_batch` chains them once; an episode of several turns repeats the chain
per turn on the same :class:`Batch` (:mod:`.refine_runner`). :mod:`.jobs` runs a job from
start to end.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from t2s_env import MetricProtocol, Scorer, make_observation
from t2s_env.framing import ScoringFrames, load_scoring_frames, map_answer
from t2s_env.metrics import per_sample_iou
from t2s_env.scoring import ScoreResult, completion_text
from t2s_env.segmenters import Segmenter

from think2seg.agents import Agent

from . import tensorboard_log
from .rundir import RunDir, RunLock

#: the evaluation parser mode (training rewards use strict; see t2s_env.Scorer)
PARSER_MODE = "lenient"
#: the first failures of a run are reported on stderr; the rest only in samples.jsonl
MAX_REPORTED_FAILURES = 3


# -- what is executed -----------------------------------------------------------------------

@dataclass
class Run:
    """A (agent, dataset) run in progress."""

    run_id: str
    agent: Agent
    rundir: RunDir
    config: dict[str, Any]
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    tiles: dict[int, np.ndarray] = field(default_factory=dict)
    failures: int = 0
    #: held from the folder's creation (or the resume's planning) until the run ends
    lock: RunLock | None = None

    @property
    def label(self) -> str:
        return self.config["agent"]["label"]


@dataclass
class Job:
    """Every run on one dataset, sharing its samples, segmenter and protocol."""

    dataset: str
    root: str | None
    segmenter_spec: str
    segmenter: Segmenter
    protocol: MetricProtocol
    prompt_variant: str
    samples: list[Any]
    runs: list[Run]
    batch_size: int
    tb_samples: int
    tensorboard: bool
    #: look-and-refine episodes (docs/refine.md): turns per episode, and how answers combine
    max_turns: int = 1
    refine_mode: str = "replace"


def make_scorers(job: Job) -> tuple[Scorer, Scorer]:
    """The job's two scorers (plain, and keeping masks for TensorBoard tiles), built in this
    one place for one-process and sharded runs: every scoring field comes from the protocol."""
    p = job.protocol
    common = dict(parser_mode=PARSER_MODE, encode_batch_size=job.batch_size, prompt_geometry=p.prompt_geometry,
                  coord_frame=p.coord_frame)
    return (Scorer(job.segmenter, job.prompt_variant, **common),
            Scorer(job.segmenter, job.prompt_variant, keep_masks=True, **common))


# -- one batch: act, score, record ------------------------------------------------------------

#: (completion, error) of one run on one sample: one of the two is None
Answer = tuple["str | None", "str | None"]
#: (position of the run in job.runs, sample index)
Slot = tuple[int, int]


@dataclass
class Batch:
    """A batch of samples and the runs that still need each one (a resumed run needs
    fewer): what the stages hand on to each other."""

    indices: list[int]                #: every sample some run needs, in dataset order
    frames: dict[int, ScoringFrames]         #: each sample loaded once, for every run
    need: list[list[int]]             #: per run (job.runs order): the samples it answers

    def slots(self) -> list[list[Slot]]:
        """Per sample of ``indices``: the (run, sample) slots answering it, in run order;
        one scoring group each."""
        return [[(k, i) for k, idx in enumerate(self.need) if i in idx] for i in self.indices]


def open_batch(job: Job, indices: Sequence[int]) -> Batch | None:
    """The batch of ``indices`` that some run still needs (None when none does)."""
    need = [[i for i in indices if job.samples[i].sample_id not in run.done] for run in job.runs]
    todo = sorted({i for idx in need for i in idx})
    if not todo:
        return None
    return Batch(todo, {i: frames_of(job, i) for i in todo}, need)


def act_stage(job: Job, batch: Batch, progress: Any) -> dict[Slot, Answer]:
    """Every run answers the samples it needs; the first failures of a run are reported."""
    answers: dict[Slot, Answer] = {}
    for k, (run, idx) in enumerate(zip(job.runs, batch.need)):
        if not idx:
            continue
        pairs = [observation(batch.frames[i].framed, job, run.agent) for i in idx]
        got = act(run.agent, [p[0] for p in pairs], [p[1] for p in pairs])
        for i, (completion, error) in zip(idx, got):
            answers[(k, i)] = (completion, error)
            if error is not None:
                run.failures += 1
                if run.failures <= MAX_REPORTED_FAILURES:
                    progress.write(f"t2s bench: {run.label} raised on {job.samples[i].sample_id} ({error}); "
                                   "recorded as a failure", file=sys.stderr)
    return answers


def score_stage(job: Job, batch: Batch, answers: Mapping[Slot, Answer], scorer: Scorer) -> dict[Slot, ScoreResult]:
    """Every answer scored; one group per image holding every run's answer, so the image is
    encoded once for all."""
    slots = batch.slots()
    groups = [(batch.frames[i], [answers[s][0] or "" for s in group]) for i, group in zip(batch.indices, slots)]
    results = score_in_protocol_frame(job, scorer, groups)
    return {s: r for group, res in zip(slots, results) for s, r in zip(group, res)}


def record_stage(job: Job, batch: Batch, answers: Mapping[Slot, Answer], results: Mapping[Slot, ScoreResult],
                 render: bool) -> None:
    """Each run's records appended to its samples.jsonl (durable before they count as done),
    and the TensorBoard tiles of the first samples when ``render``."""
    new: dict[int, list[dict[str, Any]]] = {}
    for i, group in zip(batch.indices, batch.slots()):
        for k, _ in group:
            completion, error = answers[(k, i)]
            record = make_record(job.samples[i], completion, error, results[(k, i)], job.protocol)
            new.setdefault(k, []).append(record)
            if render and i < job.tb_samples:
                job.runs[k].tiles[i] = tile(batch.frames[i], record, results[(k, i)])
    for k, run in enumerate(job.runs):
        if k in new:
            run.rundir.append(new[k])
            run.done.update((r["sample_id"], r) for r in new[k])  # done once on disk


# -- the pieces of the stages ---------------------------------------------------------------

def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def as_text(completion: Any) -> str:
    text = completion_text(completion)
    if not isinstance(text, str):
        raise TypeError(f"the agent returned {type(completion).__name__}, not a completion string")
    return text


def act(agent: Agent, observations: list[dict], infos: list[dict]) -> list[Answer]:
    """(completion, error) per sample. ``act_batch`` first; if it raises (or answers the
    wrong number of samples), each sample is retried with ``act`` so that only the
    raising sample fails. KeyboardInterrupt and SystemExit pass through."""
    try:
        answers = agent.act_batch(observations, infos)
        if not isinstance(answers, (list, tuple)) or len(answers) != len(observations):
            raise ValueError(f"act_batch returned {len(answers) if hasattr(answers, '__len__') else answers!r} answers for {len(observations)} samples")
        return [(as_text(a), None) for a in answers]
    except Exception:  # noqa: BLE001 - an agent's bug must not end the run
        pass
    out: list[Answer] = []
    for obs, info in zip(observations, infos):
        try:
            out.append((as_text(agent.act(obs, info)), None))
        except Exception as exc:  # noqa: BLE001
            out.append((None, error_text(exc)))
    return out


def make_record(sample: Any, completion: str | None, error: str | None, result: ScoreResult,
                protocol: MetricProtocol) -> dict[str, Any]:
    """One samples.jsonl line. ``iou`` is the metric IoU under the run's protocol."""
    iou, _ = per_sample_iou([result.intersection], [result.union], [result.gt_empty], [result.pred_empty],
                            [result.parsed_ok], [result.answer_empty], protocol.empty_rule)
    return {
        "sample_id": sample.sample_id,
        "image_id": sample.image_id,
        "question": sample.question,
        "completion": completion,
        "parsed_ok": bool(result.parsed_ok),
        "iou": float(iou[0]),
        "intersection": int(result.intersection),
        "union": int(result.union),
        "gt_empty": bool(result.gt_empty),
        "pred_empty": bool(result.pred_empty),
        "answer_empty": bool(result.answer_empty),
        "reward": float(result.reward),
        "reward_components": {k: float(v) for k, v in result.reward_components.items()},
        "json_ok": bool(result.json_ok),
        "think_ok": bool(result.think_ok),
        "prompts": result.prompts,
        "parse_error": result.error,
        "error": error,
    }


def score_in_protocol_frame(job: Job, scorer: Scorer,
                            items: Sequence[tuple[ScoringFrames, Sequence[str]]]) -> list[list[ScoreResult]]:
    """Score each sample's completions in the protocol's scoring frame. In the agent's
    frame this is :meth:`Scorer.score_many`; at the original size the answers are parsed in
    the agent's frame (clipped to it under ``clipped`` geometry), their prompts mapped back,
    and the original image segmented once for all of them (:meth:`Scorer.score_parsed`)."""
    if job.protocol.iou_frame == "agent":
        return scorer.score_many([(f.image, f.gt_mask, list(c)) for f, c in items])
    groups = []
    for f, completions in items:
        h, w = f.framed.gt_mask.shape
        answers = []
        for c in completions:
            answer, json_ok = scorer.parse(c, (w, h))
            answers.append((map_answer(answer, f.scale), json_ok))
        groups.append((f.image, f.gt_mask, answers))
    return scorer.score_parsed(groups)


def frames_of(job: Job, index: int) -> ScoringFrames:
    p = job.protocol
    return load_scoring_frames(job.samples[index], p.image_size, p.resize, p.iou_frame)


def observation(framed: Any, job: Job, agent: Agent) -> tuple[dict, dict]:
    """What the env gives the agent, with private copies of the arrays: one agent must
    not be able to alter the image (or GT) that the next agent sees or that is scored."""
    obs, info = make_observation(framed, job.prompt_variant, privileged=agent.privileged)
    obs["image"] = obs["image"].copy()
    if "gt_mask" in info:
        info["gt_mask"] = info["gt_mask"].copy()
    return obs, info


def tile(frames: ScoringFrames, record: Mapping[str, Any], result: ScoreResult) -> np.ndarray:
    """The overlay in the scoring frame (image, GT and prompts as the segmenter saw them)."""
    caption = f"{record['sample_id']}  IoU {record['iou']:.2f}"
    return tensorboard_log.make_tile(frames.image, frames.gt_mask, result.mask, result.prompts, caption,
                                     question=record.get("question"))


__all__ = ["Batch", "Job", "PARSER_MODE", "Run", "act", "act_stage", "make_record", "make_scorers", "open_batch",
           "record_stage", "score_in_protocol_frame", "score_stage"]
