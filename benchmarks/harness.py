"""``t2s bench``: run agents on datasets, score them, record the results.

    t2s bench                                   # the main job: every baseline and oracle on
                                                # synthetic:val with grabcut, then the leaderboard
    t2s bench --dataset earthreason:test --root DATA --agents oracle-box,center-box:0.3
    t2s bench --out results --resume RUN_ID     # finish a run that was killed
    t2s bench --out results --resume A B,C      # finish several, one after the other

One run per (agent, dataset). The agents of one dataset advance together, batch by batch:
each image is loaded once, every agent answers it (``act_batch``), and all their answers
are scored in one :class:`t2s_env.Scorer` call, so the segmenter encodes each image once
for all agents. Each run appends its records to ``samples.jsonl`` after every batch and is
finalised (metrics.json, TensorBoard, one database transaction) after its last sample.
One process at a time executes or resumes a run (the run folder's lock); Ctrl-C or SIGTERM
leave it ``interrupted`` with the command that finishes it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import errno
import hashlib
import importlib.metadata
import inspect
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from t2s_env import (
    ConfigError,
    MetricProtocol,
    Scorer,
    T2SError,
    get_protocol,
    get_variant,
    load_framed,
    make_dataset,
    make_observation,
    make_segmenter,
    summarize_records,
)
from t2s_env.datasets import parse_dataset_spec
from t2s_env.framing import ScoringFrames as Frames, load_scoring_frames as load_frames, map_answer
from t2s_env.coords import check_frame_match
from t2s_env.instructions import DEFAULT_VARIANT, coord_variant as frame_variant
from t2s_env.metrics import bootstrap_intervals, per_sample_iou
from t2s_env.protocol import PROTOCOLS, protocol_fields, protocol_with_options
from t2s_env.scoring import ScoreResult, completion_text
from t2s_env.segmenters import SEGMENTERS, Segmenter

import think2seg.agents as agent_registry
from think2seg.agents import Agent

from . import tensorboard_log
from .provenance import dataset_fingerprint, model_fingerprint, run_identity, segmenter_fingerprint
from .results_store import ResultsStore, RunRow
from .rundir import RunDir, RunLock

DEFAULT_DATASET = "synthetic:val"
DEFAULT_OUT = "results"
DEFAULT_BATCH_SIZE = 8
DEFAULT_TB_SAMPLES = 16
#: the bootstrap intervals of metrics.json use this seed (recorded beside them)
BOOTSTRAP_SEED = 0
#: the first failures of a run are reported on stderr; the rest only in samples.jsonl
MAX_REPORTED_FAILURES = 3
#: the evaluation parser mode (training rewards use strict; see t2s_env.Scorer)
PARSER_MODE = "lenient"


# -- configuration ------------------------------------------------------------------------

def default_segmenter(dataset: str) -> str:
    """Weightless GrabCut for the synthetic set, SAM2.1 small (the paper's) otherwise."""
    return "grabcut" if parse_dataset_spec(dataset)[0] == "synthetic" else "sam2:small"


def check_segmenter_name(spec: str) -> None:
    if str(spec).partition(":")[0] not in SEGMENTERS:
        raise ConfigError(f"unknown segmenter {spec!r}; valid: {', '.join(SEGMENTERS)} (sam2 as sam2:<size>)")


def split_list(values: Sequence[str] | None) -> list[str]:
    """Repeated and comma-separated option values, in order, without duplicates."""
    out: list[str] = []
    for v in values or ():
        for item in str(v).split(","):
            item = item.strip()
            if item and item not in out:
                out.append(item)
    return out


def agent_specs_from_yaml(path: str) -> list[Any]:
    """Agent specs from YAML: a list (or ``{agents: [...]}``) of ``name[:arg]`` strings or
    mappings ``{name: ..., option: value}``."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read agent config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"agent config {path} is not valid YAML{where}: {problem}; fix the file") from None
    if isinstance(data, dict) and "agents" in data:
        data = data["agents"]
    if isinstance(data, (str, dict)):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(a, (str, dict)) and (isinstance(a, str) or "name" in a) for a in data):
        raise ConfigError(f"agent config {path} must list agents as 'name[:arg]' or {{name: ..., options...}}")
    return data


def _agent_name(spec: Any) -> str:
    """A built-in or entry-point name, or a plug-in's ``module.path:Class``."""
    return agent_registry.split_spec(str(spec["name"] if isinstance(spec, Mapping) else spec))[0]


def build_agent(spec: Any, prompt_variant: str) -> tuple[Agent, dict[str, Any]]:
    """The agent for a spec, with the run's prompt variant when the agent takes one and
    the spec does not set it. Returns the agent and the recipe that rebuilds it."""
    options: dict[str, Any] = {}
    try:
        cls = agent_registry.agent_class(_agent_name(spec))
    except ImportError as exc:  # e.g. qwen without transformers
        raise ConfigError(f"agent {_agent_name(spec)!r} is not available here: {exc}") from None
    params = inspect.signature(cls.__init__).parameters
    given = spec if isinstance(spec, Mapping) else {}
    if "prompt_variant" in params and "prompt_variant" not in given:
        options["prompt_variant"] = prompt_variant
    agent = agent_registry.make_agent(dict(spec) if isinstance(spec, Mapping) else spec, **options)
    return agent, {"spec": dict(spec) if isinstance(spec, Mapping) else str(spec), "options": options,
                   "source": agent_registry.agent_source(spec)}


def rebuild_agent(recipe: Mapping[str, Any]) -> Agent:
    return agent_registry.make_agent(recipe["spec"], **dict(recipe.get("options") or {}))


def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]+", "-", text).strip("-")[:limit] or "x"


