"""``t2s bench``: run agents on datasets, score them, record the results.

    t2s bench                                   # the main job: every baseline and oracle on
                                                # synthetic:val with grabcut, then the leaderboard
    t2s bench --dataset earthreason:test --root DATA --agents oracle-box,center-box:0.3
    t2s bench --out results --resume RUN_ID     # finish a run that was killed
    t2s bench --out results --resume A B,C      # finish several, one after the other

The command reads top-down: the options are parsed here, :mod:`.plan` checks them and
builds the jobs (one per dataset, a run per agent), :mod:`.jobs` executes each job batch
by batch (act, score, record) and finalises its runs into the results store, and
:mod:`.sharding` does the same across the processes of a distributed launch. Nothing is
written before the plan stands: a refused command leaves no results folder behind.

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
import signal
import sys
import threading
import time
from typing import Any, Sequence

from t2s_env import ConfigError
from t2s_env.refine import check_refine_options
from t2s_env.protocol import PROTOCOLS, protocol_fields

import think2seg.agents as agent_registry

from . import plan, runner, sharding
from .jobs import execute
from .leaderboard import render_leaderboard
from .results_store import ResultsStore

DEFAULT_OUT = "results"
DEFAULT_BATCH_SIZE = 8
DEFAULT_TB_SAMPLES = 16


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="t2s bench",
        description="Run agents on datasets, record samples.jsonl / metrics.json / run.yaml per run, "
        "add complete runs to the leaderboard and print it. With no options: every baseline and "
        "oracle on the embedded synthetic val split with the grabcut segmenter.",
    )
    p.add_argument("--dataset", action="append", metavar="NAME[:SPLIT]",
                   help=f"dataset(s), repeatable or comma-separated (default {plan.DEFAULT_DATASET}); "
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
                   help="segmenter option, repeatable (e.g. checkpoint=/path/sam2.1_hiera_small.pt, device=cuda); "
                   "VALUE as in docs/benchmark.md, Option values")
    p.add_argument("--protocol", metavar="NAME",
                   help=f"metric protocol: {', '.join(PROTOCOLS)} (default strict); fixes resolution and question choice")
    p.add_argument("--protocol-option", action="append", metavar="KEY=VALUE",
                   help="override one protocol field, repeatable; keys: " + ", ".join(protocol_fields())
                   + " (e.g. empty_rule=skip, comparator='>'); see docs/benchmark.md")
    p.add_argument("--prompt-variant", metavar="NAME",
                   help="what the agents answer: bbox+2pos (default), bbox, 2pos, bbox+4pos, bbox+2pos+2neg")
    p.add_argument("--max-turns", type=int, default=1, metavar="K",
                   help="look-and-refine episodes of up to K turns (default 1: one-shot; docs/refine.md)")
    p.add_argument("--refine-mode", default="replace", metavar="MODE",
                   help="with --max-turns K > 1: replace (each answer is the full prompt set, default) or add")
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
    check_refine_options(args.max_turns, args.refine_mode)
    if args.tb_samples < 0:
        raise ConfigError(f"--tb-samples must be 0 or more, got {args.tb_samples}")
    if not str(args.out).strip():
        raise ConfigError(f"--out is empty; pass a results directory (default {DEFAULT_OUT})")
    args.resume = plan.split_list(v for ids in args.resume or () for v in ids) or None
    try:
        with sigterm_interrupts():
            return bench(args, argv)
    except Terminated:
        print("t2s: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM


def refine_line(refine: dict[str, Any]) -> str:
    """One line of a refine run's metrics: gIoU by turn, NoC, turns used."""
    def pct(v: Any) -> str:
        return "-" if v is None else f"{100 * v:.2f}"

    by_turn = " → ".join(pct(t.get("gIoU")) for t in refine.get("per_turn") or [])
    def num(k: str) -> str:
        return "-" if refine.get(k) is None else f"{refine[k]:.2f}"
    return (f"gIoU by turn {by_turn}; NoC@85 {num('NoC@85')}, NoC@90 {num('NoC@90')} (K={refine.get('max_turns')} "
            f"when never reached); mean turns {num('mean_turns')}; final below best {pct(refine.get('final_below_best'))} %")


def bench(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Plan, then execute every job, then print where the runs are and the leaderboard."""
    store = ResultsStore(args.out)
    if sharding.wanted(args, store):  # accelerate launch / torchrun, or resuming a sharded run
        if args.max_turns > 1:
            raise ConfigError(f"--max-turns {args.max_turns} runs in one process only; run it without "
                              "accelerate launch / torchrun")
        return sharding.run(args, store, argv)
    if args.resume:
        ignored = [f"--{k.replace('_', '-')}" for k in ("dataset", "root", "agents", "agent_config", "segmenter",
                                                          "segmenter_option", "limit")
                   if getattr(args, k) is not None]
        if ignored:
            print(f"t2s bench: --resume restores the run's configuration; ignoring {', '.join(ignored)}", file=sys.stderr)
        jobs = plan.plan_resume(args, store)
    else:
        jobs = plan.plan_new(args, store, argv)
    started = time.perf_counter()
    try:
        store.prepare()  # the plan stands: the results folder and its database are made now
        for job in jobs:
            execute(job, store, show_progress=not args.no_progress)
    finally:
        plan.release_locks(jobs)
    elapsed = time.perf_counter() - started
    for job in jobs:
        for run in job.runs:
            print(f"{run.label} on {job.dataset}: {run.rundir.path}")
            if job.max_turns > 1:
                print("  " + refine_line(run.rundir.read_metrics().get("refine") or {}))
    print(f"{sum(len(j.runs) for j in jobs)} run(s) in {elapsed:.1f} s; leaderboard: {store.db_path}")
    if not args.no_leaderboard:
        print()
        print(render_leaderboard(store, fmt="table"))
    for line in data_lines(jobs):
        print(line)
    return 0


def data_lines(jobs: Sequence[runner.Job]) -> list[str]:
    """One line per embedded synthetic split the jobs ran on: the digest of its pixels and
    masks against the reference of the committed generator (docs/synthetic.md)."""
    from t2s_env.datasets import synthetic

    out = []
    for dataset in dict.fromkeys(j.dataset for j in jobs if j.root is None):
        name, _, split = dataset.partition(":")
        if name != "synthetic":
            continue
        split = split or "val"
        got = synthetic.data_digest(synthetic.embedded_root(), split)
        ref = synthetic.EMBEDDED_DIGESTS.get(split)
        verdict = ("the data of the README's table" if got == ref else
                   "DIFFERENT data: scores are not comparable with the README's table; see docs/synthetic.md")
        out.append(f"data {dataset}: sha256 {got} (reference {ref}: {verdict})")
    return out


if __name__ == "__main__":
    from t2s_env.cli import main as t2s_main

    sys.exit(t2s_main(["bench", *sys.argv[1:]]))

