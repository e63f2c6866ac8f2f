"""Planning ``t2s bench``: the jobs a command asks for, every name and option checked.

:func:`plan_new` validates every name and option first (cheap), then checks that ``--out``
can be written, then loads the data, the segmenters and the agents, and returns one
:class:`~think2seg.benchmarks.runner.Job` per dataset holding a run per agent, each with
the configuration its run.yaml will record (:func:`run_config`). :func:`plan_resume`
rebuilds the jobs of earlier runs from their run.yaml. Planning writes nothing (only a
resumed run's lock): a refused command leaves no trace, and the run folders are created
when the runner starts a job.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import errno
import hashlib
import importlib.metadata
import inspect
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from t2s_env import ConfigError, MetricProtocol, T2SError, get_variant, make_dataset, make_segmenter
from t2s_env.coords import check_frame_match
from t2s_env.datasets import parse_dataset_spec
from t2s_env.instructions import DEFAULT_VARIANT, coord_variant
from t2s_env.protocol import protocol_fields, protocol_with_options
from t2s_env.options import parse_key_values
from t2s_env.segmenters import SEGMENTERS, Segmenter

import think2seg.agents as agent_registry
from think2seg.agents import Agent

from .provenance import dataset_fingerprint, library_versions, model_fingerprint, run_identity, segmenter_fingerprint
from .results_store import ResultsError, ResultsStore
from .rundir import RunDir, RunLock, utc_now
from .runner import PARSER_MODE, Job, Run

DEFAULT_DATASET = "synthetic:val"


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


def agent_name(spec: Any) -> str:
    """A built-in or entry-point name, or a plug-in's ``module.path:Class``."""
    return agent_registry.split_spec(str(spec["name"] if isinstance(spec, Mapping) else spec))[0]


def build_agent(spec: Any, prompt_variant: str) -> tuple[Agent, dict[str, Any]]:
    """The agent for a spec, with the run's prompt variant when the agent takes one and
    the spec does not set it. Returns the agent and the recipe that rebuilds it."""
    options: dict[str, Any] = {}
    try:
        cls = agent_registry.agent_class(agent_name(spec))
    except ImportError as exc:  # e.g. qwen without transformers
        raise ConfigError(f"agent {agent_name(spec)!r} is not available here: {exc}") from None
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
    max_turns: int = 1,
    refine_mode: str = "replace",
) -> dict[str, Any]:
    """Everything run.yaml records; ``--resume`` rebuilds the run from it. A run of fewer
    samples than its split holds (``--limit``) is partial."""
    agent_config = agent.config()
    describe = segmenter.describe()
    config = {
        "run_id": run_id,
        "status": "running",
        "created_at": utc_now(),
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
        "libraries": library_versions(),
        "git": git_state(),
        "command": ["t2s", "bench", *argv],
    }
    if max_turns > 1:  # a one-shot run keeps today's run.yaml and identity byte for byte
        config["refine"] = {"max_turns": int(max_turns), "mode": refine_mode}
    config["identity"] = run_identity(config)
    return config


# -- planning -----------------------------------------------------------------------------

