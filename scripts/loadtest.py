"""Load test of `t2s serve`: concurrent clients, every answer checked against in-process scores.

    python -m think2seg.scripts.loadtest --url http://127.0.0.1:8765 --clients 16 --groups 200 --g 8

Each client sends its groups one request at a time (a trainer's reward call), so the
server's batches come only from concurrency. Expected scores are computed in-process with
the same settings before the clock starts; any difference is a mismatch. Prints one JSON
object: throughput, client-side latency percentiles, mismatches, and the server's
/metrics (batch sizes formed).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from t2s_env.instructions import format_completion
from t2s_env.prompt import GeometricPrompt
from t2s_env.remote import RemoteScorer
from t2s_env.scoring import Scorer, ScoreResult


@dataclass
class Group:
    image: np.ndarray
    gt: np.ndarray
    completions: list[str]
    expected: list[dict[str, Any]] = field(default_factory=list)


def comparable(r: ScoreResult) -> dict[str, Any]:
    d = asdict(r)
    d.pop("mask")
    return d


def _completion(rng: np.random.Generator, size: int, rects: list[tuple[int, int, int, int]]) -> str:
    kind = int(rng.integers(0, 8))
    if kind == 0:
        return "I cannot tell."  # no tags at all
    if kind == 1:
        return "<think> nothing here </think>\n<answer>```json[]```</answer>"
    if kind == 2:  # lenient-only: no fence
        x1, y1 = (int(v) for v in rng.integers(0, size // 2, 2))
        return f'<think>t</think><answer>[{{"bbox_2d": [{x1},{y1},{x1 + 20},{y1 + 20}]}}]</answer>'
    if kind == 3:
        return '<think> broken </think>\n<answer>```json[{"bbox_2d": [1, 2, "x"]```</answer>'
    # a real answer: boxes near the targets (or anywhere), with two inner points
    prompts = []
    for x1, y1, x2, y2 in (rects or [(0, 0, size // 4, size // 4)]):
        jx, jy = (int(v) for v in rng.integers(-size // 20, size // 20 + 1, 2))
        bx = [max(0, x1 + jx), max(0, y1 + jy), min(size, x2 + jx), min(size, y2 + jy)]
        cx, cy = (bx[0] + bx[2]) / 2, (bx[1] + bx[3]) / 2
        prompts.append(GeometricPrompt(box=tuple(float(v) for v in bx), positive_points=((cx, cy), (cx + 1, cy + 1))))
    return format_completion(prompts, think="the target is here")


def make_workload(clients: int, groups: int, g: int, size: int = 128, seed: int = 0, images_per_client: int = 8) -> list[list[Group]]:
    """``clients`` lists of ``groups`` groups of ``g`` completions each (deterministic)."""
    out = []
    for c in range(clients):
        rng = np.random.default_rng([seed, c])
        pool = []
        for _ in range(images_per_client):
            image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            rects = []
            for _ in range(int(rng.integers(0, 3))):
                x1, y1 = (int(v) for v in rng.integers(0, size // 2, 2))
                w, h = (int(v) for v in rng.integers(size // 16, size // 3, 2))
                rects.append((x1, y1, x1 + w, y1 + h))
            gt = np.zeros((size, size), dtype=bool)
            for x1, y1, x2, y2 in rects:
                gt[y1:y2, x1:x2] = True
            pool.append((image, gt, rects))
        mine = []
        for _ in range(groups):
            image, gt, rects = pool[int(rng.integers(0, len(pool)))]
            mine.append(Group(image, gt, [_completion(rng, size, rects) for _ in range(g)]))
        out.append(mine)
    return out


def expect(workload: list[list[Group]], scorer: Scorer) -> None:
    """Fill each group's expected (in-process) results."""
    for mine in workload:
        for grp in mine:
            grp.expected = [comparable(r) for r in scorer.score(grp.image, grp.gt, grp.completions)]


