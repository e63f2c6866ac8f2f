"""`t2s bench`: files of a run, metrics consistency, resume, failures and bad input.

Runs use the ``box`` segmenter on small rectangle datasets and are called in-process.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from think2seg import agents
from think2seg.agents.oracles import OracleBoxAgent
from think2seg.benchmarks import harness
from think2seg.benchmarks.results_store import ResultsStore
from t2s_env import summarize_records
from t2s_env.cli import main as t2s_main
from tests.datagen import rectangle_mask, write_sample

SAMPLE_KEYS = {"sample_id", "question", "completion", "parsed_ok", "iou", "intersection", "union",
               "gt_empty", "pred_empty", "reward", "reward_components"}
METRIC_KEYS = {"gIoU", "cIoU", "Pr@0.5", "Pr@0.6", "Pr@0.7", "Pr@0.8", "Pr@0.9", "N-Acc", "n", "n_failed", "protocol"}
QUIET = ["--no-progress", "--no-leaderboard"]


def write_disjoint_rectangles(root: Path, split: str = "val", n: int = 6, n_empty: int = 1, size: int = 840) -> None:
    """Rectangles that never touch (so each is one component with a tight box) on flat
    images (small PNGs, quick to load)."""
    rng = np.random.default_rng(1)
    cell = size // 3
    for k in range(n):
        rects = []
        if k >= n_empty:
            cells = rng.choice(9, size=int(rng.integers(1, 4)), replace=False)
            for c in cells:
                r, q = divmod(int(c), 3)
                x1 = q * cell + int(rng.integers(2, cell // 3))
                y1 = r * cell + int(rng.integers(2, cell // 3))
                rects.append((x1, y1, x1 + int(rng.integers(8, cell // 2)), y1 + int(rng.integers(8, cell // 2))))
        mask = rectangle_mask(size, size, rects)
        image = np.full((size, size, 3), 90, np.uint8)
        image[mask] = (200, 180, 60)
        write_sample(root, split, f"r{k:02d}", image, mask, questions=[f"q{j} of r{k:02d}" for j in range(3)],
                     answer=["target"] if rects else [])


@pytest.fixture(scope="module")
def disjoint_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("disjoint")
    write_disjoint_rectangles(root, "val", n=6, n_empty=1)
    write_disjoint_rectangles(root, "test", n=3, n_empty=0)
    return root


def bench(root, out, *extra, dataset="earthreason:val") -> int:
    return harness.main(["--dataset", dataset, "--root", str(root), "--segmenter", "box", "--out", str(out), *QUIET, *extra])


def run_dirs(out: Path) -> dict[str, Path]:
    """agent label -> run folder (one run per agent expected)."""
    found = {}
    for d in sorted((out / "runs").iterdir()):
        cfg = yaml.safe_load((d / "run.yaml").read_text())
        found[cfg["agent"]["label"]] = d
    return found


def read_samples(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines() if line.strip()]


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


# -- a scripted agent for failures and kills ----------------------------------------------

class ScriptedAgent(OracleBoxAgent):
    """oracle-box with test hooks: a log of answered samples, a kill switch that raises
    KeyboardInterrupt after some batches, and a sample that raises."""

    name = "test-scripted"
    calls: list = []
    batches = 0
    kill_after_batches = None
    fail_on = None

    def act_batch(self, observations, infos):
        cls = type(self)
        if cls.kill_after_batches is not None and cls.batches >= cls.kill_after_batches:
            raise KeyboardInterrupt
        cls.batches += 1
        return super().act_batch(observations, infos)

    def act(self, observation, info):
        type(self).calls.append(info["sample_id"])
        if info["sample_id"] == type(self).fail_on:
            raise ValueError("scripted failure")
        return super().act(observation, info)


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setitem(agents.REGISTRY, "test-scripted", "tests.test_harness:ScriptedAgent")
    monkeypatch.setattr(ScriptedAgent, "calls", [])
    monkeypatch.setattr(ScriptedAgent, "batches", 0)
    monkeypatch.setattr(ScriptedAgent, "kill_after_batches", None)
    monkeypatch.setattr(ScriptedAgent, "fail_on", None)
    return ScriptedAgent


# -- required behaviour -------------------------------------------------------------------

def test_oracle_box_with_box_segmenter_is_perfect_on_rectangles(disjoint_root, tmp_path):
    assert bench(disjoint_root, tmp_path, "--agents", "oracle-box", "--no-tensorboard") == 0
    m = read_metrics(run_dirs(tmp_path)["oracle-box"])
    assert m["gIoU"] == 1.0 and m["cIoU"] == 1.0
    assert m["Pr@0.9"] == 1.0 and m["N-Acc"] == 1.0 and m["n"] == 6 and m["n_failed"] == 0


@pytest.mark.parametrize("protocol", ["strict", "t2s-compat"])
def test_run_files_and_metrics_agree_with_samples(rect_root, tmp_path, protocol):
    agents_arg = "full-image,center-box:0.4,empty,oracle-points"
    assert bench(rect_root, tmp_path, "--agents", agents_arg, "--protocol", protocol, "--tb-samples", "3",
                 "--batch-size", "4") == 0
    runs = run_dirs(tmp_path)
    assert set(runs) == {"full-image", "center-box:0.4", "empty", "oracle-points"}
    store = ResultsStore(tmp_path)
    rows = {r.agent: r for r in store.runs()}
    for label, d in runs.items():
        samples = read_samples(d)
        assert len(samples) == 6 and all(SAMPLE_KEYS <= set(s) for s in samples)
        metrics = read_metrics(d)
        assert METRIC_KEYS <= set(metrics) and metrics["protocol"]["name"] == protocol
        expected = summarize_records(samples, protocol)
        for key in ("gIoU", "cIoU", "Pr@0.5", "Pr@0.6", "Pr@0.7", "Pr@0.8", "Pr@0.9", "N-Acc", "n", "n_failed"):
            assert metrics[key] == expected[key], (label, key)
        # per-sample iou is the metric IoU: its mean is gIoU (no sample is skipped here)
        assert metrics["gIoU"] == pytest.approx(np.mean([s["iou"] for s in samples]))
        assert metrics["mean_reward"] == pytest.approx(np.mean([s["reward"] for s in samples]))
        cfg = yaml.safe_load((d / "run.yaml").read_text())
        assert cfg["status"] == "complete" and cfg["protocol"]["name"] == protocol
        assert cfg["segmenter"]["spec"] == "box" and cfg["seed"] == 0
        assert {"python", "think2seg", "torch", "numpy"} <= set(cfg["versions"])
        assert "commit" in cfg["git"] and cfg["agent"]["config"]["name"] == label.split(":")[0]
        row = rows[label]
        assert row.protocol == protocol and row.n == 6 and row.metrics["gIoU"] == metrics["gIoU"]
        assert any((tmp_path / "tb" / d.name).iterdir())
    # empty answers [] everywhere: N-Acc 1 on the one empty-GT image
    assert read_metrics(runs["empty"])["N-Acc"] == 1.0


def test_resume_after_kill_redoes_only_missing_samples(scripted, disjoint_root, tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    scripted.kill_after_batches = 2
    with pytest.raises(KeyboardInterrupt):
        bench(disjoint_root, killed, "--agents", "test-scripted", "--batch-size", "2", "--tb-samples", "2")
    (run_id,) = [d.name for d in (killed / "runs").iterdir()]
    run_dir = killed / "runs" / run_id
    done = [s["sample_id"] for s in read_samples(run_dir)]
    assert done == ["r00", "r01", "r02", "r03"]
    assert not ResultsStore(killed).has_run(run_id)  # incomplete runs are not on the leaderboard
    assert not (run_dir / "metrics.json").exists()
    with open(run_dir / "samples.jsonl", "a") as f:  # a kill in the middle of a write
        f.write('{"sample_id": "r04", "question": "q0 of')

    scripted.kill_after_batches = None
    scripted.calls.clear()
    assert harness.main(["--out", str(killed), "--resume", run_id, *QUIET]) == 0
    assert scripted.calls == ["r04", "r05"]
    assert ResultsStore(killed).has_run(run_id)
    assert [s["sample_id"] for s in read_samples(run_dir)] == ["r00", "r01", "r02", "r03", "r04", "r05"]

    assert bench(disjoint_root, clean, "--agents", "test-scripted", "--batch-size", "2", "--no-tensorboard") == 0
    resumed, uninterrupted = read_metrics(run_dir), read_metrics(run_dirs(clean)["test-scripted"])
    for m in (resumed, uninterrupted):
        del m["run_id"]
    assert resumed == uninterrupted
    assert read_samples(run_dir) == read_samples(run_dirs(clean)["test-scripted"])
    assert any((killed / "tb" / run_id).iterdir())  # tiles of pre-kill samples re-rendered


def test_agent_raising_on_one_sample_is_a_recorded_failure(scripted, disjoint_root, tmp_path):
    scripted.fail_on = "r02"
    assert bench(disjoint_root, tmp_path, "--agents", "test-scripted", "--batch-size", "3", "--no-tensorboard") == 0
    d = run_dirs(tmp_path)["test-scripted"]
    samples = {s["sample_id"]: s for s in read_samples(d)}
    bad = samples.pop("r02")
    assert bad["completion"] is None and bad["parsed_ok"] is False and "scripted failure" in bad["error"]
    assert all(s["error"] is None and s["parsed_ok"] for s in samples.values())
    m = read_metrics(d)
    assert m["n"] == 6 and m["n_failed"] == 1 and m["gIoU"] == pytest.approx(5 / 6)
    assert ResultsStore(tmp_path).has_run(d.name)


def test_act_batch_gets_whole_batches_and_limit_takes_the_first_samples(scripted, disjoint_root, tmp_path):
    sizes = []
    original = ScriptedAgent.act_batch

    def spy(self, observations, infos):
        sizes.append(len(observations))
        assert all(i["gt_mask"].shape == (840, 840) for i in infos)  # privileged, protocol frame
        return original(self, observations, infos)

    ScriptedAgent.act_batch = spy
    try:
        assert bench(disjoint_root, tmp_path, "--agents", "test-scripted", "--batch-size", "2", "--limit", "5",
                     "--no-tensorboard") == 0
    finally:
        ScriptedAgent.act_batch = original
    assert sizes == [2, 2, 1]
    assert [s["sample_id"] for s in read_samples(run_dirs(tmp_path)["test-scripted"])] == ["r00", "r01", "r02", "r03", "r04"]


def test_one_run_per_agent_and_dataset(disjoint_root, tmp_path, capsys):
    assert harness.main(["--dataset", "earthreason:val,earthreason:test", "--root", str(disjoint_root),
                         "--agents", "oracle-box", "--agents", "empty", "--segmenter", "box", "--out", str(tmp_path),
                         "--no-progress", "--no-tensorboard"]) == 0
    rows = ResultsStore(tmp_path).runs()
    assert sorted((r.agent, r.dataset) for r in rows) == [
        ("empty", "earthreason:test"), ("empty", "earthreason:val"),
        ("oracle-box", "earthreason:test"), ("oracle-box", "earthreason:val"),
    ]
    out = capsys.readouterr().out
    assert "oracle-box" in out and "dataset/split" in out  # the leaderboard is printed


def test_agents_from_yaml(disjoint_root, tmp_path):
    cfg = tmp_path / "agents.yaml"
    cfg.write_text("agents:\n  - name: center-box\n    fraction: 0.25\n  - random-box:5\n")
    assert bench(disjoint_root, tmp_path / "out", "--agent-config", str(cfg), "--limit", "2", "--no-tensorboard") == 0
    assert set(run_dirs(tmp_path / "out")) == {"center-box:0.25", "random-box:5"}


# -- bad input ----------------------------------------------------------------------------

def cli(*argv) -> int:
    return t2s_main(["bench", *argv])


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--agents", "nope"], ["unknown agent 'nope'", "oracle-box", "center-box"]),
        (["--dataset", "nope:val"], ["unknown dataset 'nope'", "synthetic", "earthreason"]),
        (["--segmenter", "nope"], ["unknown segmenter 'nope'", "grabcut", "box"]),
        (["--protocol", "nope"], ["unknown protocol 'nope'", "strict", "t2s-compat"]),
        (["--dataset", "earthreason:val"], ["--root"]),
        (["--resume", "20990101-nope"], ["no run '20990101-nope'"]),
    ],
)
def test_bad_input_exits_2_naming_the_valid_options(tmp_path, capsys, argv, needles):
    assert cli("--out", str(tmp_path / "out"), *QUIET, *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("t2s: error:") and err.count("\n") == 1
    for needle in needles:
        assert needle in err


def test_missing_root_names_the_path(tmp_path, capsys):
    missing = tmp_path / "no-such-dir"
    assert cli("--dataset", "earthreason:val", "--root", str(missing), "--out", str(tmp_path / "out"), *QUIET) == 2
    assert str(missing) in capsys.readouterr().err


def test_unwritable_output_is_reported_before_any_work(scripted, disjoint_root, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker / "results"
    assert cli("--dataset", "earthreason:val", "--root", str(disjoint_root), "--agents", "test-scripted",
               "--segmenter", "box", "--out", str(out), *QUIET) == 2
    assert str(out) in capsys.readouterr().err
    assert scripted.calls == [] and scripted.batches == 0


@pytest.mark.parametrize("command", ["bench", "leaderboard"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        t2s_main([command, "--help"])
    assert exc.value.code == 0
    assert "--out" in capsys.readouterr().out


def test_main_job_defaults_on_a_few_synthetic_samples(tmp_path, capsys):
    """`t2s bench` with no arguments, cut to 2 samples: synthetic:val, every baseline and
    oracle, grabcut, strict, and the leaderboard printed."""
    pytest.importorskip("t2s_env.datasets.synthetic")
    pytest.importorskip("t2s_env.segmenters.grabcut")
    assert harness.main(["--out", str(tmp_path), "--limit", "2", "--no-progress", "--no-tensorboard"]) == 0
    rows = ResultsStore(tmp_path).runs()
    assert {r.agent for r in rows} == {"full-image", "center-box:0.5", "random-box:0", "empty",
                                       "oracle-box", "oracle-points", "oracle-box+points"}
    assert {(r.dataset, r.segmenter, r.protocol) for r in rows} == {("synthetic:val", "grabcut", "strict")}
    assert "oracle-box" in capsys.readouterr().out
