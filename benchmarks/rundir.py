"""One run's folder: ``run.yaml``, ``samples.jsonl`` (append-only), ``metrics.json`` and
the ``.lock`` that one process holds while it executes or resumes the run.

``samples.jsonl`` is written one batch at a time, unbuffered and fsynced, so a killed run
loses at most the batch in flight, and a failed write (a full disk) leaves nothing in a
buffer for closing to write again. A kill can leave a partial last line; opening the file
for appending cuts it off, and those samples are redone.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from t2s_env import T2SError

RUN_YAML = "run.yaml"
SAMPLES = "samples.jsonl"
METRICS = "metrics.json"
LOCK = ".lock"


def utc_now() -> str:
    """The time stamps of run.yaml (``created_at``, ``finished_at``) and of a lock's holder."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may take only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so readers see old or new, never half.
    A failed write (e.g. a full disk) removes the temporary file and raises."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            _write_all(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _close_quietly(fd: int) -> None:
    """``os.close``, ignoring its error: Linux closes the descriptor even when close reports
    one, and the callers' data was fsynced before."""
    try:
        os.close(fd)
    except OSError:
        pass


class RunLock:
    """The exclusive lock on a run folder (``flock`` on its ``.lock`` file): one process
    executes or resumes a run at a time. The kernel releases it when the process ends,
    crash or kill included, so a lock is never stale."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path) / LOCK
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        """Take the lock, or raise a one-line T2SError naming the run and its holder."""
        run_id = self.path.parent.name
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise T2SError(f"cannot lock run {run_id} ({self.path}): {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 1000, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise T2SError(f"run {run_id} is in use by {holder}; wait until it ends (or stop it), then retry") from None
        self._fd = fd
        holder = f"pid {os.getpid()} on {socket.gethostname()} since {utc_now()} ({' '.join(sys.argv)[:300]})"
        try:
            os.ftruncate(fd, 0)
            _write_all(fd, holder.encode("utf-8"))
        except OSError:  # a full disk: the lock holds all the same, only its holder's name is missing
            pass
        return self

    def release(self) -> None:
        """Close the descriptor, which releases the flock."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            _close_quietly(fd)


class RunDir:
    """Files of the run in ``path`` (created on :meth:`create`)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None  # samples.jsonl, open for appending

    @property
    def run_yaml(self) -> Path:
        return self.path / RUN_YAML

    @property
    def samples_path(self) -> Path:
        return self.path / SAMPLES

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    def create(self, config: Mapping[str, Any]) -> RunLock:
        """Make the folder, lock it (before any file is written: nobody may resume a run
        half created), write run.yaml and an empty samples.jsonl. Returns the held lock.
        A failure (a full disk) removes the folder: a run without run.yaml cannot resume."""
        self.path.mkdir(parents=True, exist_ok=False)
        try:
            lock = RunLock(self.path).acquire()
            try:
                self.write_config(config)
                self.samples_path.touch()
            except BaseException:
                lock.release()
                raise
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise
        return lock

    # -- run.yaml ---------------------------------------------------------------------------
    def write_config(self, config: Mapping[str, Any]) -> None:
        write_atomic(self.run_yaml, yaml.safe_dump(_plain(config), sort_keys=False, allow_unicode=True))

    def read_config(self) -> dict[str, Any]:
        try:
            data = yaml.safe_load(self.run_yaml.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise T2SError(f"{self.run_yaml} is missing: {self.path} is not a run folder") from None
        except (OSError, yaml.YAMLError) as exc:
            raise T2SError(f"cannot read {self.run_yaml}: {exc}") from None
        if not isinstance(data, dict):
            raise T2SError(f"{self.run_yaml} does not hold a run configuration")
        return data

    # -- samples.jsonl ----------------------------------------------------------------------
    def read_records(self) -> tuple[list[dict[str, Any]], int]:
        """(records of complete lines, byte length of those lines). An unterminated last
        line (a kill mid-write) is ignored; a broken line before it is an error."""
        try:
            data = self.samples_path.read_bytes()
        except FileNotFoundError:
            return [], 0
        records: list[dict[str, Any]] = []
        seen: set[str] = set()
        good_end = 0
        pos = 0
        lineno = 0
        while pos < len(data):
            end = data.find(b"\n", pos)
            if end < 0:
                break  # the partial line a kill leaves behind
            lineno += 1
            line = data[pos:end]
            pos = end + 1
            if line.strip():
                try:
                    rec = json.loads(line)
                except ValueError:
                    raise T2SError(
                        f"{self.samples_path} line {lineno} is not JSON; delete that line to redo its sample"
                    ) from None
                if not isinstance(rec, dict) or "sample_id" not in rec:
                    raise T2SError(f"{self.samples_path} line {lineno} is not a sample record")
                if rec["sample_id"] not in seen:
                    seen.add(rec["sample_id"])
                    records.append(rec)
            good_end = pos
        return records, good_end

    def open_for_append(self) -> list[dict[str, Any]]:
        """Cut any partial last line, open for appending, and return the records so far."""
        records, good_end = self.read_records()
        if self.samples_path.exists() and self.samples_path.stat().st_size != good_end:
            with open(self.samples_path, "r+b") as f:
                f.truncate(good_end)
        self._fd = os.open(self.samples_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return records

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append records and make them durable (one unbuffered write + fsync per call)."""
        if self._fd is None:
            raise RuntimeError("open_for_append() first")
        _write_all(self._fd, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8"))
        os.fsync(self._fd)

    def close(self) -> None:
        """Close samples.jsonl. Every append was fsynced, so closing loses nothing: its error
        is never raised over the real one."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            _close_quietly(fd)

    # -- metrics.json -------------------------------------------------------------------------
    def write_metrics(self, metrics: Mapping[str, Any]) -> None:
        write_atomic(self.metrics_path, json.dumps(metrics, indent=2) + "\n")

    def read_metrics(self) -> dict[str, Any]:
        return json.loads(self.metrics_path.read_text(encoding="utf-8"))


def _plain(obj: Any) -> Any:
    """Containers and scalars that yaml.safe_dump accepts (tuples -> lists, paths -> str)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    return str(obj)


__all__ = ["LOCK", "METRICS", "RUN_YAML", "RunDir", "RunLock", "SAMPLES", "utc_now", "write_atomic"]
