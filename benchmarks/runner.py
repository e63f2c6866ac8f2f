"""Executing the jobs of ``t2s bench``: batch by batch act, score, record; then finalise.

A :class:`Job` holds every run of one dataset. Its samples are processed in batches, and
each batch goes through three stages, one function each:

1. :func:`act_stage`: every run that still needs a sample answers it (``act_batch``; a
   raising batch is retried sample by sample, so only the raising sample fails);
2. :func:`score_stage`: all the runs' answers are scored in one :class:`t2s_env.Scorer`
   call, one group per image, so the segmenter encodes each image once for every agent;
3. :func:`record_stage`: each run appends its records to ``samples.jsonl`` (fsynced).

:func:`process_batch` chains them once; an episode of several turns repeats the chain per
turn on the same :class:`Batch` (the next observations from the last results).

After its last sample a run is finalised (:func:`finalize`: metrics.json, TensorBoard,
one database transaction). A job that cannot go on (Ctrl-C, SIGTERM, bad data, a full
disk) stops its runs with the command that finishes them (:func:`stop_runs`).
"""

from __future__ import annotations

import errno
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from t2s_env import MetricProtocol, Scorer, T2SError, make_observation, summarize_records
from t2s_env.framing import ScoringFrames, load_scoring_frames, map_answer
from t2s_env.metrics import bootstrap_intervals, per_sample_iou
from t2s_env.scoring import ScoreResult, completion_text
from t2s_env.segmenters import Segmenter

from think2seg.agents import Agent

from . import tensorboard_log
from .results_store import ResultsStore, RunRow
from .rundir import RunDir, RunLock, utc_now

#: the evaluation parser mode (training rewards use strict; see t2s_env.Scorer)
PARSER_MODE = "lenient"
#: the bootstrap intervals of metrics.json use this seed (recorded beside them)
BOOTSTRAP_SEED = 0
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


def process_batch(job: Job, indices: list[int], scorers: tuple[Scorer, Scorer], progress: Any) -> None:
    """Act, score and record one batch of samples for every run that still needs them."""
    batch = open_batch(job, indices)
    if batch is None:
        return
    if job.max_turns > 1:
        from .refine_runner import process_refine_batch

        process_refine_batch(job, batch, scorers, progress)
        return
    answers = act_stage(job, batch, progress)
    render = any(i < job.tb_samples for i in batch.indices) and job.tensorboard
    results = score_stage(job, batch, answers, scorers[1] if render else scorers[0])
    record_stage(job, batch, answers, results, render)
    progress.update(sum(len(idx) for idx in batch.need))


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


# -- a job from start to end ------------------------------------------------------------------

def execute(job: Job, store: ResultsStore, show_progress: bool = True) -> None:
    """Run every run of the job to completion (or until interrupted: then say how to resume)."""
    from tqdm.auto import tqdm

    scorers = make_scorers(job)
    total = len(job.samples) * len(job.runs)
    started: list[Run] = []
    try:
        for run in job.runs:
            if not run.rundir.path.exists():
                run.lock = run.rundir.create(run.config)
            elif run.config.get("status") != "running":
                run.config.update(status="running", error=None)
                run.rundir.write_config(run.config)
            started.append(run)
            run.done = {r["sample_id"]: r for r in run.rundir.open_for_append()}
    except BaseException as exc:
        stop_runs(job, started, store, exc)
    initial = sum(len(run.done) for run in job.runs)
    desc = f"{job.dataset} × {len(job.runs)} agent{'s' if len(job.runs) != 1 else ''}"
    progress = tqdm(total=total, initial=initial, desc=desc, unit="answer", disable=not show_progress,
                    file=sys.stderr, dynamic_ncols=True)
    try:
        for start in range(0, len(job.samples), job.batch_size):
            process_batch(job, list(range(start, min(start + job.batch_size, len(job.samples)))), scorers, progress)
    except BaseException as exc:
        progress.close()
        stop_runs(job, job.runs, store, exc)
    progress.close()
    for k, run in enumerate(job.runs):
        run.rundir.close()
        try:
            finalize(job, run, store, scorers[1])
        except BaseException as exc:  # this run and the ones not finalised yet
            stop_runs(job, job.runs[k:], store, exc)


def fill_missing_tiles(job: Job, run: Run, scorer: Scorer) -> None:
    """Tiles of samples scored before a resume: re-score their recorded completions."""
    want = [i for i in range(min(job.tb_samples, len(job.samples))) if i not in run.tiles]
    if not want:
        return
    frames = {i: frames_of(job, i) for i in want}
    records = [run.done[job.samples[i].sample_id] for i in want]
    results = score_in_protocol_frame(job, scorer, [(frames[i], [r["completion"] or ""]) for i, r in zip(want, records)])
    for i, r, res in zip(want, records, results):
        run.tiles[i] = tile(frames[i], r, res[0])


def segmenter_label(job: Job) -> str:
    """The leaderboard's segmenter name: the spec, marked when its weights are random (a
    smoke test, not a result)."""
    return job.segmenter_spec + (" (random weights)" if job.segmenter.describe().get("random_weights") else "")


