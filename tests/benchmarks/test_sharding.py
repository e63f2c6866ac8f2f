"""Sharded `t2s bench` (benchmarks/sharding.py): 2 CPU processes (gloo) give a run identical,
sample for sample, to the 1-process run; a sharded run killed mid-way resumes.

The processes are started by torch's launcher (``python -m torch.distributed.run``), the
one ``accelerate launch --multi_gpu`` runs; accelerate's own start-up adds ~10 s here
and nothing else to the test."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
T2S = str(Path(sys.executable).with_name("t2s"))

AGENT = textwrap.dedent('''
    """A deterministic box per sample that dies (os._exit) on the sample named by
    T2S_TEST_CRASH_AT: a process killed mid-run."""
    import hashlib
    import os

    from t2s_env import GeometricPrompt, format_completion
    from think2seg.agents import Agent


    class CrashyAgent(Agent):
        name = "crashy"

        def act(self, observation, info):
            if os.environ.get("T2S_TEST_CRASH_AT") == info["sample_id"]:
                os._exit(3)
            h, w = observation["image"].shape[:2]
            d = hashlib.sha1(info["sample_id"].encode()).digest()
            x1, y1 = d[0] % (w // 2), d[1] % (h // 2)
            x2, y2 = x1 + 8 + d[2] % (w // 2), y1 + 8 + d[3] % (h // 2)
            pts = ((x1 + 2, y1 + 2), (x1 + 3, y1 + 3))
            return format_completion([GeometricPrompt(box=(x1, y1, x2, y2), positive_points=pts)])
''')


def rows(out: Path) -> list[tuple]:
    with sqlite3.connect(out / "leaderboard.sqlite") as conn:
        return conn.execute("SELECT run_id, agent, n FROM runs").fetchall()


def run_dir(out: Path, agent: str) -> Path:
    (found,) = [p for p in (out / "runs").iterdir() if agent in p.name]
    return found


def launch(argv: list[str], env: dict, timeout: int = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", T2S, "bench", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)


@pytest.mark.slow
def test_two_processes_match_one_and_a_killed_run_resumes(tmp_path, monkeypatch, capsys):
    from tests.datagen import write_rectangle_dataset
    from think2seg.benchmarks import cli

    write_rectangle_dataset(tmp_path / "data", split="val", n=9, n_empty=1, seed=4, size=64)
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "crashy.py").write_text(AGENT)
    monkeypatch.syspath_prepend(str(tmp_path / "plug"))
    common = ["--dataset", "earthreason:val", "--root", str(tmp_path / "data"), "--segmenter", "box",
              "--batch-size", "1", "--no-progress", "--no-leaderboard", "--no-tensorboard"]
    agents = ["--agents", "crashy:CrashyAgent,oracle-box+points"]

    # one process, in this process
    assert cli.main(["--out", str(tmp_path / "one"), *agents, *common]) == 0
    capsys.readouterr()

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "plug"), str(REPO), os.environ.get("PYTHONPATH", "")]),
           "T2S_TEST_CRASH_AT": "img005"}  # index 5: rank 1's third sample
    two = tmp_path / "two"
    killed = launch(["--out", str(two), *agents, *common], env)
    assert killed.returncode != 0 and (two / "runs").is_dir(), killed.stdout + killed.stderr[-3000:]
    crashy = run_dir(two, "crashy")
    shards = sorted(p.name for p in crashy.glob("samples.shard-*.jsonl"))
    assert shards == ["samples.shard-0.jsonl", "samples.shard-1.jsonl"]
    assert (crashy / "samples.shard-1.jsonl").read_text().count("\n") == 2  # img001, img003
    assert rows(two) == []  # nothing entered the leaderboard

    env.pop("T2S_TEST_CRASH_AT")
    resume = ["--no-progress", "--no-leaderboard", "--no-tensorboard"]
    resumed = launch(["--out", str(two), "--resume", crashy.name, *resume], env)  # 2 processes
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    oracle = run_dir(two, "oracle")
    assert list(oracle.glob("samples.shard-*.jsonl"))
    assert cli.main(["--out", str(two), "--resume", oracle.name, *resume]) == 0  # 1 process

    for agent in ("crashy", "oracle"):
        a, b = run_dir(tmp_path / "one", agent), run_dir(two, agent)
        assert (a / "samples.jsonl").read_bytes() == (b / "samples.jsonl").read_bytes()
        ma, mb = json.loads((a / "metrics.json").read_text()), json.loads((b / "metrics.json").read_text())
        assert {k: v for k, v in ma.items() if k != "run_id"} == {k: v for k, v in mb.items() if k != "run_id"}
        assert not list(b.glob("samples.shard-*"))
    assert sorted((r[1], r[2]) for r in rows(two)) == [("crashy", 9), ("oracle-box+points", 9)]
    ids = [json.loads(line)["sample_id"] for line in (run_dir(two, "crashy") / "samples.jsonl").read_text().splitlines()]
    assert ids == [f"img{k:03d}" for k in range(9)]  # dataset order


@pytest.mark.slow
def test_a_sharded_run_scores_in_the_protocols_coord_frame(tmp_path, capsys):
    """Under coord_frame=rel1000, 2 processes record what 1 process records: both score
    the frame-declaring agent's answers in its frame (the sharded scorers once ignored it,
    gIoU 12.40 against 85.46, under the same run identity)."""
    from tests.datagen import write_rectangle_dataset
    from think2seg.benchmarks import cli

    write_rectangle_dataset(tmp_path / "data", split="val", n=6, n_empty=1, seed=5, size=64)
    common = ["--dataset", "earthreason:val", "--root", str(tmp_path / "data"), "--segmenter", "box",
              "--agents", "tests.agent_plugins.frames:Rel1000Box", "--protocol-option", "coord_frame=rel1000",
              "--batch-size", "2", "--no-progress", "--no-leaderboard", "--no-tensorboard"]
    assert cli.main(["--out", str(tmp_path / "one"), *common]) == 0
    capsys.readouterr()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    two = launch(["--out", str(tmp_path / "two"), *common], env)
    assert two.returncode == 0, two.stdout + two.stderr[-3000:]

    a, b = run_dir(tmp_path / "one", "rel1000"), run_dir(tmp_path / "two", "rel1000")
    one_records = (a / "samples.jsonl").read_text().splitlines()
    assert len(one_records) == 6 and (b / "samples.jsonl").read_text().splitlines() == one_records
    ma, mb = json.loads((a / "metrics.json").read_text()), json.loads((b / "metrics.json").read_text())
    assert ma["gIoU"] == mb["gIoU"] and ma["protocol"]["coord_frame"] == "rel1000"
