"""A job of ``t2s bench`` from start to end: its batches through the stages of
:mod:`.runner` (or, for episodes of several turns, of :mod:`.refine_runner`), then each run
finalised (:func:`finalize`: metrics.json, TensorBoard, one database transaction). A job
that cannot go on (Ctrl-C, SIGTERM, bad data, a full disk) stops its runs with the command
that finishes them (:func:`stop_runs`).
"""

from __future__ import annotations

import errno
import sys
from typing import Any, Sequence

import numpy as np

from t2s_env import Scorer, T2SError, summarize_records
from t2s_env.metrics import bootstrap_intervals

from . import tensorboard_log
from .refine_runner import process_refine_batch, refine_metrics
from .results_store import ResultsStore, RunRow
from .rundir import utc_now
from .runner import Job, Run, act_stage, frames_of, make_scorers, open_batch, record_stage, score_in_protocol_frame, score_stage, tile

#: the bootstrap intervals of metrics.json use this seed (recorded beside them)
BOOTSTRAP_SEED = 0


def process_batch(job: Job, indices: list[int], scorers: tuple[Scorer, Scorer], progress: Any) -> None:
    """Act, score and record one batch of samples for every run that still needs them."""
    batch = open_batch(job, indices)
    if batch is None:
        return
    if job.max_turns > 1:
        process_refine_batch(job, batch, scorers, progress)
        return
    answers = act_stage(job, batch, progress)
    render = any(i < job.tb_samples for i in batch.indices) and job.tensorboard
    results = score_stage(job, batch, answers, scorers[1] if render else scorers[0])
    record_stage(job, batch, answers, results, render)
    progress.update(sum(len(idx) for idx in batch.need))


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


__all__ = ["BOOTSTRAP_SEED", "execute", "finalize", "process_batch", "segmenter_label", "stop_runs"]