def finalize(job: Job, run: Run, store: ResultsStore, render_scorer: Scorer) -> dict[str, Any]:
    """metrics.json, TensorBoard, then the database row (one transaction), then status."""
    records = [run.done[s.sample_id] for s in job.samples]
    metrics = summarize_records(records, job.protocol)
    rewards = [r["reward"] for r in records]
    metrics["mean_reward"] = float(np.mean(rewards)) if rewards else None
    metrics["n_agent_errors"] = sum(1 for r in records if r.get("error"))
    metrics["intervals"] = bootstrap_intervals(records, job.protocol, seed=BOOTSTRAP_SEED)
    metrics["protocol"] = job.protocol.to_dict()
    metrics["partial"] = bool(run.config.get("partial"))
    metrics.update(run_id=run.run_id, agent=run.label, dataset=job.dataset, segmenter=segmenter_label(job))
    if job.max_turns > 1:
        from .refine_runner import refine_metrics

        metrics["refine"] = refine_metrics(records, job.protocol, job.max_turns, job.refine_mode)
    run.rundir.write_metrics(metrics)
    if job.tensorboard:
        if job.max_turns == 1:  # a refine run's tiles come from its turns, not a one-shot re-score
            fill_missing_tiles(job, run, render_scorer)
        summary = f"agent `{run.label}` on `{job.dataset}`, segmenter `{segmenter_label(job)}`, protocol `{job.protocol.name}`"
        tiles = [run.tiles[i] for i in sorted(run.tiles)]
        tensorboard_log.write_run(store.tb_dir / run.run_id, metrics, tiles, summary)
    finished = utc_now()
    store.insert_run(
        RunRow(
            run_id=run.run_id,
            agent=run.label,
            segmenter=segmenter_label(job),
            dataset=job.dataset,
            protocol=job.protocol.name,
            n=metrics["n"],
            n_failed=metrics["n_failed"],
            metrics={k: metrics.get(k) for k in ("gIoU", "cIoU", "Pr@0.5", "Pr@0.6", "Pr@0.7", "Pr@0.8", "Pr@0.9", "N-Acc")},
            mean_reward=metrics["mean_reward"],
            created_at=run.config.get("created_at"),
            finished_at=finished,
            git_commit=(run.config.get("git") or {}).get("commit"),
            config={k: run.config.get(k) for k in ("agent", "segmenter", "protocol", "prompt_variant", "limit", "seed",
                                                   "root", "n_samples", "n_available")},
            identity=run.config.get("identity"),
            partial=bool(run.config.get("partial")),
            extra={"intervals": {k: metrics["intervals"].get(k) for k in ("gIoU", "cIoU", "Pr@0.5")},
                   "fingerprints": run.config.get("fingerprints") or {}},
        )
    )
    run.config.update(status="complete", finished_at=finished)
    run.rundir.write_config(run.config)
    return metrics


def stop_runs(job: Job, runs: Sequence[Run], store: ResultsStore, exc: BaseException) -> None:
    """A job that cannot go on: close its runs and say how to finish each. An interruption
    (Ctrl-C, SIGTERM) marks them ``interrupted``; bad data or a full disk ``failed``, with
    the reason; both resume as they are. Re-raises: a T2SError (one line at the CLI) for
    errors."""
    failed = not isinstance(exc, (KeyboardInterrupt, SystemExit))
    if isinstance(exc, OSError):
        why = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
        where = f" writing {exc.filename}" if exc.filename else ""
        reason = f"{why}{where}"
    else:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    hints = []
    for run in runs:
        run.rundir.close()
        if failed:
            run.config.update(status="failed", error=reason[:500])
        else:
            run.config["status"] = "interrupted"
        try:
            run.rundir.write_config(run.config)
        except OSError:  # e.g. still no space: the folder keeps its previous status
            pass
        hints.append(f"t2s bench --out {store.out} --resume {run.run_id}")
        print(f"t2s bench: run {run.run_id} stopped after {len(run.done)}/{len(job.samples)} samples"
              + (f" ({reason})" if failed else "") + f"; finish it with: {hints[-1]}", file=sys.stderr)
    if not failed:
        raise exc
    if isinstance(exc, (T2SError, OSError)):
        fix = "free some space, then" if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT) \
            else "fix it, then"
        if not hints:  # it stopped before any run folder was made: nothing to resume
            raise T2SError(f"{reason}; {fix} run the command again") from None
        hint = hints[0] if len(hints) == 1 else f"{hints[0]} (and the other runs above)"
        raise T2SError(f"{reason}; {fix} finish with: {hint}") from None
    raise exc


__all__ = ["BOOTSTRAP_SEED", "Batch", "Job", "PARSER_MODE", "Run", "act", "act_stage", "execute", "finalize",
           "make_record", "make_scorers", "open_batch", "process_batch", "record_stage", "score_in_protocol_frame",
           "score_stage", "segmenter_label", "stop_runs"]
