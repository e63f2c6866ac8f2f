"""The results directory and its SQLite leaderboard.

Layout of ``--out DIR`` (default ``results``)::

    DIR/leaderboard.sqlite        one row per *complete* run (partial ones flagged)
    DIR/runs/<run_id>/run.yaml    configuration, versions, status
    DIR/runs/<run_id>/samples.jsonl
    DIR/runs/<run_id>/metrics.json
    DIR/tb/<run_id>/              TensorBoard events

A run is inserted in one transaction after its last sample, so readers never see a
half-recorded run. Metrics are stored as fractions in [0, 1]; the leaderboard formats them.
The schema version lives in SQLite's ``user_version``.

Each row carries its *identity*: a hash of everything that changes its numbers (agent and
model fingerprint, segmenter and its options, dataset, split and data fingerprint, the
whole protocol, prompt variant, seed and N). A run cut short by ``--limit`` is *partial*:
it is recorded, but never shown in place of a full run.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from t2s_env import T2SError

SCHEMA_VERSION = 2
#: columns added by schema 2 (a version-1 database gains them on its next write)
_V2_COLUMNS = (("identity", "TEXT"), ("partial", "INTEGER NOT NULL DEFAULT 0"), ("extra_json", "TEXT"))
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
    metrics_json TEXT NOT NULL,
    identity     TEXT,
    partial      INTEGER NOT NULL DEFAULT 0,
    extra_json   TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_dataset ON runs (dataset, protocol);
"""

_BUSY = "busy"


class ResultsError(T2SError):
    """The results directory or its database cannot be used."""


def _is_busy(exc: sqlite3.Error) -> bool:
    return "locked" in str(exc).lower() or "busy" in str(exc).lower()


def _busy_message(path: Path, what: str) -> str:
    return f"{path} is busy (another t2s bench is writing it); {what} failed after waiting, retry in a moment"


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
    identity: str | None = None
    partial: bool = False
    #: intervals (bootstrap), fingerprints (data, model, segmenter weights)
    extra: dict[str, Any] = field(default_factory=dict)