def new_run_id(agent_label: str, dataset: str) -> str:
    """``<UTC timestamp>-<agent>-<dataset>-<6 hex>``: readable, sortable, unique."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    token = hashlib.sha256(f"{agent_label}|{dataset}|{time.time_ns()}|".encode() + os.urandom(8)).hexdigest()[:6]
    return f"{stamp}-{slug(agent_label)}-{slug(dataset)}-{token}"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("think2seg", "torch", "numpy", "opencv-python-headless", "pillow", "gymnasium",
                 "json-repair", "sam2", "transformers", "trl"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def git_state() -> dict[str, Any]:
    """Commit and dirtiness of the source tree the harness runs from (None outside git)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return {"commit": None}
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here,
                               capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# -- one run ------------------------------------------------------------------------------

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


def run_config(
    run_id: str,
    agent: Agent,
    recipe: Mapping[str, Any],
    dataset: str,
    root: str | None,
    n_samples: int,
    limit: int | None,
    seed: int,
    segmenter_spec: str,
    segmenter_options: Mapping[str, Any],
    segmenter: Segmenter,
    protocol: MetricProtocol,
    prompt_variant: str,
    argv: Sequence[str],
    data_fingerprint: Mapping[str, Any] | None = None,
    n_available: int | None = None,
) -> dict[str, Any]:
    """Everything run.yaml records; ``--resume`` rebuilds the run from it. A run of fewer
    samples than its split holds (``--limit``) is partial."""
    agent_config = agent.config()
    describe = segmenter.describe()
    config = {
        "run_id": run_id,
        "status": "running",
        "created_at": _now(),
        "finished_at": None,
        "dataset": dataset,
        "root": root,
        "n_samples": n_samples,
        "limit": limit,
        "seed": seed,
        "prompt_variant": prompt_variant,
        "parser_mode": PARSER_MODE,
        "protocol": protocol.to_dict(),
        "partial": bool(limit is not None and n_available is not None and n_samples < n_available),
        "n_available": n_available,
        "segmenter": {"spec": segmenter_spec, "options": dict(segmenter_options), **describe},
        "agent": {"label": agent.label, "privileged": bool(agent.privileged), "config": agent_config, **recipe},
        "fingerprints": {
            "data": dict(data_fingerprint or {}),
            "model": model_fingerprint(agent_config),
            "segmenter": segmenter_fingerprint(describe),
        },
        "versions": package_versions(),
        "git": git_state(),
        "command": ["t2s", "bench", *argv],
    }
    config["identity"] = run_identity(config)
    return config


