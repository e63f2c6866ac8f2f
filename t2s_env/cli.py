"""The ``t2s`` command.

    t2s data synth --out DIR [--n N] [--seed S] [--splits train,val,test]
    t2s data check earthreason --root DIR [--split S]
    t2s bench [...]              (think2seg.benchmarks.harness)
    t2s leaderboard [...]        (think2seg.benchmarks.leaderboard)
    t2s train grpo --config F    (think2seg.scripts.train_grpo)

A user error (:class:`T2SError`) prints one line ``t2s: error: ...`` and exits with 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, Sequence

from .errors import T2SError

# Subcommands implemented outside the environment library: module, function(argv) -> int.
DELEGATED = {
    "bench": ("think2seg.benchmarks.harness", "main", "run agents on a dataset and record the results"),
    "leaderboard": ("think2seg.benchmarks.leaderboard", "main", "print the leaderboard of recorded runs"),
}
TRAIN = {"grpo": ("think2seg.scripts.train_grpo", "main", "GRPO training of a Qwen2.5-VL prompter with trl")}


def _data_synth(args: argparse.Namespace) -> int:
    from .datasets.synthetic import generate

    splits = [s for s in args.splits.split(",") if s]
    summary = generate(args.out, n=args.n, seed=args.seed, splits=splits, overwrite=args.overwrite)
    for split, count in summary.items():
        print(f"{split}: {count} images")
    print(f"wrote {args.out}")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from .datasets import check_dataset, make_dataset
    from .errors import DatasetError

    if args.root is not None and not os.path.isdir(args.root):
        raise DatasetError(f"dataset root {args.root} does not exist; pass --root DIR pointing at the dataset folder")
    if args.root is None and args.dataset != "synthetic":
        raise DatasetError(f"dataset {args.dataset!r} needs --root DIR (see docs/datasets.md for its layout)")
    explicit = args.split is not None
    splits = [args.split] if explicit else ["train", "val", "test"]
    checked = 0
    for split in splits:
        try:
            ds = make_dataset(f"{args.dataset}:{split}", root=args.root, question="all", strict=not args.lenient)
        except DatasetError as exc:
            # Without --split, a split that is absent is reported and the others checked.
            if explicit:
                raise
            print(f"{args.dataset}:{split}  not checked: {exc}")
            continue
        c = check_dataset(ds)
        checked += 1
        wr, hr = c["width_range"], c["height_range"]
        size = f"{wr[0]}-{wr[1]} x {hr[0]}-{hr[1]} px" if wr else "-"
        print(
            f"{args.dataset}:{split}  images {c['images']}  questions {c['questions']}  "
            f"empty targets {c['empty_targets']}  sizes (w x h) {size}"
        )
    if not checked:
        raise DatasetError(f"no split of {args.dataset} could be read under {args.root}; see the messages above")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t2s", description="Think2Seg: reasoning segmentation in remote sensing")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="generate or validate datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = dsub.add_parser("synth", help="write a synthetic EarthReason-format dataset")
    synth.add_argument("--out", required=True, help="output folder (created)")
    synth.add_argument("--n", type=int, default=200, help="images per split (default 200)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--splits", default="train,val,test", help="comma-separated splits")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    synth.set_defaults(func=_data_synth)
    check = dsub.add_parser("check", help="validate a dataset and print its counts")
    check.add_argument("dataset", help="earthreason, synthetic, rrsisd, refsegrs or risbench")
    check.add_argument("--root", help="dataset root (not needed for synthetic)")
    check.add_argument("--split", help="one split (default: every split present)")
    check.add_argument("--lenient", action="store_true", help="skip broken images with a warning instead of failing")
    check.set_defaults(func=_data_check)

    for name, (_, _, help_text) in DELEGATED.items():
        sp = sub.add_parser(name, help=help_text, add_help=False)
        sp.add_argument("rest", nargs=argparse.REMAINDER)
    train = sub.add_parser("train", help="train a prompter")
    tsub = train.add_subparsers(dest="train_command", required=True, metavar="ALGO")
    for name, (_, _, help_text) in TRAIN.items():
        tp = tsub.add_parser(name, help=help_text, add_help=False)
        tp.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def _delegate(module: str, func: str, argv: Sequence[str]) -> int:
    fn: Callable[[Sequence[str]], int] = getattr(importlib.import_module(module), func)
    return int(fn(list(argv)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Delegated commands parse their own options (and their own --help).
    try:
        if argv and argv[0] in DELEGATED:
            module, func, _ = DELEGATED[argv[0]]
            return _delegate(module, func, argv[1:])
        if len(argv) >= 2 and argv[0] == "train" and argv[1] in TRAIN:
            module, func, _ = TRAIN[argv[1]]
            return _delegate(module, func, argv[2:])
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except T2SError as exc:
        print(f"t2s: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("t2s: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
