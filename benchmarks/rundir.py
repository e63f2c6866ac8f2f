"""One run's folder: ``run.yaml``, ``samples.jsonl`` (append-only) and ``metrics.json``.

``samples.jsonl`` is written one batch at a time, flushed and fsynced, so a killed run
loses at most the batch in flight. A kill can leave a partial last line; opening the file
for appending cuts it off, and those samples are redone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from t2s_env import T2SError

RUN_YAML = "run.yaml"
SAMPLES = "samples.jsonl"
METRICS = "metrics.json"


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so readers see old or new, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunDir:
    """Files of the run in ``path`` (created on :meth:`create`)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._handle = None

    @property
    def run_yaml(self) -> Path:
        return self.path / RUN_YAML

    @property
    def samples_path(self) -> Path:
        return self.path / SAMPLES

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    def create(self, config: Mapping[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=False)
        self.write_config(config)
        self.samples_path.touch()

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
        self._handle = open(self.samples_path, "a", encoding="utf-8")
        return records

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append records and make them durable (one flush + fsync per call)."""
        if self._handle is None:
            raise RuntimeError("open_for_append() first")
        self._handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

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


__all__ = ["METRICS", "RUN_YAML", "RunDir", "SAMPLES", "write_atomic"]
