"""The results directory and its SQLite leaderboard.

Layout of ``--out DIR`` (default ``results``)::

    DIR/leaderboard.sqlite        one row per *complete* run
    DIR/runs/<run_id>/run.yaml    configuration, versions, status
    DIR/runs/<run_id>/samples.jsonl
    DIR/runs/<run_id>/metrics.json
    DIR/tb/<run_id>/              TensorBoard events

A run is inserted in one transaction after its last sample, so readers never see a
partial run. Metrics are stored as fractions in [0, 1]; the leaderboard formats them.
The schema version lives in SQLite's ``user_version``.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from t2s_env import T2SError

SCHEMA_VERSION = 1
DB_NAME = "leaderboard.sqlite"

#: metrics.json key -> SQL column
METRIC_COLUMNS: dict[str, str] = {
    "gIoU": "giou",
    "cIoU": "ciou",
    "Pr@0.5": "pr50",
    "Pr@0.6": "pr60",
    "Pr@0.7": "pr70",
    "Pr@0.8": "pr80",
    "Pr@0.9": "pr90",
    "N-Acc": "nacc",
}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,
    agent        TEXT NOT NULL,
    segmenter    TEXT NOT NULL,
    dataset      TEXT NOT NULL,
    protocol     TEXT NOT NULL,
    n            INTEGER NOT NULL,
    n_failed     INTEGER NOT NULL,
    {", ".join(f"{c} REAL" for c in METRIC_COLUMNS.values())},
    mean_reward  REAL,
    created_at   TEXT,
    finished_at  TEXT,
    git_commit   TEXT,
    config_json  TEXT NOT NULL,
    metrics_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_dataset ON runs (dataset, protocol);
"""


class ResultsError(T2SError):
    """The results directory or its database cannot be used."""


@dataclass
class RunRow:
    """One complete run as the leaderboard stores it."""

    run_id: str
    agent: str
    segmenter: str
    dataset: str
    protocol: str
    n: int
    n_failed: int
    metrics: dict[str, float | None]
    mean_reward: float | None = None
    created_at: str | None = None
    finished_at: str | None = None
    git_commit: str | None = None
    config: dict[str, Any] = field(default_factory=dict)


class ResultsStore:
    """Paths under one results directory, and its database."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)

    @property
    def runs_dir(self) -> Path:
        return self.out / "runs"

    @property
    def tb_dir(self) -> Path:
        return self.out / "tb"

    @property
    def db_path(self) -> Path:
        return self.out / DB_NAME

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    # -- setup ------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the directory and the database, or fail with a clear message; called
        before any work so that an unwritable ``--out`` costs nothing."""
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.out, prefix=".write-test-"):
                pass
        except OSError as exc:
            raise ResultsError(
                f"cannot write to the output directory {self.out}: {exc.strerror or exc}; pass --out DIR with a writable folder"
            ) from None
        with self._connect(create=True):
            pass

    def _connect(self, create: bool) -> sqlite3.Connection:
        """A connection with the schema checked (and created when ``create``)."""
        try:
            if create:
                conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            else:
                conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30, isolation_level=None)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise ResultsError(f"cannot open {self.db_path}: {exc}; move it away to start a new leaderboard") from None
        if version > SCHEMA_VERSION:
            conn.close()
            raise ResultsError(
                f"{self.db_path} has schema version {version}, newer than this think2seg ({SCHEMA_VERSION}); upgrade think2seg"
            )
        if version < SCHEMA_VERSION:
            if not create:
                conn.close()
                raise ResultsError(f"{self.db_path} is not a think2seg leaderboard (schema version {version})")
            try:
                conn.execute("BEGIN IMMEDIATE")
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.close()
                raise ResultsError(f"cannot create the leaderboard in {self.db_path}: {exc}") from None
        return conn

    # -- writing ------------------------------------------------------------------------------
    def insert_run(self, row: RunRow) -> None:
        """Insert (or replace, when a finished run is finalised again) one run, atomically."""
        cols = ["run_id", "agent", "segmenter", "dataset", "protocol", "n", "n_failed",
                *METRIC_COLUMNS.values(), "mean_reward", "created_at", "finished_at", "git_commit",
                "config_json", "metrics_json"]
        values = [row.run_id, row.agent, row.segmenter, row.dataset, row.protocol, row.n, row.n_failed,
                  *(row.metrics.get(k) for k in METRIC_COLUMNS), row.mean_reward, row.created_at,
                  row.finished_at, row.git_commit, json.dumps(row.config, sort_keys=True, default=str),
                  json.dumps(row.metrics, sort_keys=True)]
        conn = self._connect(create=True)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                f"INSERT OR REPLACE INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", values
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise ResultsError(f"cannot record run {row.run_id} in {self.db_path}: {exc}") from None
        finally:
            conn.close()

    # -- reading ------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.db_path.is_file()

    def runs(self, dataset: str | None = None) -> list[RunRow]:
        """Every recorded run (oldest first), optionally of one ``name:split``."""
        if not self.exists():
            return []
        conn = self._connect(create=False)
        try:
            conn.row_factory = sqlite3.Row
            sql = "SELECT * FROM runs"
            params: tuple = ()
            if dataset is not None:
                sql += " WHERE dataset = ?"
                params = (dataset,)
            rows = conn.execute(sql + " ORDER BY finished_at, run_id", params).fetchall()
        except sqlite3.Error as exc:
            raise ResultsError(f"cannot read {self.db_path}: {exc}") from None
        finally:
            conn.close()
        return [_row(r) for r in rows]

    def has_run(self, run_id: str) -> bool:
        if not self.exists():
            return False
        conn = self._connect(create=False)
        try:
            return conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None
        finally:
            conn.close()


def _row(r: Mapping[str, Any]) -> RunRow:
    return RunRow(
        run_id=r["run_id"],
        agent=r["agent"],
        segmenter=r["segmenter"],
        dataset=r["dataset"],
        protocol=r["protocol"],
        n=r["n"],
        n_failed=r["n_failed"],
        metrics={k: r[c] for k, c in METRIC_COLUMNS.items()},
        mean_reward=r["mean_reward"],
        created_at=r["created_at"],
        finished_at=r["finished_at"],
        git_commit=r["git_commit"],
        config=json.loads(r["config_json"] or "{}"),
    )


__all__ = ["DB_NAME", "METRIC_COLUMNS", "ResultsError", "ResultsStore", "RunRow", "SCHEMA_VERSION"]