# -- acting and scoring -------------------------------------------------------------------

def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _as_text(completion: Any) -> str:
    text = completion_text(completion)
    if not isinstance(text, str):
        raise TypeError(f"the agent returned {type(completion).__name__}, not a completion string")
    return text


def act(agent: Agent, observations: list[dict], infos: list[dict]) -> list[tuple[str | None, str | None]]:
    """(completion, error) per sample. ``act_batch`` first; if it raises (or answers the
    wrong number of samples), each sample is retried with ``act`` so that only the
    raising sample fails. KeyboardInterrupt and SystemExit pass through."""
    try:
        answers = agent.act_batch(observations, infos)
        if not isinstance(answers, (list, tuple)) or len(answers) != len(observations):
            raise ValueError(f"act_batch returned {len(answers) if hasattr(answers, '__len__') else answers!r} answers for {len(observations)} samples")
        return [(_as_text(a), None) for a in answers]
    except Exception:  # noqa: BLE001 - an agent's bug must not end the run
        pass
    out: list[tuple[str | None, str | None]] = []
    for obs, info in zip(observations, infos):
        try:
            out.append((_as_text(agent.act(obs, info)), None))
        except Exception as exc:  # noqa: BLE001
            out.append((None, _error_text(exc)))
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


def score_frames(job: Job, scorer: Scorer, items: Sequence[tuple[Frames, Sequence[str]]]) -> list[list[ScoreResult]]:
    """Score each sample's completions in the protocol's scoring frame. In the agent's
    frame this is the scorer's own path; at the original size the answers are parsed in
    the agent's frame (clipped to it under ``clipped`` geometry), their prompts mapped back,
    and the original image segmented once for all of them."""
    if job.protocol.iou_frame == "agent":
        return scorer.score_many([(f.image, f.gt_mask, list(c)) for f, c in items])
    parsed = []
    for f, completions in items:
        h, w = f.framed.gt_mask.shape
        answers = []
        for c in completions:
            answer, json_ok = scorer.parse(c, (w, h))
            answers.append((map_answer(answer, f.scale), json_ok))
        parsed.append(answers)
    results: list[list[ScoreResult] | None] = [None] * len(items)
    need = [g for g, answers in enumerate(parsed) if any(a.ok and a.prompts for a, _ in answers)]
    step = scorer.encode_batch_size
    for start in range(0, len(need), step):
        chunk = need[start:start + step]
        embeddings = scorer.segmenter.encode_batch([items[g][0].image for g in chunk])
        for g, emb in zip(chunk, embeddings):
            results[g] = scorer._finish(items[g][0].gt_mask, parsed[g], emb)
        del embeddings
    for g, res in enumerate(results):
        if res is None:
            results[g] = scorer._finish(items[g][0].gt_mask, parsed[g], None)
    return results  # type: ignore[return-value]


def _frames(job: Job, index: int) -> Frames:
    p = job.protocol
    return load_frames(job.samples[index], p.image_size, p.resize, p.iou_frame)


def _observation(framed: Any, job: Job, agent: Agent) -> tuple[dict, dict]:
    """What the env gives the agent, with private copies of the arrays: one agent must
    not be able to alter the image (or GT) that the next agent sees or that is scored."""
    obs, info = make_observation(framed, job.prompt_variant, privileged=agent.privileged)
    obs["image"] = obs["image"].copy()
    if "gt_mask" in info:
        info["gt_mask"] = info["gt_mask"].copy()
    return obs, info


