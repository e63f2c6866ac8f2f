"""`t2s leaderboard`: formats, reported rows, latest-per-configuration, filters, errors."""

from __future__ import annotations

import csv
import io
import sqlite3

import pytest

from think2seg.benchmarks.leaderboard import COLUMNS, CSV_COLUMNS, collect, render_leaderboard
from think2seg.benchmarks.results_store import ResultsStore, RunRow
from t2s_env.cli import main as t2s_main


def row(run_id, agent, giou, dataset="synthetic:val", finished="2026-01-01T00:00:00+00:00", **metrics):
    m = {"gIoU": giou, "cIoU": metrics.get("ciou", giou), "Pr@0.5": metrics.get("pr50", 1.0), "N-Acc": metrics.get("nacc")}
    return RunRow(run_id=run_id, agent=agent, segmenter="grabcut", dataset=dataset, protocol="strict",
                  n=40, n_failed=0, metrics=m, finished_at=finished)


@pytest.fixture
def store(tmp_path):
    s = ResultsStore(tmp_path)
    s.prepare()
    s.insert_run(row("r1", "oracle-box", 0.5, finished="2026-01-01T00:00:00+00:00"))
    s.insert_run(row("r2", "oracle-box", 0.91234, finished="2026-01-02T00:00:00+00:00", nacc=1.0))
    s.insert_run(row("r3", "empty", 0.1, finished="2026-01-01T00:00:00+00:00"))
    return s


def leaderboard(*argv) -> int:
    return t2s_main(["leaderboard", *argv])


def test_table_format(store, capsys):
    assert leaderboard("--out", str(store.out)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == list(COLUMNS)
    assert set(lines[1]) <= {"-", " "}
    body = "\n".join(lines[2:])
    assert "91.23" in body and "100.00" in body  # percentages, 2 decimals; latest oracle-box run
    assert "50.00" not in body  # the older run of the same configuration is hidden
    reported = [line for line in lines if "reported" in line]
    assert len(reported) == 1
    assert "73.36" in reported[0] and "75.60" in reported[0] and "t2s-compat" in reported[0]
    assert "sam2.1-small" in reported[0] and "1928" in reported[0]


def test_markdown_format(store, capsys):
    assert leaderboard("--out", str(store.out), "--format", "md") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| " + " | ".join(COLUMNS) + " |"
    assert lines[1].startswith("|---") and lines[1].count("|") == len(COLUMNS) + 1
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines[2:])
    assert len(lines) == 2 + 3  # two configurations + the reported row


def test_csv_format(store, capsys):
    assert leaderboard("--out", str(store.out), "--format", "csv", "--all-runs") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == [*CSV_COLUMNS, "run_id", "finished_at", "partial"]
    assert len(rows) == 4  # every run, plus reported
    paper = next(r for r in rows if r["source"] == "reported")
    assert paper["gIoU"] == "73.36" and paper["cIoU"] == "75.60" and paper["Pr@0.5"] == "" and paper["N-Acc"] == ""
    assert paper["dataset/split"] == "earthreason:test" and paper["protocol"] == "t2s-compat"
    runs = [r for r in rows if r["source"] == "run"]
    assert {r["run_id"] for r in runs} == {"r1", "r2", "r3"}


