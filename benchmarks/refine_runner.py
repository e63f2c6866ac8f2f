"""``t2s bench --max-turns K``: look-and-refine episodes in the benchmark (docs/refine.md).

Each (run, sample) is a :class:`t2s_env.refine.RefineSession` with the rules of the env's
multi-turn form; the agents answer turn by turn (:meth:`Agent.act_turn_batch`) with the new
observation (the mask in force, its overlay, the turn, the answers so far) and the grown
messages; every session of a sample shares one image embedding (encoded once for all runs
and turns). A record is today's samples.jsonl line for the final answer in force, plus
``turns`` (one entry per turn taken), ``turns_used`` and ``return``.

:func:`refine_metrics` summarises the turns: gIoU/cIoU after each turn (an episode that
ended carries its final answer forward), NoC@85/NoC@90 (the first turn whose IoU reaches
0.85/0.90; K when never reached, as the interactive-segmentation literature counts the
budget for a sample that is not reached), mean turns used, and the share of episodes whose
final IoU is below their best.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from t2s_env import MetricProtocol, Scorer, summarize_records
from t2s_env.framing import map_answer
from t2s_env.instructions import feedback_turn
from t2s_env.refine import RefineSession
from t2s_env.render import feedback_overlay

from think2seg.agents import Agent

from .runner import MAX_REPORTED_FAILURES, Batch, Job, as_text, error_text, make_record, observation, tile

#: what a turn entry of a record holds besides completion/error/stopped/reward (the metric fields)
TURN_KEYS = ("iou", "intersection", "union", "pred_empty", "answer_empty", "parsed_ok", "json_ok", "think_ok",
             "reward_components", "prompts", "parse_error")
NOC_THRESHOLDS = (0.85, 0.90)


def act_turns(agent: Agent, observations: list[dict], infos: list[dict]) -> list[tuple[str | None, str | None]]:
    """(completion, error) per episode, as :func:`benchmarks.runner.act` but per turn."""
    try:
        answers = agent.act_turn_batch(observations, infos)
        if not isinstance(answers, (list, tuple)) or len(answers) != len(observations):
            raise ValueError("act_turn_batch answered the wrong number of episodes")
        return [(as_text(a), None) for a in answers]
    except Exception:  # noqa: BLE001 - an agent's bug must not end the run
        pass
    out: list[tuple[str | None, str | None]] = []
    for obs, info in zip(observations, infos):
        try:
            out.append((as_text(agent.act_turn(obs, info)), None))
        except Exception as exc:  # noqa: BLE001
            out.append((None, error_text(exc)))
    return out


def _to_view(array: np.ndarray, shape: tuple[int, int], interpolation: int) -> np.ndarray:
    if array.shape[:2] == shape:
        return array
    return cv2.resize(array, (shape[1], shape[0]), interpolation=interpolation)


def turn_observation(base: tuple[dict, dict], session: RefineSession, messages: list, view: Any,
                     job: Job) -> tuple[dict, dict]:
    """The agent's observation and info for the session's next turn, in the view frame."""
    obs, info = base
    shape = view.image.shape[:2]
    mask = _to_view(session.mask.astype(np.uint8), shape, cv2.INTER_NEAREST)
    overlay = feedback_overlay(session.image, session.mask, [p.to_dict() for p in session.prompts_in_force])
    obs = dict(obs, image=obs["image"].copy(), mask=mask, overlay=_to_view(overlay, shape, cv2.INTER_AREA),
               turn=session.turn, answers=tuple(session.answers))
    info = dict(info, messages=[dict(m) for m in messages], max_turns=job.max_turns, refine_mode=job.refine_mode)
    if "gt_mask" in info:
        info["gt_mask"] = info["gt_mask"].copy()
    return obs, info


def process_refine_batch(job: Job, batch: Batch, scorers: tuple[Scorer, Scorer], progress: Any) -> None:
    """Every run's episodes on the batch's samples, turn by turn; then their records."""
    render = any(i < job.tb_samples for i in batch.indices) and job.tensorboard
    scorer = scorers[1] if render else scorers[0]
    sessions: dict[tuple[int, int], RefineSession] = {}
    bases: dict[tuple[int, int], tuple[dict, dict]] = {}
    messages: dict[tuple[int, int], list] = {}
    turns: dict[tuple[int, int], list[dict[str, Any]]] = {}
    embeddings: dict[int, Any] = {}
    for k, (run, idx) in enumerate(zip(job.runs, batch.need)):
        for i in idx:
            f = batch.frames[i]
            h, w = f.framed.gt_mask.shape
            mapped = job.protocol.iou_frame != "agent"
            sessions[(k, i)] = RefineSession(
                scorer, f.image, f.gt_mask, max_turns=job.max_turns, mode=job.refine_mode,
                parse_size=(w, h) if mapped else None,
                answer_map=functools.partial(map_answer, scale=f.scale) if mapped else None,
            )
            bases[(k, i)] = observation(f.framed, job, run.agent)
            messages[(k, i)] = list(bases[(k, i)][1]["messages"])
            turns[(k, i)] = []
    for _ in range(job.max_turns):
        for k, run in enumerate(job.runs):
            active = [i for i in batch.need[k] if not sessions[(k, i)].done]
            if not active:
                continue
            pairs = [turn_observation(bases[(k, i)], sessions[(k, i)], messages[(k, i)], batch.frames[i].framed, job)
                     for i in active]
            got = act_turns(run.agent, [p[0] for p in pairs], [p[1] for p in pairs])
            for i, (completion, error) in zip(active, got):
                slot = (k, i)
                if error is not None:
                    run.failures += 1
                    if run.failures <= MAX_REPORTED_FAILURES:
                        progress.write(f"t2s bench: {run.label} raised on {job.samples[i].sample_id} ({error}); "
                                       "recorded as a failure", file=sys.stderr)
                session = sessions[slot]
                if session.embedding is None and i in embeddings:
                    session.embedding = embeddings[i]
                result = session.step(completion or "")
                if session.embedding is not None:
                    embeddings.setdefault(i, session.embedding)
                full = make_record(job.samples[i], completion, error, result.score, job.protocol)
                entry = {"completion": completion, "error": error, "stopped": result.stopped,
                         "reward": float(result.reward), **{key: full[key] for key in TURN_KEYS}}
                turns[slot].append(entry)
                messages[slot].append({"role": "assistant", "content": session.answers[-1]})
                if not session.done:
                    messages[slot].append(feedback_turn(job.refine_mode))
    new: dict[int, list[dict[str, Any]]] = {}
    for i in batch.indices:
        for k in range(len(job.runs)):
            if i not in batch.need[k]:
                continue
            session, entries = sessions[(k, i)], turns[(k, i)]
            answered = [e for e in entries if not e["stopped"]]
            errors = [e["error"] for e in entries if e["error"]]
            record = make_record(job.samples[i], answered[-1]["completion"], errors[0] if errors else None,
                                 session.last_score, job.protocol)
            record.update(turns=entries, turns_used=session.turn, stopped=bool(entries[-1]["stopped"]),
                          refine_mode=job.refine_mode, max_turns=job.max_turns, **{"return": float(session.returns)})
            new.setdefault(k, []).append(record)
            if render and i < job.tb_samples:
                job.runs[k].tiles[i] = tile(batch.frames[i], record, session.last_score)
    for k, run in enumerate(job.runs):
        if k in new:
            run.rundir.append(new[k])
            run.done.update((r["sample_id"], r) for r in new[k])
    progress.update(sum(len(idx) for idx in batch.need))


def turn_ious(record: Mapping[str, Any], max_turns: int) -> list[float]:
    """The record's metric IoU after each of the K turns (carried forward after the end)."""
    entries = record.get("turns") or [record]
    return [float(entries[min(t, len(entries) - 1)]["iou"]) for t in range(max_turns)]


