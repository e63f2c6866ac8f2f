"""The ``t2s`` command.

    t2s data synth --out DIR [--n N] [--seed S] [--splits train,val,test]
    t2s data check earthreason --root DIR [--split S] [--lenient]
    t2s data convert rrsisd --root DIR [--overwrite]
    t2s data export verl --dataset earthreason:train --root DIR --out train.parquet
    t2s bench [...]              (registered by think2seg.benchmarks)
    t2s leaderboard [...]        (registered by think2seg.benchmarks)
    t2s train grpo --config F    (registered by think2seg.scripts)

The environment library owns only ``data``. Every other subcommand is registered by the
application that implements it, through the entry-point group ``think2seg.commands``
(name ``bench`` or ``train.grpo`` -> ``module:function(argv) -> int``), so ``t2s_env``
imports nothing above itself and a third-party package can add a subcommand the same way.

A user error (:class:`T2SError`) prints one line ``t2s: error: ...`` and exits with 2, and
so does output that cannot be written (``t2s leaderboard > /dev/full``: no space, an I/O
error). A reader that closes the pipe early (``t2s leaderboard | head``) ends t2s quietly
with status 141, as for other command-line tools.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from typing import Any, Callable, Sequence

from .errors import T2SError
from .progress import LOG_EVERY_S, NO_PROGRESS_ENV

#: --no-progress of the long data commands (t2s_env.progress says what is shown where)
PROGRESS_HELP = (f"no progress on stderr (default: a bar on a terminal, a line every {LOG_EVERY_S:.0f} s in a "
                 f"log; {NO_PROGRESS_ENV}=1 turns it off everywhere)")

#: The entry-point group through which applications register subcommands.
COMMAND_GROUP = "think2seg.commands"


def registered_commands() -> dict[tuple[str, ...], importlib.metadata.EntryPoint]:
    """``("bench",)`` or ``("train", "grpo")`` -> its entry point (not loaded)."""
    return {tuple(ep.name.split(".")): ep for ep in importlib.metadata.entry_points(group=COMMAND_GROUP)}


def _data_synth(args: argparse.Namespace) -> int:
    from .datasets.synthetic import generate

    splits = [s for s in args.splits.split(",") if s]
    summary = generate(args.out, n=args.n, seed=args.seed, splits=splits, overwrite=args.overwrite,
                       progress=False if args.no_progress else None)
    for split, count in summary.items():
        print(f"{split}: {count} images")
    print(f"wrote {args.out}")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from .datasets import check_dataset, make_dataset
    from .errors import DatasetError

    if args.root is not None:
        _require_root(args.root)
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
        c = check_dataset(ds, strict=not args.lenient, progress=False if args.no_progress else None)
        checked += 1
        wr, hr = c["width_range"], c["height_range"]
        size = f"{wr[0]}-{wr[1]} x {hr[0]}-{hr[1]} px" if wr else "-"
        skipped = sum(getattr(ds, "skipped", {}).values()) + c["skipped"]
        print(
            f"{args.dataset}:{split}  images {c['images']}  questions {c['questions']}  "
            f"empty targets {c['empty_targets']}  sizes (w x h) {size}"
            + (f"  skipped {skipped}" if skipped else "")
        )
    if not checked:
        raise DatasetError(f"no split of {args.dataset} could be read under {args.root}; see the messages above")
    return 0


def _require_root(root: str) -> None:
    """--root must be a readable folder; a missing one and an unreadable one are told apart."""
    from pathlib import Path

    from .datasets.base import require_folder
    from .errors import DatasetError

    if not os.path.lexists(root):
        raise DatasetError(f"dataset root {root} does not exist; pass --root DIR pointing at the dataset folder")
    require_folder(Path(root), "dataset root")


#: datasets whose annotations ``t2s data convert`` rewrites, and what it writes
CONVERTIBLE = {"rrsisd": "rrsisd/refs(unc).p -> rrsisd/refs(unc).json"}


def _data_convert(args: argparse.Namespace) -> int:
    from .errors import ConfigError

    if args.dataset not in CONVERTIBLE:
        raise ConfigError(f"cannot convert dataset {args.dataset!r}; convertible: {', '.join(CONVERTIBLE)}")
    _require_root(args.root)
    from .datasets.referring import convert_rrsisd_refs

    path, n = convert_rrsisd_refs(args.root, overwrite=args.overwrite)
    print(f"wrote {path} ({n} refs); the rrsisd loader reads it instead of the pickle from now on")
    return 0


def _data_export(args: argparse.Namespace) -> int:
    from .integrations.export import export

    image_size = None if args.image_size == 0 else args.image_size
    n = export(args.format, args.dataset, args.root, args.out, image_size=image_size, question=args.question,
               seed=args.seed, variant=args.prompt_variant, limit=args.limit)
    print(f"wrote {args.out} ({n} {args.format} rows)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t2s", description="Think2Seg: reasoning segmentation in remote sensing")
    p.add_argument("--version", action="version", version=version_line())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="generate or validate datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = dsub.add_parser("synth", help="write a synthetic EarthReason-format dataset")
    synth.add_argument("--out", required=True, help="output folder (created)")
    synth.add_argument("--n", type=int, default=200, help="images per split (default 200)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--splits", default="train,val,test", help="comma-separated splits")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    synth.add_argument("--no-progress", action="store_true", help=PROGRESS_HELP)
    synth.set_defaults(func=_data_synth)
    check = dsub.add_parser("check", help="validate a dataset and print its counts")
    check.add_argument("dataset", help="earthreason, synthetic, rrsisd, refsegrs or risbench")
    check.add_argument("--root", help="dataset root (not needed for synthetic)")
    check.add_argument("--split", help="one split (default: every split present)")
    check.add_argument("--lenient", action="store_true", help="skip broken images with a warning instead of failing")
    check.add_argument("--no-progress", action="store_true", help=PROGRESS_HELP)
    check.set_defaults(func=_data_check)
    convert = dsub.add_parser("convert", help="rewrite a dataset's annotations in a safe format (rrsisd: refs pickle -> JSON)")
    convert.add_argument("dataset", help="rrsisd")
    convert.add_argument("--root", required=True, help="dataset root (the folder holding rrsisd/)")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing JSON refs file")
    convert.set_defaults(func=_data_convert)
    export = dsub.add_parser("export", help="write a dataset split as RL parquet rows for verl or EasyR1")
    export.add_argument("format", choices=["verl", "easyr1"], help="whose RL dataset rows to write")
    export.add_argument("--dataset", required=True, help="name:split, e.g. earthreason:train")
    export.add_argument("--root", help="dataset root (not needed for synthetic)")
    export.add_argument("--out", required=True, help="output .parquet file (its folder must exist)")
    export.add_argument("--image-size", type=int, default=840, help="protocol frame side (default 840; 0 = native)")
    export.add_argument("--question", default="random", choices=["first", "random", "all"],
                        help="question per image: seeded random (default, upstream), first, or one row per question")
    export.add_argument("--seed", type=int, default=0)
    export.add_argument("--prompt-variant", default="bbox+2pos")
    export.add_argument("--limit", type=int, help="at most this many rows")
    export.set_defaults(func=_data_export)

    # Registered subcommands parse their own options (and their own --help); the parser built
    # here only lists them (it is built for ``t2s --help`` and usage errors, never on the
    # path of a registered command, so loading them to read their summaries costs nothing there).
    commands = registered_commands()
    groups: dict[str, argparse._SubParsersAction] = {}
    for path in sorted(commands):
        if len(path) == 1:
            sp = sub.add_parser(path[0], help=_summary(commands[path]), add_help=False)
            sp.add_argument("rest", nargs=argparse.REMAINDER)
            continue
        if path[0] not in groups:
            gp = sub.add_parser(path[0], help=f"{path[0]} subcommands")
            groups[path[0]] = gp.add_subparsers(dest=f"{path[0]}_command", required=True, metavar="ACTION")
        sp = groups[path[0]].add_parser(path[1], help=_summary(commands[path]), add_help=False)
        sp.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def _summary(ep: importlib.metadata.EntryPoint) -> str:
    """First line of the command function's docstring. A command whose module cannot be
    imported (a missing optional dependency) is listed as such instead of breaking --help."""
    try:
        doc = (getattr(ep.load(), "__doc__", None) or "").strip()
    except Exception as exc:  # noqa: BLE001 - any import failure of one plug-in command
        return f"(unavailable: {type(exc).__name__}: {exc})"
    return doc.splitlines()[0] if doc else ep.value


def version_line() -> str:
    """``t2s --version``: the installed distribution's version, else the library's."""
    try:
        version = importlib.metadata.version("think2seg")
    except importlib.metadata.PackageNotFoundError:
        from . import __version__ as version
    return f"t2s (think2seg) {version}"


def _find_registered(argv: Sequence[str]) -> tuple[Callable[[Sequence[str]], int], list[str]] | None:
    """The registered command that ``argv`` starts with, and the arguments left for it."""
    commands = registered_commands()
    for n in (2, 1):
        ep = commands.get(tuple(argv[:n])) if len(argv) >= n else None
        if ep is not None:
            return ep.load(), list(argv[n:])
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    real_stdout = sys.stdout
    if real_stdout is not None:
        sys.stdout = GuardedStdout(real_stdout)
    try:
        if argv[:1] == ["--version"]:  # without loading every registered command
            print(version_line())
            sys.stdout.flush()
            return 0
        try:
            found = _find_registered(argv)
            if found is not None:
                fn, rest = found
                return int(fn(rest) or 0)
            parser = build_parser()
            args = parser.parse_args(argv)
            return int(args.func(args) or 0)
        finally:  # also after --help: a failed write shows up here, where it is handled, not at exit
            _flush_stdout()
    except BrokenPipeError:
        _discard_stdout(real_stdout)
        return 128 + 13  # the status of a process ended by SIGPIPE, as the shell reports it
    except StdoutWriteError as exc:
        _discard_stdout(real_stdout)
        _say(f"t2s: error: cannot write the output to stdout: {exc.reason}; "
             "write it to a device or file with free space")
        return 2
    except T2SError as exc:
        _say(f"t2s: error: {exc}")
        return 2
    except KeyboardInterrupt:
        _say("t2s: interrupted")
        return 130
    finally:
        if isinstance(sys.stdout, GuardedStdout):
            sys.stdout = real_stdout


class StdoutWriteError(Exception):
    """Writing or flushing stdout failed for a reason other than a closed pipe (ENOSPC on
    /dev/full, EIO). Not an OSError, so no command's ``except OSError`` around its own
    files takes it for theirs."""

    def __init__(self, error: OSError) -> None:
        self.reason = error.strerror or str(error)
        super().__init__(self.reason)


class GuardedStdout:
    """``sys.stdout`` while a command runs: a failed write or flush raises
    :class:`StdoutWriteError` (a closed pipe still raises BrokenPipeError), so ``main`` tells
    a full output device from the command's own I/O errors. Everything else is the stream's."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._guarded(self._stream.write, text)

    def writelines(self, lines: Any) -> None:
        self._guarded(self._stream.writelines, lines)

    def flush(self) -> None:
        self._guarded(self._stream.flush)

    @staticmethod
    def _guarded(call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise StdoutWriteError(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except (AttributeError, ValueError):  # no stdout, or a closed one
        pass


def _say(line: str) -> None:
    """One line on stderr; a stderr that cannot take it either is left alone."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):
        pass


def _discard_stdout(stream: Any) -> None:
    """Point stdout at /dev/null once its reader is gone or its device is full, so that the
    interpreter's final flush of the unwritten output does not fail again at exit (a
    traceback-like "Exception ignored" and status 120)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced by an object without a descriptor
        pass


if __name__ == "__main__":
    sys.exit(main())
