"""``t2s leaderboard``: the recorded runs as a table, Markdown or CSV.

    t2s leaderboard [--out results] [--dataset synthetic:val] [--format table|md|csv]
                    [--history] [--fingerprints] [--compare RUN_A RUN_B]

Reads ``<out>/leaderboard.sqlite``, the database ``t2s bench --out <out>`` writes. By
default each *identity* (everything that changes a run's numbers: agent and model,
segmenter and its options, dataset, split and data fingerprint, the whole protocol,
prompt variant, seed and N) shows its latest full run; partial runs (``--limit``) are never
shown in place of a full one. ``--history`` lists every run. gIoU, cIoU and Pr@0.5 come
with their seeded 95% bootstrap interval. ``--compare A B`` gives the paired bootstrap
interval of A − B on the samples both runs scored. The published Think2Seg-RS figures
are listed as ``reported`` rows with the protocol they were measured under. Metrics are
shown as percentages (2 decimals).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

from t2s_env import ConfigError, T2SError
from t2s_env.datasets import parse_dataset_spec
from t2s_env.metrics import DEFAULT_BOOTSTRAP, INTERVAL_KEYS, paired_bootstrap
from t2s_env.protocol import MetricProtocol

from .results_store import ResultsStore, RunRow
from .rundir import RunDir

FORMATS = ("table", "md", "csv")
COLUMNS = ("agent", "segmenter", "dataset/split", "protocol", "N", "gIoU", "gIoU-CI95", "cIoU", "cIoU-CI95",
           "Pr@0.5", "Pr@0.5-CI95", "N-Acc", "source")
NUMERIC = {"N", "gIoU", "gIoU-CI95", "cIoU", "cIoU-CI95", "Pr@0.5", "Pr@0.5-CI95", "N-Acc"}
#: the CSV's metric columns: each interval as two numbers (percent) instead of the
#: table's "lo–hi" text, so that a spreadsheet or pandas reads them as numbers
CSV_COLUMNS = tuple(name for col in COLUMNS for name in (
    (f"{col.removesuffix('-CI95')}_ci95_low", f"{col.removesuffix('-CI95')}_ci95_high") if col.endswith("-CI95") else (col,)))
HISTORY_COLUMNS = ("run_id", "finished_at", "partial")
FINGERPRINT_COLUMNS = ("identity", "data", "model", "segmenter-weights")
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
    identity: str = ""
    partial: bool = False
    #: metric -> [lo, hi] (fractions)
    intervals: dict = field(default_factory=dict, compare=False, hash=False)
    #: data / model / segmenter weights fingerprints
    fingerprints: dict = field(default_factory=dict, compare=False, hash=False)


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


def _legacy_identity(row: RunRow) -> str:
    """Rows written before identities were recorded: what they recorded of one."""
    return "legacy:" + json.dumps([row.agent, row.segmenter, row.dataset, row.protocol, row.n,
                                   row.config.get("seed"), row.config.get("prompt_variant")], default=str)


def entry_from_run(row: RunRow) -> Entry:
    m = row.metrics
    return Entry(row.agent, row.segmenter, row.dataset, row.protocol, row.n, m.get("gIoU"), m.get("cIoU"),
                 m.get("Pr@0.5"), m.get("N-Acc"), "run", row.run_id, row.finished_at or "",
                 identity=row.identity or _legacy_identity(row),
                 # rows from before identities: a --limit run may have been cut short
                 partial=bool(row.partial) if row.identity else bool(row.config.get("limit")),
                 intervals=dict(row.extra.get("intervals") or {}),
                 fingerprints=dict(row.extra.get("fingerprints") or {}))


def dataset_matches(dataset: str, wanted: Sequence[str] | None) -> bool:
    """``wanted`` items are ``name:split`` (exact) or ``name`` (every split)."""
    if not wanted:
        return True
    return any(dataset == w or (":" not in w and dataset.partition(":")[0] == w) for w in wanted)


def collect(store: ResultsStore, datasets: Sequence[str] | None = None, all_runs: bool = False,
            reported: bool = True) -> list[Entry]:
    """Leaderboard entries: the latest full run per identity (every run, partial ones
    included, when ``all_runs``) plus the reported rows, sorted by dataset, protocol and
    gIoU (best first)."""
    runs = [entry_from_run(r) for r in store.runs() if dataset_matches(r.dataset, datasets)]
    if not all_runs:
        latest: dict[str, Entry] = {}
        for e in runs:  # oldest first, so the last one wins
            if not e.partial:
                latest[e.identity] = e
        runs = list(latest.values())
    entries = runs + [e for e in REPORTED if reported and dataset_matches(e.dataset, datasets)]
    return sorted(entries, key=lambda e: (e.dataset, e.protocol, -(e.giou if e.giou is not None else -1.0), e.agent))


def hidden_partial_runs(store: ResultsStore, datasets: Sequence[str] | None = None) -> int:
    return sum(1 for r in store.runs(warn=False)
               if dataset_matches(r.dataset, datasets) and entry_from_run(r).partial)


def _pct(v: float | None, missing: str) -> str:
    return missing if v is None else f"{100.0 * v:.2f}"


def _ci(e: Entry, key: str, missing: str) -> str:
    iv = e.intervals.get(key)
    return missing if not iv else f"{100.0 * iv[0]:.1f}–{100.0 * iv[1]:.1f}"


def _short(fp: Any) -> str:
    if isinstance(fp, dict):
        fp = fp.get("sha256") or fp.get("revision") or fp.get("id")
    return str(fp)[:12] if fp else ""


def columns(history: bool = False, fingerprints: bool = False) -> tuple[str, ...]:
    return (*COLUMNS, *(HISTORY_COLUMNS if history else ()), *(FINGERPRINT_COLUMNS if fingerprints else ()))


def _cells(e: Entry, missing: str, history: bool = False, fingerprints: bool = False) -> list[str]:
    out = [e.agent, e.segmenter, e.dataset, e.protocol, missing if e.n is None else str(e.n),
           _pct(e.giou, missing), _ci(e, "gIoU", missing), _pct(e.ciou, missing), _ci(e, "cIoU", missing),
           _pct(e.pr50, missing), _ci(e, "Pr@0.5", missing), _pct(e.nacc, missing), e.source]
    if history:
        out += [e.run_id or missing, e.finished_at or missing, "partial" if e.partial else ""]
    if fingerprints:
        fp = e.fingerprints
        out += [e.identity[:12] if e.identity and not e.identity.startswith("legacy:") else missing,
                _short(fp.get("data")) or missing, _short(fp.get("model")) or missing,
                _short(fp.get("segmenter")) or missing]
    return out


def format_table(entries: Sequence[Entry], history: bool = False, fingerprints: bool = False) -> str:
    """Aligned plain text: names left-aligned, numbers right-aligned."""
    cols = columns(history, fingerprints)
    rows = [list(cols)] + [_cells(e, MISSING, history, fingerprints) for e in entries]
    widths = [max(len(r[c]) for r in rows) for c in range(len(cols))]
    numeric = {k for k, c in enumerate(cols) if c in NUMERIC}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if k in numeric else c.ljust(w) for k, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(rows[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows[1:]]
    return "\n".join(out)


def format_markdown(entries: Sequence[Entry], history: bool = False, fingerprints: bool = False) -> str:
    """A GitHub-flavoured Markdown table."""
    cols = columns(history, fingerprints)
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---:" if c in NUMERIC else "---" for c in cols) + "|"]
    for e in entries:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(e, MISSING, history, fingerprints)) + " |")
    return "\n".join(out)


def _csv_metric_cells(e: Entry, table_cells: Sequence[str]) -> list[str]:
    """The table's cells with each interval split into its low and high bound."""
    out: list[str] = []
    for col, cell in zip(COLUMNS, table_cells):
        if col.endswith("-CI95"):
            iv = e.intervals.get(col.removesuffix("-CI95"))
            out += [_pct(iv[0], ""), _pct(iv[1], "")] if iv else ["", ""]
        else:
            out.append(cell)
    return out