def noc(ious: Sequence[float], threshold: float) -> int:
    """Turns to reach ``threshold`` (1-based); the budget K when never reached."""
    for t, v in enumerate(ious):
        if v >= threshold:
            return t + 1
    return len(ious)


def refine_metrics(records: Sequence[Mapping[str, Any]], protocol: MetricProtocol, max_turns: int,
                   refine_mode: str) -> dict[str, Any]:
    """metrics.json's ``refine`` block (see the module docstring)."""
    per_turn = []
    for t in range(max_turns):
        at_t = []
        for r in records:
            entries = r.get("turns") or [r]
            e = entries[min(t, len(entries) - 1)]
            at_t.append({**r, **{key: e[key] for key in TURN_KEYS if key in e}})
        s = summarize_records(at_t, protocol)
        per_turn.append({"turn": t + 1, "gIoU": s.get("gIoU"), "cIoU": s.get("cIoU")})
    ious = [turn_ious(r, max_turns) for r in records]
    best = [max(v[: max(1, int(r.get("turns_used") or 1))]) for v, r in zip(ious, records)]
    out: dict[str, Any] = {
        "max_turns": max_turns,
        "mode": refine_mode,
        "per_turn": per_turn,
        "mean_turns": float(np.mean([int(r.get("turns_used") or 1) for r in records])) if records else None,
        "final_below_best": float(np.mean([v[-1] < b - 1e-12 for v, b in zip(ious, best)])) if records else None,
        "mean_return": float(np.mean([r.get("return", r["reward"]) for r in records])) if records else None,
    }
    for th in NOC_THRESHOLDS:
        out[f"NoC@{round(th * 100)}"] = float(np.mean([noc(v, th) for v in ious])) if records else None
    return out


__all__ = ["NOC_THRESHOLDS", "act_turns", "noc", "process_refine_batch", "refine_metrics", "turn_ious"]