def test_csv_intervals_are_numeric_low_and_high_columns(tmp_path, capsys):
    s = ResultsStore(tmp_path)
    s.prepare()
    intervals = {"gIoU": [0.743, 0.8171], "cIoU": [0.5, 0.6], "Pr@0.5": [0.0, 1.0]}
    s.insert_run(RunRow(**{**vars(row("r1", "oracle-box", 0.78)), "extra": {"intervals": intervals}}))
    assert leaderboard("--out", str(tmp_path), "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    run = next(r for r in rows if r["source"] == "run")
    assert "gIoU-CI95" not in run  # no "74.3–81.7" text column
    for key, (low, high) in intervals.items():  # numbers in percent, 2 decimals like the metrics
        assert float(run[f"{key}_ci95_low"]) == pytest.approx(100 * low, abs=0.005)
        assert float(run[f"{key}_ci95_high"]) == pytest.approx(100 * high, abs=0.005)
    assert [run[f"gIoU_ci95_{side}"] for side in ("low", "high")] == ["74.30", "81.71"]
    paper = next(r for r in rows if r["source"] == "reported")  # no interval recorded: empty cells
    assert paper["gIoU_ci95_low"] == paper["gIoU_ci95_high"] == ""
    # the table keeps the readable "lo–hi" column
    assert leaderboard("--out", str(tmp_path)) == 0
    assert "74.3–81.7" in capsys.readouterr().out


def test_rows_sorted_by_giou_within_a_dataset(store):
    entries = [e for e in collect(store) if e.dataset == "synthetic:val"]
    assert [e.agent for e in entries] == ["oracle-box", "empty"]


def test_dataset_filter(store, capsys):
    assert leaderboard("--out", str(store.out), "--dataset", "synthetic:val") == 0
    out = capsys.readouterr().out
    assert "oracle-box" in out and "reported" not in out
    assert leaderboard("--out", str(store.out), "--dataset", "earthreason") == 0
    out = capsys.readouterr().out
    assert "reported" in out and "oracle-box" not in out
    assert leaderboard("--out", str(store.out), "--dataset", "nope") == 2
    assert "synthetic" in capsys.readouterr().err


def test_missing_database_shows_reported_rows(tmp_path, capsys):
    assert leaderboard("--out", str(tmp_path / "none")) == 0
    captured = capsys.readouterr()
    assert "reported" in captured.out and "no runs recorded" in captured.err


def test_newer_schema_is_refused(tmp_path, capsys):
    s = ResultsStore(tmp_path)
    s.prepare()
    with sqlite3.connect(s.db_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    assert leaderboard("--out", str(tmp_path)) == 2
    assert "schema version 99" in capsys.readouterr().err


def test_reinserting_a_run_replaces_it(store):
    store.insert_run(row("r3", "empty", 0.2))
    assert [r.metrics["gIoU"] for r in store.runs() if r.run_id == "r3"] == [0.2]
    assert "20.00" in render_leaderboard(store, fmt="table")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--compare", "no-such-run", "other"], "no run 'no-such-run'"),
        (["--compare", "a", "b", "--bootstrap", "0"], "--bootstrap must be at least 1"),
        (["--out", ""], "--out is empty"),
    ],
)
def test_bad_leaderboard_options_are_one_line(store, capsys, argv, needle):
    args = argv if argv[:1] == ["--out"] else ["--out", str(store.out), *argv]
    assert leaderboard(*args) == 2
    err = capsys.readouterr().err
    assert err.startswith("t2s: error:") and err.count("\n") == 1 and needle in err


def test_a_schema_1_database_is_read_and_upgraded_in_place(tmp_path):
    """Leaderboards written before identities keep working: read as they are, upgraded on
    the next write."""
    db = tmp_path / "leaderboard.sqlite"
    with sqlite3.connect(db) as conn:
        conn.executescript(
            "CREATE TABLE runs (run_id TEXT PRIMARY KEY, agent TEXT NOT NULL, segmenter TEXT NOT NULL, "
            "dataset TEXT NOT NULL, protocol TEXT NOT NULL, n INTEGER NOT NULL, n_failed INTEGER NOT NULL, "
            "giou REAL, ciou REAL, pr50 REAL, pr60 REAL, pr70 REAL, pr80 REAL, pr90 REAL, nacc REAL, "
            "mean_reward REAL, created_at TEXT, finished_at TEXT, git_commit TEXT, config_json TEXT NOT NULL, "
            "metrics_json TEXT NOT NULL);"
            "INSERT INTO runs VALUES ('old', 'oracle-box', 'grabcut', 'synthetic:val', 'strict', 40, 0, 0.8, 0.5, "
            "0.85, 0.8, 0.7, 0.6, 0.5, 1.0, 2.9, 't0', '2026-01-01', 'abc', '{\"limit\": null}', '{}');"
            "PRAGMA user_version = 1;")
    s = ResultsStore(tmp_path)
    (old,) = s.runs()
    assert old.run_id == "old" and old.identity is None and not old.partial
    s.insert_run(row("new", "empty", 0.1))
    assert {r.run_id for r in s.runs()} == {"old", "new"}
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