@dataclass
class LoadReport:
    clients: int
    groups: int
    completions: int
    seconds: float
    groups_per_s: float
    completions_per_s: float
    latency_ms: dict[str, float]
    mismatches: int
    errors: list[str]
    server: dict[str, Any] | None = None


def run_load(
    make_client: Callable[[], RemoteScorer],
    workload: list[list[Group]],
    on_answer: Callable[[int], None] | None = None,
) -> LoadReport:
    """One thread per client list; each sends its groups in order and checks every answer.
    ``on_answer(n)`` is called with the running count of answers (e.g. to kill the server)."""
    latencies: list[float] = []
    mismatches = [0]
    errors: list[str] = []
    answered = [0]
    lock = threading.Lock()

    def client(mine: list[Group]) -> None:
        remote = make_client()
        for grp in mine:
            t0 = time.perf_counter()
            try:
                got = remote.score(grp.image, grp.gt, grp.completions)
            except Exception as exc:  # noqa: BLE001 - reported, the test fails on it
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                return
            dt = time.perf_counter() - t0
            bad = [comparable(r) for r in got] != grp.expected
            with lock:
                latencies.append(dt)
                mismatches[0] += int(bad)
                answered[0] += 1
                n = answered[0]
            if on_answer is not None:
                on_answer(n)

    threads = [threading.Thread(target=client, args=(mine,)) for mine in workload]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    n_groups = sum(len(m) for m in workload)
    n_comp = sum(len(g.completions) for m in workload for g in m)
    lat = np.asarray(latencies) * 1000.0 if latencies else np.zeros(1)
    return LoadReport(
        clients=len(workload), groups=n_groups, completions=n_comp, seconds=seconds,
        groups_per_s=len(latencies) / seconds, completions_per_s=len(latencies) * n_comp / max(n_groups, 1) / seconds,
        latency_ms={"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)), "max": float(lat.max())},
        mismatches=mismatches[0], errors=errors,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess(subprocess.Popen):
    """A `t2s serve` subprocess whose stderr is read as it comes (a full pipe would block the
    server): the last lines are kept in ``log``."""

    def __init__(self, cmd: list[str], env: dict) -> None:
        super().__init__(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.log: deque[str] = deque(maxlen=2000)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for line in self.stderr:  # type: ignore[union-attr]
            self.log.append(line.rstrip("\n"))

    def log_complete(self, timeout: float = 10.0) -> list[str]:
        """The stderr lines, once the (exited) server's stream has been read to its end."""
        self._reader.join(timeout)
        return list(self.log)


def spawn_server(*args: str, port: int = 0, env: dict | None = None, wait_s: float = 60.0) -> tuple[ServerProcess, str]:
    """Start `t2s serve` (``args`` appended) as a subprocess; returns it and its URL once listening."""
    cmd = [sys.executable, "-m", "think2seg.scripts.serve", "--port", str(port), *args]
    proc = ServerProcess(cmd, env={**os.environ, **(env or {})})
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(wait_s)
    if not line or "listening on" not in line[0]:
        proc.kill()
        proc.wait(10)
        raise RuntimeError(f"`t2s serve {' '.join(args)}` did not start: {chr(10).join(proc.log_complete())[-2000:]}")
    return proc, line[0].split("listening on ")[1].split()[0]


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    if isinstance(proc, ServerProcess):
        proc.log_complete()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m think2seg.scripts.loadtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8765")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--groups", type=int, default=200, help="groups per client")
    p.add_argument("--g", type=int, default=8, help="completions per group")
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    workload = make_workload(args.clients, args.groups, args.g, args.size, args.seed)
    remote = RemoteScorer(args.url)
    expect(workload, remote.local)  # the server's own settings, box segmenter in-process
    report = run_load(lambda: RemoteScorer(args.url), workload)
    report.server = remote.metrics()
    print(json.dumps(asdict(report), indent=1))
    return 0 if not report.mismatches and not report.errors else 1


if __name__ == "__main__":
    sys.exit(main())