def _tile(frames: Frames, record: Mapping[str, Any], result: ScoreResult) -> np.ndarray:
    """The overlay in the scoring frame (image, GT and prompts as the segmenter saw them)."""
    caption = f"{record['sample_id']}  IoU {record['iou']:.2f}"
    return tensorboard_log.make_tile(frames.image, frames.gt_mask, result.mask, result.prompts, caption,
                                     question=record.get("question"))


def process_batch(job: Job, indices: list[int], scorers: tuple[Scorer, Scorer], progress: Any) -> None:
    """Act and score one batch of samples for every run that still needs them."""
    need = {id(run): [i for i in indices if job.samples[i].sample_id not in run.done] for run in job.runs}
    todo = sorted({i for idx in need.values() for i in idx})
    if not todo:
        return
    frames = {i: _frames(job, i) for i in todo}
    answers: dict[tuple[int, int], tuple[str | None, str | None]] = {}
    for run in job.runs:
        idx = need[id(run)]
        if not idx:
            continue
        pairs = [_observation(frames[i].framed, job, run.agent) for i in idx]
        got = act(run.agent, [p[0] for p in pairs], [p[1] for p in pairs])
        for i, (completion, error) in zip(idx, got):
            answers[(id(run), i)] = (completion, error)
            if error is not None:
                run.failures += 1
                if run.failures <= MAX_REPORTED_FAILURES:
                    progress.write(f"t2s bench: {run.label} raised on {job.samples[i].sample_id} ({error}); "
                                   "recorded as a failure", file=sys.stderr)
    # One group per image holding every run's answer: the image is encoded once for all.
    order = [[run for run in job.runs if i in need[id(run)]] for i in todo]
    groups = [(frames[i], [answers[(id(run), i)][0] or "" for run in runs]) for i, runs in zip(todo, order)]
    render = any(i < job.tb_samples for i in todo) and job.tensorboard
    results = score_frames(job, scorers[1] if render else scorers[0], groups)
    new: dict[int, list[dict[str, Any]]] = {}
    for i, runs, res in zip(todo, order, results):
        for run, result in zip(runs, res):
            completion, error = answers[(id(run), i)]
            record = make_record(job.samples[i], completion, error, result, job.protocol)
            new.setdefault(id(run), []).append(record)
            if render and i < job.tb_samples:
                run.tiles[i] = _tile(frames[i], record, result)
    for run in job.runs:
        if id(run) in new:
            run.rundir.append(new[id(run)])
            run.done.update((r["sample_id"], r) for r in new[id(run)])  # done once on disk
    progress.update(sum(len(v) for v in need.values()))


def fill_missing_tiles(job: Job, run: Run, scorer: Scorer) -> None:
    """Tiles of samples scored before a resume: re-score their recorded completions."""
    want = [i for i in range(min(job.tb_samples, len(job.samples))) if i not in run.tiles]
    if not want:
        return
    frames = {i: _frames(job, i) for i in want}
    records = [run.done[job.samples[i].sample_id] for i in want]
    results = score_frames(job, scorer, [(frames[i], [r["completion"] or ""]) for i, r in zip(want, records)])
    for i, r, res in zip(want, records, results):
        run.tiles[i] = _tile(frames[i], r, res[0])


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
    run.rundir.write_metrics(metrics)
    if job.tensorboard:
        fill_missing_tiles(job, run, render_scorer)
        summary = f"agent `{run.label}` on `{job.dataset}`, segmenter `{segmenter_label(job)}`, protocol `{job.protocol.name}`"
        tiles = [run.tiles[i] for i in sorted(run.tiles)]
        tensorboard_log.write_run(store.tb_dir / run.run_id, metrics, tiles, summary)
    finished = _now()
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