def check_out_writable(store: ResultsStore) -> None:
    """``--out`` is, or can be made in, a folder this process may write, checked without
    writing anything (:meth:`ResultsStore.prepare` creates it once the plan stands)."""
    existing = store.out.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        why = os.strerror(errno.ENOTDIR)
    elif not os.access(existing, os.W_OK | os.X_OK):
        why = os.strerror(errno.EACCES)
    else:
        return
    raise ResultsError(f"cannot write to the output directory {store.out}: {why}; "
                       "pass --out DIR with a writable folder")


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
    """Validate every name and option first (cheap), then ``--out``, then load data,
    segmenters and agents: a bad option costs no work and writes nothing."""
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
        if agent_name(spec) not in agent_registry.REGISTRY:  # plug-ins: import and check the class now
            agent_registry.agent_class(agent_name(spec))
    seg_specs = {d: args.segmenter or default_segmenter(d) for d in datasets}
    for s in set(seg_specs.values()):
        check_segmenter_name(s)
    seg_options = parse_key_values(args.segmenter_option, "--segmenter-option")
    protocol = resolve_protocol(args)
    # a relative coord_frame asks in its own wording (NAME@FRAME, t2s_env.instructions)
    variant = coord_variant(get_variant(args.prompt_variant or DEFAULT_VARIANT), protocol.coord_frame).name
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    seed = 0 if args.seed is None else args.seed
    root = str(Path(args.root).resolve()) if args.root else None
    check_out_writable(store)

    loaded = {d: load_samples(d, root, protocol, seed, args.limit, with_total=True) for d in datasets}
    samples = {d: loaded[d][0] for d in datasets}
    fingerprints = {d: dataset_fingerprint(samples[d]) for d in datasets}
    segmenters = {s: build_segmenter(s, seg_options) for s in set(seg_specs.values())}
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
                                data_fingerprint=fingerprints[d], n_available=loaded[d][1],
                                max_turns=getattr(args, "max_turns", 1),
                                refine_mode=getattr(args, "refine_mode", "replace"))
            # The folder is created when the job starts (execute), so that an interruption
            # leaves no empty run folders for datasets not reached yet.
            rundir = RunDir(store.run_dir(run_id))
            runs.append(Run(run_id, agent, rundir, config))
        jobs.append(Job(d, root, seg_specs[d], seg, protocol, variant, samples[d], runs,
                        args.batch_size, args.tb_samples, not args.no_tensorboard,
                        max_turns=getattr(args, "max_turns", 1),
                        refine_mode=getattr(args, "refine_mode", "replace")))
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
    check_resume_libraries(config, run_id)
    samples = load_samples(dataset, root, protocol, int(config.get("seed") or 0), config.get("limit"))
    if len(samples) != config.get("n_samples", len(samples)):
        raise T2SError(f"dataset {dataset} now has {len(samples)} samples, the run had {config['n_samples']}; start a new run")
    segmenter = build_segmenter(seg_spec, config["segmenter"].get("options") or {})
    agent = rebuild_agent(recipe)
    run = Run(run_id, agent, rundir, config)
    refine = config.get("refine") or {}
    return Job(dataset, root, seg_spec, segmenter, protocol, variant, samples, [run],
               args.batch_size, args.tb_samples, not args.no_tensorboard,
               max_turns=int(refine.get("max_turns", 1)), refine_mode=refine.get("mode", "replace"))


def release_locks(jobs: Sequence[Job]) -> None:
    """Release the locks of every run of ``jobs`` (the process's end would, too)."""
    for job in jobs:
        for run in job.runs:
            if run.lock is not None:
                run.lock.release()
                run.lock = None


def resolve_protocol(args: argparse.Namespace) -> MetricProtocol:
    """``--protocol`` (default strict) with its ``--protocol-option KEY=VALUE`` overrides."""
    options = parse_key_values(args.protocol_option, "--protocol-option", f"keys: {', '.join(protocol_fields())}")
    # protocol fields are names, bools and one integer: a number goes as its text, so 1 never matches true
    texts = {k: v if isinstance(v, (bool, str)) else str(v) for k, v in options.items()}
    return protocol_with_options(args.protocol or "strict", texts)


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


def check_resume_libraries(config: Mapping[str, Any], run_id: str) -> None:
    """A run is finished with the library versions it started with (they are part of its
    identity), so samples scored by two versions never mix in one run."""
    started = config.get("libraries")
    if not isinstance(started, Mapping):
        return  # a run.yaml from before libraries were recorded
    now = library_versions()
    changed = [f"{k} {started.get(k)} (now {now.get(k)})" for k in now if started.get(k) != now.get(k)]
    if changed:
        raise T2SError(f"--resume {run_id}: the run started with {', '.join(changed)}; resume it in "
                       "that environment or start a new run")


def build_segmenter(spec: str, options: Mapping[str, Any] | None = None) -> Segmenter:
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