class ResultsStore:
    """Paths under one results directory, and its database."""

    def __init__(self, out: str | Path, timeout: float = 30.0) -> None:
        self.out = Path(out)
        self.timeout = timeout
        #: rows that could not be read, as (run_id or rowid, reason), from the last runs()
        self.skipped: list[tuple[str, str]] = []

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
        """A connection with the schema checked (created or upgraded when ``create``)."""
        try:
            if create:
                conn = sqlite3.connect(self.db_path, timeout=self.timeout, isolation_level=None)
            else:
                conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=self.timeout,
                                       isolation_level=None)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            if _is_busy(exc):
                raise ResultsError(_busy_message(self.db_path, "opening it")) from None
            raise ResultsError(f"cannot open {self.db_path}: {exc}; it is not a readable SQLite leaderboard: "
                               "move it away to start a new one") from None
        if version > SCHEMA_VERSION:
            conn.close()
            raise ResultsError(
                f"{self.db_path} has schema version {version}, newer than this think2seg ({SCHEMA_VERSION}); upgrade think2seg"
            )
        if version == 0 and not create:
            conn.close()
            raise ResultsError(f"{self.db_path} is not a think2seg leaderboard (schema version {version})")
        if version < SCHEMA_VERSION and create:
            try:
                conn.execute("BEGIN IMMEDIATE")
                if version == 0:
                    for stmt in filter(str.strip, _SCHEMA.split(";")):
                        conn.execute(stmt)
                else:  # 1 -> 2: new columns, old rows keep NULL identity (shown by their config)
                    for name, decl in _V2_COLUMNS:
                        conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {decl}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.close()
                if _is_busy(exc):
                    raise ResultsError(_busy_message(self.db_path, "creating the leaderboard")) from None
                raise ResultsError(f"cannot create the leaderboard in {self.db_path}: {exc}") from None
        return conn

    # -- writing ------------------------------------------------------------------------------
    def insert_run(self, row: RunRow) -> None:
        """Insert (or replace, when a finished run is finalised again) one run, atomically."""
        cols = ["run_id", "agent", "segmenter", "dataset", "protocol", "n", "n_failed",
                *METRIC_COLUMNS.values(), "mean_reward", "created_at", "finished_at", "git_commit",
                "config_json", "metrics_json", "identity", "partial", "extra_json"]
        values = [row.run_id, row.agent, row.segmenter, row.dataset, row.protocol, row.n, row.n_failed,
                  *(row.metrics.get(k) for k in METRIC_COLUMNS), row.mean_reward, row.created_at,
                  row.finished_at, row.git_commit, json.dumps(row.config, sort_keys=True, default=str),
                  json.dumps(row.metrics, sort_keys=True), row.identity, int(bool(row.partial)),
                  json.dumps(row.extra, sort_keys=True, default=str)]
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
            if _is_busy(exc):
                raise ResultsError(_busy_message(self.db_path, f"recording run {row.run_id}")) from None
            raise ResultsError(f"cannot record run {row.run_id} in {self.db_path}: {exc}") from None
        finally:
            conn.close()

    # -- reading ------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.db_path.is_file()

    def runs(self, dataset: str | None = None, warn: bool = True) -> list[RunRow]:
        """Every recorded run (oldest first), optionally of one ``name:split``. A row that
        cannot be decoded is skipped with a warning naming it (kept in :attr:`skipped`)."""
        self.skipped = []
        if not self.exists():
            return []
        conn = self._connect(create=False)
        try:
            conn.row_factory = sqlite3.Row
            sql = "SELECT rowid AS _rowid, * FROM runs"
            params: tuple = ()
            if dataset is not None:
                sql += " WHERE dataset = ?"
                params = (dataset,)
            rows = conn.execute(sql + " ORDER BY finished_at, run_id", params).fetchall()
        except sqlite3.Error as exc:
            if _is_busy(exc):
                raise ResultsError(_busy_message(self.db_path, "reading it")) from None
            raise ResultsError(f"cannot read {self.db_path}: {exc}") from None
        finally:
            conn.close()
        out = []
        for r in rows:
            try:
                out.append(_row(r))
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                name = r["run_id"] if isinstance(r["run_id"], str) else f"rowid {r['_rowid']}"
                self.skipped.append((name, f"{type(exc).__name__}: {exc}"[:200]))
                if warn:
                    print(f"t2s: warning: skipping leaderboard row {name} in {self.db_path}: it cannot be read "
                          f"({type(exc).__name__}); delete it with: sqlite3 {self.db_path} "
                          f"\"DELETE FROM runs WHERE rowid={r['_rowid']}\"", file=sys.stderr)
        return out

    def get_run(self, run_id: str) -> RunRow | None:
        for r in self.runs(warn=False):
            if r.run_id == run_id:
                return r
        return None

    def has_run(self, run_id: str) -> bool:
        if not self.exists():
            return False
        conn = self._connect(create=False)
        try:
            return conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None
        except sqlite3.Error as exc:
            if _is_busy(exc):
                raise ResultsError(_busy_message(self.db_path, "reading it")) from None
            raise ResultsError(f"cannot read {self.db_path}: {exc}") from None
        finally:
            conn.close()


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} is {value!r}, not text")
    return value


def _number(value: Any, what: str, integer: bool = False) -> Any:
    if value is None and not integer:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ValueError(f"{what} is {value!r}, not a number")
    return value


def _row(r: Mapping[str, Any]) -> RunRow:
    keys = r.keys() if hasattr(r, "keys") else r
    config = json.loads(r["config_json"] or "{}")
    extra = json.loads(r["extra_json"] or "{}") if "extra_json" in keys else {}
    if not isinstance(config, dict) or not isinstance(extra, dict):
        raise ValueError("config_json or extra_json is not a JSON object")
    return RunRow(
        run_id=_text(r["run_id"], "run_id"),
        agent=_text(r["agent"], "agent"),
        segmenter=_text(r["segmenter"], "segmenter"),
        dataset=_text(r["dataset"], "dataset"),
        protocol=_text(r["protocol"], "protocol"),
        n=_number(r["n"], "n", integer=True),
        n_failed=_number(r["n_failed"], "n_failed", integer=True),
        metrics={k: _number(r[c], k) for k, c in METRIC_COLUMNS.items()},
        mean_reward=_number(r["mean_reward"], "mean_reward"),
        created_at=r["created_at"],
        finished_at=r["finished_at"],
        git_commit=r["git_commit"],
        config=config,
        identity=r["identity"] if "identity" in keys else None,
        partial=bool(r["partial"]) if "partial" in keys else False,
        extra=extra,
    )


__all__ = ["DB_NAME", "METRIC_COLUMNS", "ResultsError", "ResultsStore", "RunRow", "SCHEMA_VERSION"]