def make_scorers(job: Job) -> tuple[Scorer, Scorer]:
    """The job's two scorers (plain, and keeping masks for TensorBoard tiles), built in this
    one place for one-process and sharded runs: every scoring field comes from the protocol."""
    p = job.protocol
    common = dict(parser_mode=PARSER_MODE, encode_batch_size=job.batch_size, prompt_geometry=p.prompt_geometry,
                  coord_frame=p.coord_frame)
    return (Scorer(job.segmenter, job.prompt_variant, **common),
            Scorer(job.segmenter, job.prompt_variant, keep_masks=True, **common))


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


# -- planning -----------------------------------------------------------------------------

def load_samples(dataset: str, root: str | None, protocol: MetricProtocol, seed: int, limit: int | None,
                 with_total: bool = False) -> Any:
    """The samples of a split (the first ``limit``); with ``with_total``, also how many the
    split holds."""
    samples = list(make_dataset(dataset, root=root, question=protocol.question, seed=seed))
    available = len(samples)
    if limit is not None:
        samples = samples[:limit]
    if not samples:
        raise T2SError(f"dataset {dataset} has no samples" + (f" under {root}" if root else ""))
    ids = [s.sample_id for s in samples]
    if len(set(ids)) != len(ids):
        raise T2SError(f"dataset {dataset} has duplicate sample ids; results could not be resumed")
    return (samples, available) if with_total else samples


def plan_new(args: argparse.Namespace, store: ResultsStore, argv: Sequence[str]) -> list[Job]:
    """Validate every name first (cheap), then load data, segmenters and agents, then
    create the run folders: a bad option costs no work."""
    datasets = split_list(args.dataset) or [DEFAULT_DATASET]
    for d in datasets:
        parse_dataset_spec(d)
    datasets = [":".join(parse_dataset_spec(d)) for d in datasets]
    specs: list[Any] = list(split_list(args.agents))
    if args.agents is not None and not specs:
        raise ConfigError("--agents is empty; name at least one agent (or leave the option out for every "
                          f"baseline and oracle): {', '.join(agent_registry.available_agents())}")
    if args.agent_config:
        specs += agent_specs_from_yaml(args.agent_config)
    if not specs:
        specs = [*agent_registry.BASELINES, *agent_registry.ORACLES]
    for spec in specs:
        if _agent_name(spec) not in agent_registry.REGISTRY:  # plug-ins: import and check the class now
            agent_registry.agent_class(_agent_name(spec))
    seg_specs = {d: args.segmenter or default_segmenter(d) for d in datasets}
    for s in set(seg_specs.values()):
        check_segmenter_name(s)
    protocol = resolve_protocol(args)
    # a relative coord_frame asks in its own wording (NAME@FRAME, t2s_env.instructions)
    variant = frame_variant(get_variant(args.prompt_variant or DEFAULT_VARIANT), protocol.coord_frame).name
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    seed = 0 if args.seed is None else args.seed
    root = str(Path(args.root).resolve()) if args.root else None

    loaded = {d: load_samples(d, root, protocol, seed, args.limit, with_total=True) for d in datasets}
    samples = {d: loaded[d][0] for d in datasets}
    fingerprints = {d: dataset_fingerprint(samples[d]) for d in datasets}
    seg_options = parse_options(args.segmenter_option, "--segmenter-option")
    segmenters = {s: _make_segmenter(s, seg_options) for s in set(seg_specs.values())}
    built = [build_agent(spec, variant) for spec in specs]
    for agent, _ in built:  # e.g. a Qwen3-VL (rel1000) scored as pixels would silently score 0
        if getattr(agent, "coord_frame", None) is not None:
            check_frame_match(agent.coord_frame, protocol.coord_frame, f"agent {agent.label}",
                              f"pass --protocol-option coord_frame={agent.coord_frame}, or override with the "
                              f"agent option coord_frame={protocol.coord_frame}")
        elif protocol.coord_frame != "abs":  # an agent that declares no frame writes pixels
            check_frame_match("abs", protocol.coord_frame, f"agent {agent.label}",
                              "it declares no coord_frame, so it writes pixels: bench it under coord_frame=abs")

    jobs = []
    for d in datasets:
        seg = segmenters[seg_specs[d]]
        runs = []
        for agent, recipe in built:
            run_id = new_run_id(agent.label, d)
            config = run_config(run_id, agent, recipe, d, root, len(samples[d]), args.limit, seed,
                                seg_specs[d], seg_options, seg, protocol, variant, argv,
                                data_fingerprint=fingerprints[d], n_available=loaded[d][1])
            # The folder is created when the job starts (execute), so that an interruption
            # leaves no empty run folders for datasets not reached yet.
            rundir = RunDir(store.run_dir(run_id))
            runs.append(Run(run_id, agent, rundir, config))
        jobs.append(Job(d, root, seg_specs[d], seg, protocol, variant, samples[d], runs,
                        args.batch_size, args.tb_samples, not args.no_tensorboard))
    return jobs


