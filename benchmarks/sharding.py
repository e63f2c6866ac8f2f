"""Sharded `t2s bench`: one run split across the processes of a distributed launch.

    accelerate launch --multi_gpu --num_processes 4 $(which t2s) bench --agents qwen:... --dataset earthreason:test
    python -m torch.distributed.run --standalone --nproc_per_node 2 $(which t2s) bench ...   # the same, CPU

(``--multi_gpu`` is accelerate's name for its torchrun-based launcher; on a CPU-only host it
starts CPU processes all the same.) When ``WORLD_SIZE`` > 1, the CLI hands the command to
:func:`run`, which plans with :mod:`.plan` and executes with :mod:`.jobs` and :mod:`.runner`'s stages:

1. Rank 0 plans the runs (new runs, or ``--resume RUN_ID...``), creates their folders and
   holds their locks for the whole run; the run ids reach the other ranks through a gloo
   process group (CPU collectives, used only to coordinate: barriers and a few small
   objects).
2. Every rank rebuilds the same jobs from the run folders and holds its own agent and
   segmenter. With GPUs, each process's current CUDA device is set to ``LOCAL_RANK``, so
   models placed on ``cuda`` (no index) land on that process's own GPU.
3. Rank r answers and scores samples ``r, r + N, r + 2N, ...`` in batches and appends its
   records to ``samples.shard-r.jsonl`` in the run folder (flushed and fsynced per batch).
4. After a barrier, rank 0 merges ``samples.jsonl`` and every shard file in dataset order,
   writes one ``samples.jsonl`` (atomically), removes the shard files and finalises the run
   exactly as a one-process run: metrics.json, TensorBoard, one leaderboard row.

A killed sharded run resumes with ``--resume RUN_ID`` under any number of processes (one
included: a run folder with shard files is finished here, not by the plain loop): records
already in ``samples.jsonl`` or in any shard file are not redone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from t2s_env.errors import T2SError

from . import plan, runner
from .jobs import finalize, process_batch, stop_runs
from .rundir import RunDir, write_atomic

SHARD_GLOB = "samples.shard-*.jsonl"


def world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment (torchrun / accelerate launch)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class ShardDir(RunDir):
    """A run folder whose append-only records go to this rank's shard file."""

    def __init__(self, path: Path, rank: int) -> None:
        super().__init__(path)
        self.rank = rank

    @property
    def samples_path(self) -> Path:
        return self.path / f"samples.shard-{self.rank}.jsonl"


def _records_everywhere(path: Path) -> dict[str, dict[str, Any]]:
    """Every record of a run folder: samples.jsonl, then each shard file (first one wins)."""
    done: dict[str, dict[str, Any]] = {}
    sources = [RunDir(path)] + [ShardDir(path, int(p.name.split("-")[1].split(".")[0]))
                                 for p in sorted(path.glob(SHARD_GLOB))]
    for src in sources:
        records, _ = src.read_records()
        for r in records:
            done.setdefault(r["sample_id"], r)
    return done


def wanted(args: argparse.Namespace, store: Any) -> bool:
    """Shard when launched distributed, or when resuming a run that has shard files (then
    one process finishes it, merging what the shards recorded)."""
    if world()[1] > 1:
        return True
    return any(any(Path(store.run_dir(run_id)).glob(SHARD_GLOB)) for run_id in args.resume or ())


class _Group:
    """A gloo process group for coordination (works beside an NCCL group, and on CPU);
    with one process, the collectives are local."""

    def __init__(self) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.single = world()[1] == 1
        if self.single:
            return
        if not dist.is_initialized():
            dist.init_process_group(backend="gloo")
            self.group = None
        else:
            self.group = dist.new_group(backend="gloo")

    def broadcast(self, obj: Any) -> Any:
        if self.single:
            return obj
        box = [obj]
        self.dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def close(self) -> None:
        if not self.single and self.dist.is_initialized():
            self.dist.destroy_process_group()

    def gather_ok(self, ok: bool, message: str = "") -> list[tuple[bool, str]]:
        if self.single:
            return [(ok, message)]
        out: list[Any] = [None] * self.dist.get_world_size()
        self.dist.all_gather_object(out, (ok, message), group=self.group)
        return out