def format_csv(entries: Sequence[Entry], history: bool = False, fingerprints: bool = False) -> str:
    """CSV of :data:`CSV_COLUMNS` (the table's, each interval as ``<metric>_ci95_low`` and
    ``_high``, numbers in percent; empty cells for missing values) plus run_id and
    finished_at (and partial with ``history``)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    extra = ["run_id", "finished_at"] + (["partial"] if history else [])
    w.writerow([*CSV_COLUMNS, *extra, *(FINGERPRINT_COLUMNS if fingerprints else ())])
    for e in entries:
        cells = _cells(e, "", history=True, fingerprints=fingerprints)
        base, hist, fps = cells[:len(COLUMNS)], cells[len(COLUMNS):len(COLUMNS) + 3], cells[len(COLUMNS) + 3:]
        w.writerow([*_csv_metric_cells(e, base), *hist[:len(extra)], *fps])
    return buf.getvalue().rstrip("\n")


FORMATTERS = {"table": format_table, "md": format_markdown, "csv": format_csv}


def render_leaderboard(store: ResultsStore, datasets: Sequence[str] | None = None, fmt: str = "table",
                       all_runs: bool = False, fingerprints: bool = False) -> str:
    if fmt not in FORMATTERS:
        raise ConfigError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    return FORMATTERS[fmt](collect(store, datasets, all_runs), history=all_runs, fingerprints=fingerprints)


# -- paired comparison ------------------------------------------------------------------------

def _run_records(store: ResultsStore, run_id: str) -> tuple[dict, list[dict]]:
    rundir = RunDir(store.run_dir(run_id))
    if not rundir.path.is_dir():
        raise T2SError(f"no run {run_id!r} in {store.runs_dir}; `t2s leaderboard --history --out {store.out}` lists them")
    config = rundir.read_config()
    if config.get("status") != "complete":
        raise T2SError(f"run {run_id} is {config.get('status', 'not complete')}; finish it first "
                       f"(t2s bench --out {store.out} --resume {run_id})")
    records, _ = rundir.read_records()
    return config, records


def compare_runs(store: ResultsStore, run_a: str, run_b: str, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> dict:
    """Paired bootstrap of A − B; both runs must share dataset and protocol."""
    cfg_a, rec_a = _run_records(store, run_a)
    cfg_b, rec_b = _run_records(store, run_b)
    for key in ("dataset", "protocol"):
        if cfg_a.get(key) != cfg_b.get(key):
            raise ConfigError(f"runs {run_a} and {run_b} differ in {key} ({cfg_a.get(key)!r} vs {cfg_b.get(key)!r}); "
                              "a paired comparison needs the same samples scored the same way")
    protocol = MetricProtocol.from_dict(cfg_a["protocol"])
    out = paired_bootstrap(rec_a, rec_b, protocol, n_boot=n_boot, seed=seed)
    out.update(run_a=run_a, run_b=run_b, agent_a=cfg_a["agent"]["label"], agent_b=cfg_b["agent"]["label"],
               dataset=cfg_a["dataset"], protocol=protocol.name)
    return out


def format_comparison(c: dict) -> str:
    lines = [f"A = {c['agent_a']} ({c['run_a']})", f"B = {c['agent_b']} ({c['run_b']})",
             f"{c['dataset']}, protocol {c['protocol']}, {c['n']} paired samples, "
             f"{c['n_boot']} bootstrap resamples (seed {c['seed']})", ""]
    rows = [["metric", "A", "B", "A - B", "95% CI of A - B"]]
    for key in INTERVAL_KEYS:
        d = c[key]
        iv = d["interval"]
        rows.append([key, _pct(d["a"], MISSING), _pct(d["b"], MISSING),
                     MISSING if d["diff"] is None else f"{100.0 * d['diff']:+.2f}",
                     MISSING if not iv else f"{100.0 * iv[0]:+.2f} … {100.0 * iv[1]:+.2f}"])
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines += ["  ".join(cell.ljust(w) if k == 0 else cell.rjust(w) for k, (cell, w) in enumerate(zip(r, widths))).rstrip()
              for r in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="t2s leaderboard",
        description="Print the leaderboard of complete runs recorded by `t2s bench` (one row per "
        "configuration identity, latest full run), with the published Think2Seg-RS figures as "
        "'reported' rows. Metrics in percent with 95%% bootstrap intervals.",
    )
    p.add_argument("--out", default="results", metavar="DIR", help="results directory that `t2s bench --out` wrote (default results)")
    p.add_argument("--dataset", action="append", metavar="NAME[:SPLIT]",
                   help="only these datasets (repeatable or comma-separated; a bare name means every split)")
    p.add_argument("--format", default="table", choices=FORMATS, help="table (default), md or csv")
    p.add_argument("--history", "--all-runs", dest="history", action="store_true",
                   help="every run (partial ones included) with its id and time, instead of the latest per identity")
    p.add_argument("--fingerprints", action="store_true",
                   help="add the identity, data, model and segmenter-weight fingerprints")
    p.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                   help="paired bootstrap interval of RUN_A - RUN_B (same dataset and protocol)")
    p.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, metavar="N",
                   help=f"resamples for --compare (default {DEFAULT_BOOTSTRAP})")
    p.add_argument("--bootstrap-seed", type=int, default=0, metavar="S", help="seed of the --compare resamples (default 0)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Print the leaderboard of recorded runs."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if not str(args.out).strip():
        raise ConfigError("--out is empty; pass the results directory (default results)")
    store = ResultsStore(args.out)
    if args.compare:
        if args.bootstrap < 1:
            raise ConfigError(f"--bootstrap must be at least 1, got {args.bootstrap}")
        print(format_comparison(compare_runs(store, *args.compare, n_boot=args.bootstrap, seed=args.bootstrap_seed)))
        return 0
    wanted = [d.strip() for v in args.dataset or () for d in v.split(",") if d.strip()]
    for d in wanted:
        parse_dataset_spec(d)  # an unknown name lists the valid ones
    if not store.exists():
        print(f"t2s leaderboard: no runs recorded in {store.db_path} yet (run `t2s bench --out {args.out}`); "
              "showing reported figures only", file=sys.stderr)
    print(render_leaderboard(store, wanted or None, args.format, args.history, args.fingerprints))
    if not args.history and store.exists():
        hidden = hidden_partial_runs(store, wanted or None)
        if hidden:
            print(f"t2s leaderboard: {hidden} partial run(s) (--limit) not shown; --history lists them", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from t2s_env.cli import main as t2s_main

    sys.exit(t2s_main(["leaderboard", *sys.argv[1:]]))