def plan_resume(args: argparse.Namespace, store: ResultsStore, lock: bool = True) -> list[Job]:
    """One job per ``--resume`` id, each rebuilt from its run.yaml, in the order given.
    Every id is checked, then every run locked (``lock``), before any other work: an
    unknown id or a run another process holds costs nothing and changes nothing."""
    run_ids = list(args.resume)
    unknown = [r for r in run_ids if not RunDir(store.run_dir(r)).path.is_dir()]
    if unknown:
        known = sorted(p.name for p in store.runs_dir.iterdir() if p.is_dir()) if store.runs_dir.is_dir() else []
        hint = f"; runs there: {', '.join(known[-10:])}" if known else ""
        raise T2SError(f"no run {', '.join(map(repr, unknown))} in {store.runs_dir}{hint}")
    locks: dict[str, RunLock] = {}
    try:
        if lock:
            for run_id in run_ids:
                locks[run_id] = RunLock(store.run_dir(run_id)).acquire()
        jobs = []
        for run_id in run_ids:
            job = _plan_resume_run(args, store, run_id)
            if job is None:  # already complete: nothing to hold
                held = locks.pop(run_id, None)
                if held is not None:
                    held.release()
            else:
                job.runs[0].lock = locks.get(run_id)
                jobs.append(job)
        return jobs
    except BaseException:
        for held in locks.values():
            held.release()
        raise


def _plan_resume_run(args: argparse.Namespace, store: ResultsStore, run_id: str) -> Job | None:
    """The job of one earlier run, rebuilt from its run.yaml (None when it is complete)."""
    rundir = RunDir(store.run_dir(run_id))
    config = rundir.read_config()
    if config.get("status") == "complete" and store.has_run(run_id):
        print(f"t2s bench: run {run_id} is already complete", file=sys.stderr)
        return None
    try:
        protocol = MetricProtocol.from_dict(config["protocol"])
        dataset, root, seg_spec = config["dataset"], config.get("root"), config["segmenter"]["spec"]
        variant = config["prompt_variant"]
        recipe = {"spec": config["agent"]["spec"], "options": config["agent"].get("options") or {}}
    except (KeyError, TypeError) as exc:
        raise T2SError(f"{rundir.run_yaml} lacks {exc}; it cannot be resumed") from None
    check_resume_options(args, config, protocol, run_id)
    samples = load_samples(dataset, root, protocol, int(config.get("seed") or 0), config.get("limit"))
    if len(samples) != config.get("n_samples", len(samples)):
        raise T2SError(f"dataset {dataset} now has {len(samples)} samples, the run had {config['n_samples']}; start a new run")
    segmenter = _make_segmenter(seg_spec, config["segmenter"].get("options") or {})
    agent = rebuild_agent(recipe)
    run = Run(run_id, agent, rundir, config)
    return Job(dataset, root, seg_spec, segmenter, protocol, variant, samples, [run],
               args.batch_size, args.tb_samples, not args.no_tensorboard)


def release_locks(jobs: Sequence[Job]) -> None:
    """Release the locks of every run of ``jobs`` (the process's end would, too)."""
    for job in jobs:
        for run in job.runs:
            if run.lock is not None:
                run.lock.release()
                run.lock = None