def _plan(args: argparse.Namespace, store: Any, argv: Sequence[str], rank: int, group: _Group) -> list[Any]:
    """Rank 0 plans and creates the run folders; the others rebuild the jobs from them."""
    decided: Any = None
    jobs: list[Any] = []
    if rank == 0:
        try:
            jobs = plan.plan_resume(args, store) if args.resume else plan.plan_new(args, store, argv)
            store.prepare()  # the plan stands: the results folder and its database are made now
            for job in jobs:
                for run in job.runs:
                    if not run.rundir.path.exists():
                        run.lock = run.rundir.create(run.config)  # rank 0 holds every run's lock
            decided = {"runs": [[run.run_id for run in job.runs] for job in jobs]}
        except T2SError as exc:
            plan.release_locks(jobs)
            decided = {"error": str(exc)}
            group.broadcast(decided)
            raise
    decided = group.broadcast(decided)
    if "error" in decided:
        raise SystemExit(2)  # rank 0 prints the one-line error
    if rank != 0:
        for run_ids in decided["runs"]:
            runs = []
            job = None
            for run_id in run_ids:
                # Rebuilt from run.yaml exactly as --resume does; options the user gave were
                # already checked by rank 0.
                again = argparse.Namespace(**{**vars(args), "resume": [run_id], "protocol": None,
                                              "protocol_option": None, "prompt_variant": None, "seed": None})
                rebuilt = plan.plan_resume(again, store, lock=False)
                if not rebuilt:
                    continue
                job = job or rebuilt[0]
                runs.extend(rebuilt[0].runs)
            if job is not None:
                job.runs = runs
                jobs.append(job)
    return jobs


def _run_job(job: Any, store: Any, rank: int, size: int, group: _Group, show_progress: bool) -> None:
    from tqdm.auto import tqdm

    scorers = runner.make_scorers(job)
    for run in job.runs:
        run.rundir = ShardDir(run.rundir.path, rank)
        run.rundir.open_for_append()
        run.done = _records_everywhere(run.rundir.path)
    mine = [i for i in range(len(job.samples)) if i % size == rank]
    progress = tqdm(total=len(mine) * len(job.runs), desc=f"{job.dataset} rank {rank}/{size}", unit="answer",
                    disable=not show_progress or rank != 0, file=sys.stderr, dynamic_ncols=True)
    error = ""
    try:
        try:
            for start in range(0, len(mine), job.batch_size):
                process_batch(job, mine[start : start + job.batch_size], scorers, progress)
        except (T2SError, OSError) as exc:
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        finally:
            progress.close()
            for run in job.runs:
                run.rundir.close()
        results = group.gather_ok(not error, error)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM reaches every rank; rank 0 marks the runs
        if rank == 0:
            stop_runs(job, job.runs, store, exc)
        raise
    failed = [(r, msg) for r, (ok, msg) in enumerate(results) if not ok]
    if failed:
        r, msg = failed[0]
        hint = "; ".join(f"t2s bench --out {store.out} --resume {run.run_id}" for run in job.runs)
        raise T2SError(f"rank {r} stopped: {msg}; fix it, then finish with (any number of processes): {hint}")
    if rank == 0:
        for run in job.runs:
            _merge(job, run)
            finalize(job, run, store, scorers[1])


def _merge(job: Any, run: Any) -> None:
    """One samples.jsonl in dataset order from samples.jsonl and every shard file."""
    path = run.rundir.path
    done = _records_everywhere(path)
    missing = [s.sample_id for s in job.samples if s.sample_id not in done]
    if missing:
        raise T2SError(f"run {run.run_id}: {len(missing)} samples have no record after every rank finished "
                       f"(first: {missing[0]}); finish it with --resume {run.run_id}")
    records = [done[s.sample_id] for s in job.samples]
    main = RunDir(path)
    write_atomic(main.samples_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    for shard in path.glob(SHARD_GLOB):
        shard.unlink()
    run.rundir = main
    run.done = {r["sample_id"]: r for r in records}


def run(args: argparse.Namespace, store: Any, argv: Sequence[str]) -> int:
    """``t2s bench`` under a distributed launch (``WORLD_SIZE`` > 1)."""
    rank, size = world()
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    group = _Group()
    jobs: list[Any] = []
    try:
        jobs = _plan(args, store, argv, rank, group)
        for job in jobs:
            _run_job(job, store, rank, size, group, show_progress=not args.no_progress)
    finally:
        plan.release_locks(jobs)
        group.close()
    if rank != 0:
        return 0
    for job in jobs:
        for r in job.runs:
            print(f"{r.label} on {job.dataset}: {r.rundir.path} ({size} processes)")
    if not args.no_leaderboard:
        from .leaderboard import render_leaderboard

        print()
        print(render_leaderboard(store, fmt="table"))
    return 0
