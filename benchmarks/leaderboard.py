"""``t2s leaderboard``: the recorded runs as a table, Markdown or CSV.

    t2s leaderboard [--out results] [--dataset synthetic:val] [--format table|md|csv] [--all-runs]

Reads ``<out>/leaderboard.sqlite``, the database ``t2s bench --out <out>`` writes. By
default each (agent, segmenter, dataset, protocol) shows its latest run; ``--all-runs``
shows every run. The published Think2Seg-RS figures are listed as ``reported`` rows with
the protocol they were measured under. Metrics are shown as percentages (2 decimals).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass
from typing import Sequence

from t2s_env import ConfigError
from t2s_env.datasets import parse_dataset_spec

from .results_store import ResultsStore, RunRow

FORMATS = ("table", "md", "csv")
COLUMNS = ("agent", "segmenter", "dataset/split", "protocol", "N", "gIoU", "cIoU", "Pr@0.5", "N-Acc", "source")
MISSING = "—"


@dataclass(frozen=True)
class Entry:
    """One leaderboard line; metrics are fractions (None: not available)."""

    agent: str
    segmenter: str
    dataset: str
    protocol: str
    n: int | None
    giou: float | None
    ciou: float | None
    pr50: float | None
    nacc: float | None
    source: str  # "run" or "reported"
    run_id: str = ""
    finished_at: str = ""
    note: str = ""


#: Published figures (SPEC §8, from the paper abstract, arXiv 2512.19302). The abstract does
#: not say which model size; its protocol is upstream's evaluation (t2s-compat) with
#: SAM2.1 hiera-small; N is the EarthReason test split size.
REPORTED: tuple[Entry, ...] = (
    Entry(
        agent="Think2Seg-RS",
        segmenter="sam2.1-small",
        dataset="earthreason:test",
        protocol="t2s-compat",
        n=1928,
        giou=0.7336,
        ciou=0.7560,
        pr50=None,
        nacc=None,
        source="reported",
        note="paper abstract (arXiv 2512.19302); model size not stated",
    ),
)


def entry_from_run(row: RunRow) -> Entry:
    m = row.metrics
    return Entry(row.agent, row.segmenter, row.dataset, row.protocol, row.n, m.get("gIoU"), m.get("cIoU"),
                 m.get("Pr@0.5"), m.get("N-Acc"), "run", row.run_id, row.finished_at or "")


def dataset_matches(dataset: str, wanted: Sequence[str] | None) -> bool:
    """``wanted`` items are ``name:split`` (exact) or ``name`` (every split)."""
    if not wanted:
        return True
    return any(dataset == w or (":" not in w and dataset.partition(":")[0] == w) for w in wanted)


def collect(store: ResultsStore, datasets: Sequence[str] | None = None, all_runs: bool = False,
            reported: bool = True) -> list[Entry]:
    """Leaderboard entries: runs (latest per configuration unless ``all_runs``) plus the
    reported rows, sorted by dataset, protocol and gIoU (best first)."""
    runs = [entry_from_run(r) for r in store.runs() if dataset_matches(r.dataset, datasets)]
    if not all_runs:
        latest: dict[tuple, Entry] = {}
        for e in runs:  # oldest first, so the last one wins
            latest[(e.agent, e.segmenter, e.dataset, e.protocol)] = e
        runs = list(latest.values())
    entries = runs + [e for e in REPORTED if reported and dataset_matches(e.dataset, datasets)]
    return sorted(entries, key=lambda e: (e.dataset, e.protocol, -(e.giou if e.giou is not None else -1.0), e.agent))


def _pct(v: float | None, missing: str) -> str:
    return missing if v is None else f"{100.0 * v:.2f}"


def _cells(e: Entry, missing: str) -> list[str]:
    return [e.agent, e.segmenter, e.dataset, e.protocol, missing if e.n is None else str(e.n),
            _pct(e.giou, missing), _pct(e.ciou, missing), _pct(e.pr50, missing), _pct(e.nacc, missing), e.source]


def format_table(entries: Sequence[Entry]) -> str:
    """Aligned plain text: names left-aligned, numbers right-aligned."""
    rows = [list(COLUMNS)] + [_cells(e, MISSING) for e in entries]
    widths = [max(len(r[c]) for r in rows) for c in range(len(COLUMNS))]
    numeric = {COLUMNS.index(c) for c in ("N", "gIoU", "cIoU", "Pr@0.5", "N-Acc")}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if k in numeric else c.ljust(w) for k, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(rows[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows[1:]]
    return "\n".join(out)


def format_markdown(entries: Sequence[Entry]) -> str:
    """A GitHub-flavoured Markdown table."""
    numeric = {"N", "gIoU", "cIoU", "Pr@0.5", "N-Acc"}
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---:" if c in numeric else "---" for c in COLUMNS) + "|"]
    for e in entries:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(e, MISSING)) + " |")
    return "\n".join(out)


def format_csv(entries: Sequence[Entry]) -> str:
    """CSV with the same columns (empty cells for missing values) plus run_id and finished_at."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*COLUMNS, "run_id", "finished_at"])
    for e in entries:
        w.writerow([*_cells(e, ""), e.run_id, e.finished_at])
    return buf.getvalue().rstrip("\n")


FORMATTERS = {"table": format_table, "md": format_markdown, "csv": format_csv}


def render_leaderboard(store: ResultsStore, datasets: Sequence[str] | None = None, fmt: str = "table",
                       all_runs: bool = False) -> str:
    if fmt not in FORMATTERS:
        raise ConfigError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    return FORMATTERS[fmt](collect(store, datasets, all_runs))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="t2s leaderboard",
        description="Print the leaderboard of complete runs recorded by `t2s bench`, with the "
        "published Think2Seg-RS figures as 'reported' rows. Metrics in percent.",
    )
    p.add_argument("--out", default="results", metavar="DIR", help="results directory that `t2s bench --out` wrote (default results)")
    p.add_argument("--dataset", action="append", metavar="NAME[:SPLIT]",
                   help="only these datasets (repeatable or comma-separated; a bare name means every split)")
    p.add_argument("--format", default="table", choices=FORMATS, help="table (default), md or csv")
    p.add_argument("--all-runs", action="store_true", help="every run instead of the latest per configuration")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Print the leaderboard of recorded runs."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    wanted = [d.strip() for v in args.dataset or () for d in v.split(",") if d.strip()]
    for d in wanted:
        parse_dataset_spec(d)  # an unknown name lists the valid ones
    store = ResultsStore(args.out)
    if not store.exists():
        print(f"t2s leaderboard: no runs recorded in {store.db_path} yet (run `t2s bench --out {args.out}`); "
              "showing reported figures only", file=sys.stderr)
    print(render_leaderboard(store, wanted or None, args.format, args.all_runs))
    return 0


if __name__ == "__main__":
    from t2s_env.cli import main as t2s_main

    sys.exit(t2s_main(["leaderboard", *sys.argv[1:]]))