def resolve_protocol(args: argparse.Namespace) -> MetricProtocol:
    """``--protocol`` (default strict) with its ``--protocol-option KEY=VALUE`` overrides."""
    options: dict[str, str] = {}
    for item in args.protocol_option or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--protocol-option takes KEY=VALUE, got {item!r}; keys: {', '.join(protocol_fields())}")
        options[key.strip()] = value.strip()
    return protocol_with_options(args.protocol or "strict", options)


def check_resume_options(args: argparse.Namespace, config: Mapping[str, Any], protocol: MetricProtocol,
                         run_id: str) -> None:
    """Options that change a run's numbers must match the run being resumed: a resumed run
    finishes exactly as it started, or not at all."""
    given = []
    if args.protocol is not None or args.protocol_option:
        if resolve_protocol(args) != protocol:
            given.append(f"protocol {resolve_protocol(args).name} (the run uses {protocol.name})")
    if args.prompt_variant is not None and get_variant(args.prompt_variant).name != config.get("prompt_variant"):
        given.append(f"--prompt-variant {args.prompt_variant} (the run uses {config.get('prompt_variant')})")
    if args.seed is not None and args.seed != int(config.get("seed") or 0):
        given.append(f"--seed {args.seed} (the run uses {config.get('seed')})")
    if given:
        raise ConfigError(f"--resume {run_id} finishes the run as it started; drop {'; '.join(given)}, "
                          "or start a new run")


def parse_options(items: Sequence[str] | None, flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> dict; values are read as YAML scalars (3, 0.5, true, text)."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} takes KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _make_segmenter(spec: str, options: Mapping[str, Any] | None = None) -> Segmenter:
    check_segmenter_name(spec)
    try:
        return make_segmenter(spec, **dict(options or {}))
    except ImportError as exc:
        raise ConfigError(f"segmenter {spec!r} is not available here ({exc}); install its extra, "
                          "or pick a weightless one: box, grabcut") from None
    except TypeError as exc:  # an option the segmenter does not take
        raise ConfigError(f"segmenter {spec!r}: bad --segmenter-option ({exc})") from None
    except ValueError as exc:  # an option of the wrong kind, e.g. max_side=abc
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        given = " ".join(f"{k}={v}" for k, v in dict(options or {}).items())
        raise ConfigError(f"segmenter {spec!r}: bad --segmenter-option value among {given} ({first})") from None


# -- command line -------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="t2s bench",
        description="Run agents on datasets, record samples.jsonl / metrics.json / run.yaml per run, "
        "add complete runs to the leaderboard and print it. With no options: every baseline and "
        "oracle on the embedded synthetic val split with the grabcut segmenter.",
    )
    p.add_argument("--dataset", action="append", metavar="NAME[:SPLIT]",
                   help=f"dataset(s), repeatable or comma-separated (default {DEFAULT_DATASET}); "
                   "names: " + ", ".join(_dataset_names()))
    p.add_argument("--root", help="dataset root for real datasets (the folder holding train/ val/ test/)")
    p.add_argument("--agents", action="append", metavar="A,B,...",
                   help="agents as name[:arg], comma-separated (default: every baseline and oracle); "
                   "names: " + ", ".join(agent_registry.available_agents())
                   + "; or a plug-in as module.path:Class[:arg] (docs/agents.md)")
    p.add_argument("--agent-config", metavar="FILE.yaml",
                   help="YAML list of agents with options, e.g. [{name: center-box, fraction: 0.3}]")
    p.add_argument("--segmenter", metavar="NAME",
                   help="box, grabcut or sam2:<size> (default: grabcut on synthetic, sam2:small otherwise)")
    p.add_argument("--segmenter-option", action="append", metavar="KEY=VALUE",
                   help="segmenter option, repeatable (e.g. checkpoint=/path/sam2.1_hiera_small.pt, device=cuda)")
    p.add_argument("--protocol", metavar="NAME",
                   help=f"metric protocol: {', '.join(PROTOCOLS)} (default strict); fixes resolution and question choice")
    p.add_argument("--protocol-option", action="append", metavar="KEY=VALUE",
                   help="override one protocol field, repeatable; keys: " + ", ".join(protocol_fields())
                   + " (e.g. empty_rule=skip, comparator='>'); see docs/benchmark.md")
    p.add_argument("--prompt-variant", metavar="NAME",
                   help="what the agents answer: bbox+2pos (default), bbox, 2pos, bbox+4pos, bbox+2pos+2neg")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N samples")
    p.add_argument("--seed", type=int, help="seed of the question choice (protocols with question=random; default 0)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                   help=f"samples per act_batch call and per batched encode (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"results directory (default {DEFAULT_OUT})")
    p.add_argument("--resume", nargs="+", action="append", metavar="RUN_ID",
                   help="finish interrupted runs, one after the other (each run's run.yaml fixes its configuration); "
                   "ids space- or comma-separated, the option repeatable")
    p.add_argument("--tb-samples", type=int, default=DEFAULT_TB_SAMPLES, metavar="N",
                   help=f"samples in each run's TensorBoard image grid (default {DEFAULT_TB_SAMPLES}; 0: none)")
    p.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard events")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--no-leaderboard", action="store_true", help="do not print the leaderboard at the end")
    return p


def _dataset_names() -> list[str]:
    from t2s_env.datasets import DATASETS

    return list(DATASETS)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run stands: it stops as after Ctrl-C (runs marked
    ``interrupted``, the resume command printed)."""


@contextlib.contextmanager
def sigterm_interrupts():
    """While the block runs, SIGTERM raises :class:`Terminated` (once: a second SIGTERM
    ends the process at once). Outside the main thread signals cannot be handled: no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run agents on a dataset and record the results."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.tb_samples < 0:
        raise ConfigError(f"--tb-samples must be 0 or more, got {args.tb_samples}")
    if not str(args.out).strip():
        raise ConfigError(f"--out is empty; pass a results directory (default {DEFAULT_OUT})")
    args.resume = split_list(v for ids in args.resume or () for v in ids) or None
    try:
        with sigterm_interrupts():
            return _bench(args, argv)
    except Terminated:
        print("t2s: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM


def _bench(args: argparse.Namespace, argv: Sequence[str]) -> int:
    store = ResultsStore(args.out)
    from . import sharding

    if sharding.wanted(args, store):  # accelerate launch / torchrun, or resuming a sharded run
        return sharding.run(args, store, argv)
    store.prepare()  # an unwritable --out fails here, before any work
    if args.resume:
        ignored = [f"--{k.replace('_', '-')}" for k in ("dataset", "root", "agents", "agent_config", "segmenter",
                                                          "segmenter_option", "limit")
                   if getattr(args, k) is not None]
        if ignored:
            print(f"t2s bench: --resume restores the run's configuration; ignoring {', '.join(ignored)}", file=sys.stderr)
        jobs = plan_resume(args, store)
    else:
        jobs = plan_new(args, store, argv)
    started = time.perf_counter()
    try:
        for job in jobs:
            execute(job, store, show_progress=not args.no_progress)
    finally:
        release_locks(jobs)
    elapsed = time.perf_counter() - started
    for job in jobs:
        for run in job.runs:
            print(f"{run.label} on {job.dataset}: {run.rundir.path}")
    print(f"{sum(len(j.runs) for j in jobs)} run(s) in {elapsed:.1f} s; leaderboard: {store.db_path}")
    if not args.no_leaderboard:
        from .leaderboard import render_leaderboard

        print()
        print(render_leaderboard(store, fmt="table"))
    return 0


if __name__ == "__main__":
    from t2s_env.cli import main as t2s_main

    sys.exit(t2s_main(["bench", *sys.argv[1:]]))
