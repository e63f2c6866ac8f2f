"""`t2s bench`: files of a run, metrics consistency, resume, failures and bad input.

Runs use the ``box`` segmenter on small rectangle datasets and are called in-process.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from think2seg import agents
from think2seg.agents.oracles import OracleBoxAgent
from think2seg.benchmarks import cli as bench_cli
from think2seg.benchmarks import runner
from think2seg.benchmarks.provenance import RESULT_LIBRARIES, library_versions, run_identity
from think2seg.benchmarks.results_store import ResultsStore
from t2s_env.datasets.synthetic import EMBEDDED_DIGESTS
from t2s_env import summarize_records
from t2s_env.protocol import protocol_with_options
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
    return bench_cli.main(["--dataset", dataset, "--root", str(root), "--segmenter", "box", "--out", str(out), *QUIET, *extra])


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
    monkeypatch.setitem(agents.REGISTRY, "test-scripted", "tests.benchmarks.test_harness:ScriptedAgent")
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
        assert cfg["libraries"] == library_versions() and set(cfg["libraries"]) == set(RESULT_LIBRARIES)
        assert "commit" in cfg["git"] and cfg["agent"]["config"]["name"] == label.split(":")[0]
        row = rows[label]
        assert row.protocol == protocol and row.n == 6 and row.metrics["gIoU"] == metrics["gIoU"]
        assert any((tmp_path / "tb" / d.name).iterdir())
    # empty answers [] everywhere: N-Acc 1 on the one empty-GT image
    assert read_metrics(runs["empty"])["N-Acc"] == 1.0


def test_resume_after_kill_redoes_only_missing_samples(scripted, disjoint_root, tmp_path, capsys):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    scripted.kill_after_batches = 2
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C
        bench(disjoint_root, killed, "--agents", "test-scripted", "--batch-size", "2", "--tb-samples", "2")
    (run_id,) = [d.name for d in (killed / "runs").iterdir()]
    run_dir = killed / "runs" / run_id
    done = [s["sample_id"] for s in read_samples(run_dir)]
    assert done == ["r00", "r01", "r02", "r03"]
    assert yaml.safe_load((run_dir / "run.yaml").read_text())["status"] == "interrupted"
    assert f"stopped after 4/6 samples; finish it with: t2s bench --out {killed} --resume {run_id}" in capsys.readouterr().err
    assert not ResultsStore(killed).has_run(run_id)  # incomplete runs are not on the leaderboard
    assert not (run_dir / "metrics.json").exists()
    with open(run_dir / "samples.jsonl", "a") as f:  # a kill in the middle of a write
        f.write('{"sample_id": "r04", "question": "q0 of')

    scripted.kill_after_batches = None
    scripted.calls.clear()
    assert bench_cli.main(["--out", str(killed), "--resume", run_id, *QUIET]) == 0
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
    assert bench_cli.main(["--dataset", "earthreason:val,earthreason:test", "--root", str(disjoint_root),
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


def test_resume_takes_several_runs_and_refuses_an_unknown_one_before_any_work(scripted, disjoint_root, tmp_path,
                                                                              capsys):
    """``--resume A B``, ``--resume A --resume B`` and ``--resume A,B`` finish every run in
    turn; one unknown id among them is one line naming it, and nothing is touched."""
    scripted.kill_after_batches = 1
    with pytest.raises(KeyboardInterrupt):
        bench(disjoint_root, tmp_path, "--agents", "test-scripted,oracle-box,center-box", "--batch-size", "2",
              "--no-tensorboard")
    runs = run_dirs(tmp_path)
    ids = [runs[label].name for label in ("test-scripted", "oracle-box", "center-box:0.5")]
    files = {p: p.read_bytes() for d in runs.values() for p in d.iterdir()}
    assert all(yaml.safe_load((d / "run.yaml").read_text())["status"] == "interrupted" for d in runs.values())
    capsys.readouterr()
    scripted.kill_after_batches = None
    scripted.calls.clear()

    assert cli("--out", str(tmp_path), "--resume", ids[0], "20990101-nope", ids[1], *QUIET) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run '20990101-nope'" in err and ids[0] not in err.split("runs there")[0]
    assert {p: p.read_bytes() for d in runs.values() for p in d.iterdir()} == files  # nothing written
    assert scripted.calls == []

    assert cli("--out", str(tmp_path), "--resume", ids[0], ids[1], "--resume", f"{ids[2]},{ids[0]}", *QUIET) == 0
    printed = [line.rsplit("/", 1)[1] for line in capsys.readouterr().out.splitlines() if " on earthreason:val: " in line]
    assert printed == ids and sorted(r.run_id for r in ResultsStore(tmp_path).runs()) == sorted(ids)
    for d in runs.values():
        assert yaml.safe_load((d / "run.yaml").read_text())["status"] == "complete" and len(read_samples(d)) == 6
    assert cli("--out", str(tmp_path), "--resume", *ids, *QUIET) == 0
    assert capsys.readouterr().err.count("is already complete") == 3


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


@pytest.mark.slow
def test_main_job_defaults_on_a_few_synthetic_samples(tmp_path, capsys):
    """`t2s bench` with no arguments, cut to 2 samples: synthetic:val, every baseline and
    oracle, grabcut, strict, and the leaderboard printed."""
    pytest.importorskip("t2s_env.datasets.synthetic")
    pytest.importorskip("t2s_env.segmenters.grabcut")
    assert bench_cli.main(["--out", str(tmp_path), "--limit", "2", "--no-progress", "--no-tensorboard"]) == 0
    rows = ResultsStore(tmp_path).runs()
    assert {r.agent for r in rows} == {"full-image", "center-box:0.5", "random-box:0", "empty",
                                       "oracle-box", "oracle-points", "oracle-box+points"}
    assert {(r.dataset, r.segmenter, r.protocol) for r in rows} == {("synthetic:val", "grabcut", "strict")}
    out = capsys.readouterr().out
    assert "oracle-box" in out
    # under the table: the digest of the embedded split's pixels and masks, and the reference
    (line,) = [l for l in out.splitlines() if l.startswith("data ")]
    assert re.fullmatch(r"data synthetic:val: sha256 [0-9a-f]{16} \(reference [0-9a-f]{16}: .+\)", line), line
    assert line.endswith("(reference %s: the data of the README's table)" % EMBEDDED_DIGESTS["val"]), line


def test_library_versions_are_part_of_the_identity():
    config = {"agent": {"spec": "empty"}, "dataset": "synthetic:val", "seed": 0, "n_samples": 2,
              "libraries": library_versions()}
    other = {**config, "libraries": {**config["libraries"], "opencv": "0.0.0"}}
    assert run_identity(config) != run_identity(other)
    assert set(RESULT_LIBRARIES) == {"numpy", "opencv", "pillow", "torch"}


def test_resume_refuses_a_run_started_with_other_library_versions(scripted, disjoint_root, tmp_path, capsys):
    scripted.kill_after_batches = 1
    with pytest.raises(KeyboardInterrupt):
        bench(disjoint_root, tmp_path, "--agents", "test-scripted", "--batch-size", "2", "--no-tensorboard")
    (run_dir,) = (tmp_path / "runs").iterdir()
    scripted.kill_after_batches = None
    cfg = yaml.safe_load((run_dir / "run.yaml").read_text())
    cfg["libraries"]["opencv"] = "0.0.0"
    (run_dir / "run.yaml").write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert cli("--out", str(tmp_path), "--resume", run_dir.name, *QUIET) != 0
    err = capsys.readouterr().err
    assert "opencv 0.0.0" in err and "start a new run" in err and err.count("\n") == 1


# -- a real kill: SIGKILL a bench subprocess, then resume ---------------------------------

SLOW_AGENT = '''
import os, time
from think2seg.agents.oracles import OracleBoxAgent

class SlowOracle(OracleBoxAgent):
    """oracle-box that takes a while per batch and logs the samples it answers."""
    name = "slow-oracle"

    def act_batch(self, observations, infos):
        with open(os.environ["SLOW_AGENT_LOG"], "a") as f:
            f.write("".join(i["sample_id"] + "\\n" for i in infos))
        time.sleep(float(os.environ.get("SLOW_AGENT_SLEEP", "0")))
        return super().act_batch(observations, infos)
'''


def _wait_for_lines(path: Path, n: int, proc, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the bench ended (status {proc.returncode}) before it was killed: "
                                 + proc.stderr.read().decode(errors="replace")[-2000:])
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {n} lines")


def _start_bench(argv: list[str], env: dict):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", "import sys; from t2s_env.cli import main; sys.exit(main(sys.argv[1:]))",
                             "bench", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_run_dir(out: Path, proc, timeout: float = 120.0) -> Path:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list((out / "runs").iterdir()) if (out / "runs").is_dir() else []
        if found:
            return found[0]
        assert proc.poll() is None, proc.stderr.read().decode(errors="replace")[-2000:]
        time.sleep(0.02)
    raise AssertionError("the bench never created its run folder")


def _reap(proc) -> None:
    """Kill a bench subprocess that is still running (a failed test leaves none behind)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_resume_after_sigkill_of_a_real_process(disjoint_root, tmp_path, monkeypatch):
    """kill -9 a `t2s bench` process mid-run; the resumed run answers only the samples
    that were not recorded and ends with the files of an uninterrupted run."""
    import os
    import signal

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "slow_agent.py").write_text(SLOW_AGENT)
    log = tmp_path / "answered.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")]),
               SLOW_AGENT_LOG=str(log), SLOW_AGENT_SLEEP="0.6", T2S_TEST_THREADS="1")
    out = tmp_path / "killed"
    argv = ["--dataset", "earthreason:val", "--root", str(disjoint_root), "--segmenter", "box", "--out", str(out),
            "--agents", "slow_agent:SlowOracle", "--batch-size", "2", "--tb-samples", "3", *QUIET]
    proc = _start_bench(argv, env)
    try:
        run_dir = _wait_for_run_dir(out, proc)
        _wait_for_lines(run_dir / "samples.jsonl", 2, proc)  # the first batch is on disk
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _reap(proc)
    assert proc.returncode == -signal.SIGKILL
    done = [s["sample_id"] for s in read_samples(run_dir)]
    assert 2 <= len(done) < 6 and done == ["r00", "r01", "r02", "r03", "r04", "r05"][: len(done)]
    cfg = yaml.safe_load((run_dir / "run.yaml").read_text())
    assert cfg["status"] == "running" and not (run_dir / "metrics.json").exists()
    assert not ResultsStore(out).has_run(run_dir.name)

    monkeypatch.syspath_prepend(str(plugins))
    monkeypatch.setenv("SLOW_AGENT_LOG", str(log))
    monkeypatch.setenv("SLOW_AGENT_SLEEP", "0")
    log.write_text("")
    assert bench_cli.main(["--out", str(out), "--resume", run_dir.name, "--tb-samples", "3", *QUIET]) == 0
    answered = log.read_text().split()
    assert answered and set(answered).isdisjoint(done)  # nothing recorded is asked again
    assert set(answered) | set(done) == {f"r0{k}" for k in range(6)}
    assert ResultsStore(out).has_run(run_dir.name)

    clean = tmp_path / "clean"
    assert bench(disjoint_root, clean, "--agents", "slow_agent:SlowOracle", "--batch-size", "2", "--tb-samples", "3") == 0
    (clean_dir,) = run_dirs(clean).values()
    resumed, uninterrupted = read_metrics(run_dir), read_metrics(clean_dir)
    for m in (resumed, uninterrupted):
        del m["run_id"]
    assert resumed == uninterrupted
    assert read_samples(run_dir) == read_samples(clean_dir)
    scalars, grid = read_tensorboard(out / "tb" / run_dir.name)
    assert scalars["metrics/gIoU"] == pytest.approx(resumed["gIoU"])
    assert tiles_drawn(grid) == 3  # tiles of the samples scored before the kill were re-rendered


GATED_AGENT = '''
import os, time
from think2seg.agents.oracles import OracleBoxAgent

class GatedOracle(OracleBoxAgent):
    """oracle-box that, after its first batch, waits for the file GATED_AGENT_GATE (at most
    GATED_AGENT_WAIT s): a process held mid-run until the test lets it go."""
    name = "gated-oracle"
    batches = 0

    def act_batch(self, observations, infos):
        gate = os.environ.get("GATED_AGENT_GATE")
        deadline = time.monotonic() + float(os.environ.get("GATED_AGENT_WAIT", "300"))
        while gate and type(self).batches >= 1 and not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)
        type(self).batches += 1
        return super().act_batch(observations, infos)
'''


@pytest.mark.slow
def test_sigterm_marks_the_run_interrupted_and_a_run_in_use_is_refused(disjoint_root, tmp_path, monkeypatch, capsys):
    """SIGTERM a `t2s bench` mid-run: one line per run with the resume command, exit 143,
    run.yaml ``interrupted``. While a process executes or resumes a run, a second
    ``--resume`` of it is one line naming the run and its holder, exit 2, and writes
    nothing: the run ends with one record per sample (two resumes at once gave 112 lines
    for 60 samples)."""
    import os
    import signal

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "gated_agent.py").write_text(GATED_AGENT)
    monkeypatch.syspath_prepend(str(plugins))  # the in-process second resume could run it
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")]),
               GATED_AGENT_GATE=str(tmp_path / "gate-1"), T2S_TEST_THREADS="1")
    out = tmp_path / "out"
    proc = _start_bench(["--dataset", "earthreason:val", "--root", str(disjoint_root), "--segmenter", "box", "--out",
                         str(out), "--agents", "gated_agent:GatedOracle", "--batch-size", "2", *QUIET], env)
    try:
        run_dir = _wait_for_run_dir(out, proc)
        _wait_for_lines(run_dir / "samples.jsonl", 2, proc)  # the first batch is on disk; the agent waits
        # executing: refused
        assert cli("--out", str(out), "--resume", run_dir.name, *QUIET) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"run {run_dir.name} is in use by pid {proc.pid} " in err
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        _reap(proc)
    err = proc.stderr.read().decode()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "t2s: terminated"
    assert f"run {run_dir.name} stopped after 2/6 samples; finish it with: t2s bench --out {out} --resume {run_dir.name}" in err
    assert yaml.safe_load((run_dir / "run.yaml").read_text())["status"] == "interrupted"

    # resuming: a second resume at the same time is refused
    env["GATED_AGENT_GATE"] = str(tmp_path / "gate-2")
    holder = _start_bench(["--out", str(out), "--resume", run_dir.name, "--batch-size", "2", *QUIET], env)
    try:
        _wait_for_lines(run_dir / "samples.jsonl", 4, holder)  # it answered a batch and waits
        before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
        assert cli("--out", str(out), "--resume", run_dir.name, *QUIET) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"run {run_dir.name} is in use by pid {holder.pid} " in err
        assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
        (tmp_path / "gate-2").touch()
        assert holder.wait(timeout=120) == 0, holder.stderr.read().decode()[-2000:]
    finally:
        _reap(holder)
    assert [s["sample_id"] for s in read_samples(run_dir)] == [f"r0{k}" for k in range(6)]
    assert (run_dir / "samples.jsonl").read_text().count("\n") == 6
    assert yaml.safe_load((run_dir / "run.yaml").read_text())["status"] == "complete"

    monkeypatch.delenv("GATED_AGENT_GATE", raising=False)
    clean = tmp_path / "clean"
    assert bench(disjoint_root, clean, "--agents", "gated_agent:GatedOracle", "--batch-size", "2") == 0
    assert read_samples(run_dir) == read_samples(next(iter(run_dirs(clean).values())))
    assert cli("--out", str(out), "--resume", run_dir.name, *QUIET) == 0  # the lock went with its process


# -- TensorBoard: the scalars and the image grid, read back -------------------------------

def read_tensorboard(log_dir: Path) -> tuple[dict, np.ndarray]:
    """(last value of each scalar tag, the decoded 'samples' image) of a run's events."""
    import cv2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    scalars = {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}
    (image,) = acc.Images("samples")
    grid = cv2.imdecode(np.frombuffer(image.encoded_image_string, np.uint8), cv2.IMREAD_COLOR)
    assert grid is not None and grid.shape[:2] == (image.height, image.width)
    return scalars, grid[..., ::-1]


def tiles_drawn(grid: np.ndarray, tile: int = 280) -> int:
    """Cells of the grid that hold a picture (the rest stay black)."""
    rows, cols = grid.shape[0] // tile, grid.shape[1] // tile
    return sum(int(grid[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile].mean() > 8)
               for r in range(rows) for c in range(cols))


def test_bench_tensorboard_holds_the_metrics_and_the_sample_grid(disjoint_root, tmp_path):
    assert bench(disjoint_root, tmp_path, "--agents", "oracle-box,empty", "--tb-samples", "5") == 0
    for label, d in run_dirs(tmp_path).items():
        metrics = read_metrics(d)
        scalars, grid = read_tensorboard(tmp_path / "tb" / d.name)
        for key in ("gIoU", "cIoU", "Pr@0.5", "N-Acc", "n_failed"):
            assert scalars[f"metrics/{key}"] == pytest.approx(metrics[key], abs=1e-6), (label, key)
        # 5 tiles in rows of 4: a 2x4 grid of 280-px cells, 5 of them drawn
        assert grid.shape == (560, 1120, 3)
        assert tiles_drawn(grid) == 5
        cells = [grid[:280, c * 280:(c + 1) * 280].astype(float) for c in range(4)]
        assert np.abs(cells[0] - cells[1]).mean() > 1  # different samples, different tiles
    # the oracle's tiles show its predicted mask (blue overlay) where the empty agent's do not
    _, oracle = read_tensorboard(tmp_path / "tb" / run_dirs(tmp_path)["oracle-box"].name)
    _, empty = read_tensorboard(tmp_path / "tb" / run_dirs(tmp_path)["empty"].name)
    blue = lambda g: ((g[..., 2].astype(int) - g[..., 0].astype(int)) > 25).mean()  # noqa: E731
    assert blue(oracle) > 5e-4 and blue(empty) < 5e-5


# -- protocols from the command line --------------------------------------------------------

def test_every_protocol_field_from_the_cli_is_recorded_in_full(rect_root, tmp_path):
    assert bench(rect_root, tmp_path, "--agents", "oracle-box,empty", "--protocol", "t2s-compat",
                 "--protocol-option", "empty_rule=skip", "--protocol-option", "comparator=>", "--no-tensorboard") == 0
    for label, d in run_dirs(tmp_path).items():
        cfg = yaml.safe_load((d / "run.yaml").read_text())
        p = cfg["protocol"]
        assert p["empty_rule"] == "skip" and p["comparator"] == ">"
        assert p["prompt_geometry"] == "raw" and p["pr_denominator"] == "predicted"  # the preset's others
        from t2s_env.protocol import protocol_fields

        assert set(p) == {"name", *protocol_fields()}  # every field, resolved
        assert read_metrics(d)["protocol"] == p
        samples = read_samples(d)
        assert read_metrics(d)["n"] == 6 and read_metrics(d)["gIoU"] == pytest.approx(
            summarize_records(samples, protocol_with_options(
                "t2s-compat", {"empty_rule": "skip", "comparator": ">"}))["gIoU"])
    assert {r.protocol for r in ResultsStore(tmp_path).runs()} == {"t2s-compat+comparator=>+empty_rule=skip"}


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--protocol-option", "colour=blue"], ["unknown --protocol-option 'colour'", "empty_rule", "comparator"]),
        (["--protocol-option", "comparator=<"], ["comparator='<'", ">=, >"]),
        (["--protocol-option", "empty_rule"], ["KEY=VALUE"]),
        (["--protocol-option", "image_size=big"], ["image_size"]),
        (["--agents", ""], ["--agents is empty", "oracle-box"]),
        (["--agents", " , "], ["--agents is empty"]),
        (["--segmenter", "grabcut", "--segmenter-option", "max_side=abc"], ["max_side=abc"]),
    ],
)
def test_bad_protocol_and_option_values_are_one_line(disjoint_root, tmp_path, capsys, argv, needles):
    out = tmp_path / "out"
    assert cli("--dataset", "earthreason:val", "--root", str(disjoint_root), "--out", str(out), *QUIET, *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("t2s: error:") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err
    assert not out.exists()  # nothing written for a refused command


def test_empty_out_is_an_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli("--out", "", *QUIET) == 2
    err = capsys.readouterr().err
    assert "--out is empty" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # nothing written in the current folder


def test_agents_yaml_error_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "agents.yaml"
    cfg.write_text("agents:\n  - name: center-box\n   fraction: [0.3\n")
    assert cli("--agent-config", str(cfg), "--out", str(tmp_path / "out"), *QUIET) == 2
    err = capsys.readouterr().err
    assert err.startswith("t2s: error:") and err.count("\n") == 1 and str(cfg) in err and "line" in err


# -- native and SegEarth frames ----------------------------------------------------------

class FixedBoxAgent(OracleBoxAgent):
    """Answers one box, [210, 420, 630, 840] in the 840 frame, and notes the frame size."""

    name = "test-fixed-box"
    seen: list = []

    def act_batch(self, observations, infos):
        from t2s_env.instructions import format_completion
        from t2s_env.prompt import GeometricPrompt

        type(self).seen.extend(o["image"].shape for o in observations)
        return [format_completion([GeometricPrompt(box=(210, 420, 630, 840))]) for _ in observations]


@pytest.fixture
def fixed_box(monkeypatch):
    monkeypatch.setitem(agents.REGISTRY, "test-fixed-box", "tests.benchmarks.test_harness:FixedBoxAgent")
    monkeypatch.setattr(FixedBoxAgent, "seen", [])
    return FixedBoxAgent


def test_native_protocol_iou_on_a_non_square_image(fixed_box, tmp_path):
    """A 400x200 image: the agent sees 840x840; its box [210, 420, 630, 840] maps back to
    [100, 100, 300, 200] (x·400/840, y·200/840). GT [150, 50, 350, 150):
    I = 150·50 = 7500, U = 20000 + 20000 - 7500 = 32500, IoU = 3/13 at the original size."""
    root = tmp_path / "data"
    mask = rectangle_mask(200, 400, [(150, 50, 350, 150)])
    image = np.full((200, 400, 3), 90, np.uint8)
    image[mask] = (200, 180, 60)
    write_sample(root, "val", "wide", image, mask, questions=["q"], answer=["target"])
    assert bench(root, tmp_path / "out", "--agents", "test-fixed-box", "--protocol", "native", "--no-tensorboard") == 0
    (d,) = run_dirs(tmp_path / "out").values()
    (s,) = read_samples(d)
    assert (s["intersection"], s["union"]) == (7500, 32500)
    assert s["iou"] == pytest.approx(3 / 13) and read_metrics(d)["gIoU"] == pytest.approx(3 / 13)
    assert fixed_box.seen == [(840, 840, 3)]
    assert s["prompts"] == [{"bbox_2d": [100, 100, 300, 200]}]
    # the 840 frame counts pixels of the stretched frame instead: same box, other numbers
    assert bench(root, tmp_path / "square", "--agents", "test-fixed-box", "--no-tensorboard") == 0
    (sq,) = read_samples(next(iter(run_dirs(tmp_path / "square").values())))
    assert sq["union"] != 32500 and sq["iou"] == pytest.approx(3 / 13, abs=0.02)


def test_segearth_protocol_pads_the_long_side_to_1024(fixed_box, tmp_path):
    """400x200 -> 1024x512 content padded to 1024x1024; the GT [150, 50, 350, 150) becomes
    [384, 128, 896, 384) and the same box [210, 420, 630, 840] is scored in that frame: its
    rows 420..840 lie below the GT's rows 128..384, so I = 0 and U = |GT| + |box|."""
    root = tmp_path / "data"
    mask = rectangle_mask(200, 400, [(150, 50, 350, 150)])
    image = np.full((200, 400, 3), 90, np.uint8)
    write_sample(root, "val", "wide", image, mask, questions=["q"], answer=["target"])
    assert bench(root, tmp_path / "out", "--agents", "test-fixed-box", "--protocol", "segearth-1024",
                 "--no-tensorboard") == 0
    (d,) = run_dirs(tmp_path / "out").values()
    (s,) = read_samples(d)
    assert fixed_box.seen == [(1024, 1024, 3)]
    gt_area = (896 - 384) * (384 - 128)
    box_area = (630 - 210) * (840 - 420)
    assert (s["intersection"], s["union"]) == (0, gt_area + box_area)


# -- leaderboard identity, partial runs, provenance, intervals --------------------------------

def test_a_limited_run_never_replaces_the_full_row(disjoint_root, tmp_path, capsys):
    from think2seg.benchmarks.leaderboard import collect

    assert bench(disjoint_root, tmp_path, "--agents", "oracle-box", "--no-tensorboard") == 0
    full = read_metrics(run_dirs(tmp_path)["oracle-box"])
    assert bench(disjoint_root, tmp_path, "--agents", "oracle-box", "--limit", "3", "--no-tensorboard") == 0
    rows = [e for e in collect(ResultsStore(tmp_path)) if e.source == "run"]
    assert [(e.agent, e.n, e.giou) for e in rows] == [("oracle-box", 6, full["gIoU"])]
    history = [e for e in collect(ResultsStore(tmp_path), all_runs=True) if e.source == "run"]
    assert sorted((e.n, e.partial) for e in history) == [(3, True), (6, False)]
    capsys.readouterr()
    assert t2s_main(["leaderboard", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "1 partial run(s)" in captured.err and " 3 " not in captured.out.split("reported")[-1]
    assert t2s_main(["leaderboard", "--out", str(tmp_path), "--history"]) == 0
    assert "partial" in capsys.readouterr().out


def test_rows_differing_in_anything_that_changes_numbers_are_kept_apart(disjoint_root, tmp_path):
    from think2seg.benchmarks.leaderboard import collect

    assert bench(disjoint_root, tmp_path, "--agents", "oracle-box", "--no-tensorboard") == 0
    assert bench(disjoint_root, tmp_path, "--agents", "oracle-box", "--no-tensorboard",
                 "--protocol-option", "comparator=>") == 0
    assert bench(disjoint_root, tmp_path, "--agents", "oracle-box", "--no-tensorboard", "--prompt-variant", "bbox") == 0
    assert bench(disjoint_root, tmp_path, "--agents", "oracle-box", "--no-tensorboard") == 0  # same as the first
    rows = [e for e in collect(ResultsStore(tmp_path)) if e.source == "run"]
    assert len(rows) == 3 and len({e.identity for e in rows}) == 3


def test_run_yaml_records_provenance_and_metrics_carry_intervals(disjoint_root, tmp_path, capsys):
    argv = ["--agents", "oracle-box,empty", "--no-tensorboard"]
    assert bench(disjoint_root, tmp_path, *argv) == 0
    runs = run_dirs(tmp_path)
    cfg = yaml.safe_load((runs["oracle-box"] / "run.yaml").read_text())
    data = cfg["fingerprints"]["data"]
    assert data["n_files"] == 12 and data["method"] == "sha256 of files" and len(data["sha256"]) == 64
    assert cfg["command"][:2] == ["t2s", "bench"] and "--agents" in cfg["command"]
    assert {"think2seg", "torch", "numpy"} <= set(cfg["versions"]) and "commit" in cfg["git"]
    assert cfg["identity"] and cfg["partial"] is False and cfg["n_available"] == 6
    # a changed label file changes the data fingerprint
    label = next((disjoint_root / "val" / "labels").iterdir())
    original = label.read_bytes()
    try:
        label.write_bytes(original + b"\0")
        from think2seg.benchmarks.provenance import _SHA_CACHE, dataset_fingerprint
        from t2s_env.datasets import make_dataset

        _SHA_CACHE.clear()
        assert dataset_fingerprint(list(make_dataset("earthreason:val", root=str(disjoint_root))))["sha256"] != data["sha256"]
    finally:
        label.write_bytes(original)
    m = read_metrics(runs["oracle-box"])
    for key in ("gIoU", "cIoU", "Pr@0.5"):
        lo, hi = m["intervals"][key]
        assert lo <= m[key] <= hi
    assert m["intervals"]["seed"] == 0 and m["intervals"]["n_boot"] == 1000
    capsys.readouterr()
    assert t2s_main(["leaderboard", "--out", str(tmp_path), "--fingerprints"]) == 0
    out = capsys.readouterr().out
    assert data["sha256"][:12] in out and cfg["identity"][:12] in out
    assert t2s_main(["leaderboard", "--out", str(tmp_path), "--compare", runs["oracle-box"].name,
                     runs["empty"].name]) == 0
    out = capsys.readouterr().out
    assert "A - B" in out and "gIoU" in out and "6 paired samples" in out


def test_model_fingerprint_hashes_weights_or_names_the_hub_revision(tmp_path, monkeypatch):
    from think2seg.benchmarks.provenance import model_fingerprint

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    fp = model_fingerprint({"model": str(model)})
    import hashlib

    assert fp["source"] == "local" and fp["weights"]["model.safetensors"] == hashlib.sha256(b"weights").hexdigest()
    assert fp["config_sha256"] == hashlib.sha256(b"{}").hexdigest()
    (model / "model.safetensors").write_bytes(b"other weights")
    assert model_fingerprint({"model": str(model)})["sha256"] != fp["sha256"]
    hub = tmp_path / "hub"
    (hub / "models--Org--Model-7B" / "refs").mkdir(parents=True)
    (hub / "models--Org--Model-7B" / "refs" / "main").write_text("0123abcd\n")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert model_fingerprint({"model": "Org/Model-7B", "revision": "abc123"}) == {
        "source": "hub", "id": "Org/Model-7B", "revision": "abc123", "resolved_commit": None}
    assert model_fingerprint({"model": "Org/Model-7B"})["resolved_commit"] == "0123abcd"
    assert model_fingerprint({"name": "oracle-box"}) is None


def test_resume_refuses_options_that_change_the_numbers(scripted, disjoint_root, tmp_path, capsys):
    scripted.kill_after_batches = 1
    with pytest.raises(KeyboardInterrupt):
        bench(disjoint_root, tmp_path, "--agents", "test-scripted", "--batch-size", "2", "--no-tensorboard")
    (run_id,) = [d.name for d in (tmp_path / "runs").iterdir()]
    scripted.kill_after_batches = None
    capsys.readouterr()
    assert cli("--out", str(tmp_path), "--resume", run_id, "--protocol", "t2s-compat", *QUIET) == 2
    err = capsys.readouterr().err
    assert "t2s-compat" in err and "strict" in err and err.count("\n") == 1
    assert cli("--out", str(tmp_path), "--resume", run_id, "--seed", "3", *QUIET) == 2
    assert cli("--out", str(tmp_path), "--resume", run_id, "--protocol", "strict", *QUIET) == 0  # the same: fine


# -- failures: bad data, full disk, bad rows, a locked database -------------------------------

def test_a_bench_stopped_by_bad_data_marks_its_run_failed(disjoint_root, tmp_path, capsys, monkeypatch):
    """An image that turns out unreadable mid-run (e.g. truncated after `data check`)."""
    from t2s_env.errors import DatasetError

    real = runner.load_scoring_frames

    def load_frames(sample, *args):
        if sample.sample_id == "r03":
            raise DatasetError(f"cannot read image {sample.image_path}: truncated; replace or remove the file")
        return real(sample, *args)

    monkeypatch.setattr(runner, "load_scoring_frames", load_frames)
    assert cli("--dataset", "earthreason:val", "--root", str(disjoint_root), "--segmenter", "box",
               "--out", str(tmp_path / "out"), "--agents", "oracle-box", "--batch-size", "2", *QUIET) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("t2s: error:") and "r03" in last and "--resume" in last
    (d,) = (tmp_path / "out" / "runs").iterdir()
    cfg = yaml.safe_load((d / "run.yaml").read_text())
    assert cfg["status"] == "failed" and "r03" in cfg["error"]
    assert [s["sample_id"] for s in read_samples(d)] == ["r00", "r01"]


def test_disk_full_mid_run_is_one_line_that_keeps_the_resume_hint(disjoint_root, tmp_path, capsys, monkeypatch):
    import errno

    from think2seg.benchmarks.rundir import RunDir

    calls = {"n": 0}
    original = RunDir.append

    def append(self, records):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.samples_path))
        return original(self, records)

    monkeypatch.setattr(RunDir, "append", append)
    out = tmp_path / "out"
    assert cli("--dataset", "earthreason:val", "--root", str(disjoint_root), "--segmenter", "box", "--out", str(out),
               "--agents", "oracle-box", "--batch-size", "2", *QUIET) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    (d,) = (out / "runs").iterdir()
    assert last.startswith("t2s: error:") and "disk is full" in last and f"--resume {d.name}" in last
    monkeypatch.setattr(RunDir, "append", original)
    assert cli("--out", str(out), "--resume", d.name, *QUIET) == 0
    assert read_metrics(d)["n"] == 6 and yaml.safe_load((d / "run.yaml").read_text())["status"] == "complete"


class FullDiskAt:
    """``os.write``, ``os.fsync`` and ``os.close`` on files under ``root``, counted together;
    the ``n``-th call fails with ENOSPC (a close closes, then fails, as NFS reports a late
    write error). ``n=None`` only counts."""

    def __init__(self, monkeypatch, root: Path, n: int | None) -> None:
        import os

        self.root, self.n, self.calls = str(root), n, 0
        for name in ("write", "fsync", "close"):
            monkeypatch.setattr(os, name, self._wrap(name, getattr(os, name)))

    def _under_root(self, fd: int) -> bool:
        import os

        try:
            return os.readlink(f"/proc/self/fd/{fd}").startswith(self.root)
        except OSError:
            return False

    def _wrap(self, name, real):
        import errno

        def call(fd, *args):
            if not self._under_root(fd):
                return real(fd, *args)
            self.calls += 1
            if self.calls != self.n:
                return real(fd, *args)
            if name == "close":
                real(fd)
            raise OSError(errno.ENOSPC, "No space left on device")

        return call


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_enospc_at_each_write_fsync_and_close_of_the_run_files(disjoint_root, tmp_path, capsys, monkeypatch):
    """ENOSPC injected at each write, fsync and close of the run folders' files in turn:
    one line (with the resume command once a run folder exists), and the run resumes to
    the samples of an undisturbed run. Runs anywhere; the tmpfs test above is the real disk."""
    argv = ["--dataset", "earthreason:val", "--root", str(disjoint_root), "--segmenter", "box", "--agents",
            "oracle-box", "--batch-size", "2", "--no-tensorboard", *QUIET]
    ref = tmp_path / "ref"
    with monkeypatch.context() as m:
        counted = FullDiskAt(m, ref / "runs", None)
        assert cli("--out", str(ref), *argv) == 0
    want = read_samples(next(iter(run_dirs(ref).values())))
    assert counted.calls >= 10  # run.yaml, the lock, 3 appends, metrics.json, run.yaml again
    capsys.readouterr()
    stopped = []
    for n in range(1, counted.calls + 1):
        out = tmp_path / f"out-{n}"
        with monkeypatch.context() as m:
            FullDiskAt(m, out / "runs", n)
            rc = cli("--out", str(out), *argv)
        last = capsys.readouterr().err.strip().splitlines()[-1] if rc else ""
        folders = list((out / "runs").iterdir())
        if rc == 0:  # e.g. the lock's holder line: the lock holds without it
            continue
        assert rc == 2 and last.startswith("t2s: error:") and "disk is full" in last, (n, last)
        assert ("--resume" in last) == bool(folders), (n, last)
        stopped.append(n)
        for d in folders:
            assert cli("--out", str(out), "--resume", d.name, *QUIET) == 0, n
            assert read_samples(d) == want, n
    print(f"{counted.calls} write points, {len(stopped)} stopped the run")
    assert len(stopped) >= counted.calls - 3  # only the lock's holder line and closes may pass


def _private_tmpfs_works(mount: Path) -> bool:
    """Whether this machine lets a process mount a tmpfs in a private user and mount
    namespace (root, or unprivileged user namespaces)."""
    import shutil
    import subprocess

    if not shutil.which("unshare"):
        return False
    mount.mkdir(exist_ok=True)
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            f"mount -t tmpfs -o size=64k tmpfs '{mount}' && touch '{mount}/x'"],
                           capture_output=True, timeout=60)
    return probe.returncode == 0


@pytest.mark.slow
def test_a_full_disk_at_any_point_of_a_run_is_one_line_and_the_run_resumes(tmp_path):
    """A real full disk (a 1 MiB tmpfs, filled to leave 0, 4, 8, ... kB) at every point of a
    run: run folders, samples.jsonl, metrics.json, TensorBoard's writer thread, the
    leaderboard. Every case ends in one line (the resume command once a run folder
    exists), never a traceback; with space freed, every stopped run resumes to the samples
    of a run that had space. (At about 150 kB free, closing samples.jsonl once re-raised
    its failed write as a traceback.)"""
    import json
    import subprocess
    import sys

    from tests.datagen import write_rectangle_dataset

    mount = tmp_path / "mnt"
    if not _private_tmpfs_works(mount):
        pytest.skip("cannot mount a tmpfs here (needs `unshare --user --map-root-user --mount`)")
    write_rectangle_dataset(tmp_path / "data", split="val", n=6, n_empty=1, seed=2, size=64)
    common = ["--dataset", "earthreason:val", "--root", str(tmp_path / "data"), "--segmenter", "box",
              "--agents", "oracle-box", "--batch-size", "2", "--tb-samples", "1", *QUIET]
    script = (f"mount -t tmpfs -o size=1m tmpfs '{mount}' && exec '{sys.executable}' -m tests.diskfull_bench "
              f"'{mount}' " + " ".join(f"'{a}'" for a in common))
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, timeout=1200, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    cases = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(cases) > 10 and cases[-1]["rc"] == 0 and all(c["rc"] == 2 for c in cases[:-1])
    for c in cases:
        assert not c["traceback"], c
        if c["rc"] == 2:
            assert c["last"].startswith("t2s: error:") and c["last"].count("\n") == 0, c
            assert ("--resume" in c["last"]) == (c["run_folders"] > 0), c
        assert c["resumed"] == [0] * len(c["resumed"]) and (c["same_samples"] or c["run_folders"] == 0), c
    assert sum("disk is full" in c["last"] for c in cases) > 5  # samples, metrics, TensorBoard, ...
    assert any("--resume" in c["last"] and "leaderboard.sqlite" in c["last"] for c in cases)


def test_a_bad_leaderboard_row_is_skipped_with_a_warning(disjoint_root, tmp_path, capsys):
    import sqlite3

    assert bench(disjoint_root, tmp_path, "--agents", "oracle-box", "--no-tensorboard") == 0
    with sqlite3.connect(tmp_path / "leaderboard.sqlite") as conn:
        conn.execute("INSERT INTO runs (run_id, agent, segmenter, dataset, protocol, n, n_failed, config_json, "
                     "metrics_json) VALUES ('broken-run', 'x', 'box', 'earthreason:val', 'strict', 'many', 0, '{', '{}')")
    capsys.readouterr()
    # the next bench's final print still works, and names the bad row
    assert cli("--dataset", "earthreason:val", "--root", str(disjoint_root), "--segmenter", "box", "--out",
               str(tmp_path), "--agents", "empty", "--no-progress", "--no-tensorboard") == 0
    captured = capsys.readouterr()
    assert "broken-run" in captured.err and "skipping" in captured.err
    assert "oracle-box" in captured.out and "empty" in captured.out


def test_a_locked_leaderboard_says_busy_retry(tmp_path, capsys):
    import sqlite3

    store = ResultsStore(tmp_path, timeout=0.2)
    store.prepare()
    holder = sqlite3.connect(store.db_path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        from think2seg.benchmarks.results_store import ResultsError, RunRow

        with pytest.raises(ResultsError) as info:
            store.insert_run(RunRow("r", "a", "box", "earthreason:val", "strict", 1, 0, {}))
        msg = str(info.value)
        assert "busy" in msg and "retry" in msg and "move it away" not in msg
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_prompt_geometry_of_the_protocol_reaches_the_scorer(fixed_box, tmp_path, monkeypatch):
    """t2s-compat passes prompts as written (upstream: unclipped, corners in the order
    written); strict clips them to the frame and orders the corners."""
    from t2s_env.instructions import format_completion
    from t2s_env.prompt import GeometricPrompt

    def act_batch(self, observations, infos):
        return [format_completion([GeometricPrompt(box=(900, 500, -20, 100))]) for _ in observations]

    monkeypatch.setattr(FixedBoxAgent, "act_batch", act_batch)
    root = tmp_path / "data"
    write_sample(root, "val", "s0", np.full((840, 840, 3), 90, np.uint8), rectangle_mask(840, 840, [(10, 10, 50, 50)]),
                 questions=["q"], answer=["target"])
    boxes = {}
    for protocol in ("strict", "t2s-compat"):
        assert bench(root, tmp_path / protocol, "--agents", "test-fixed-box", "--protocol", protocol,
                     "--no-tensorboard") == 0
        (s,) = read_samples(next(iter(run_dirs(tmp_path / protocol).values())))
        boxes[protocol] = s["prompts"][0]["bbox_2d"]
    assert boxes["t2s-compat"] == [900, 500, -20, 100]
    assert boxes["strict"] == [0, 100, 840, 500]


def test_frames_pad_and_map_back():
    from types import SimpleNamespace

    from t2s_env.framing import load_scoring_frames, map_prompt, pad_frame
    from t2s_env.prompt import GeometricPrompt

    image = np.full((100, 300, 3), 200, np.uint8)
    mask = rectangle_mask(100, 300, [(30, 10, 60, 40)])
    padded, pmask = pad_frame(image, mask, 600)
    assert padded.shape == (600, 600, 3) and pmask.shape == (600, 600)
    assert padded[:200].min() > 150 and padded[200:].max() == 0  # content 600x200, then black
    assert pmask.sum() == (120 - 60) * (80 - 20) and pmask[20:80, 60:120].all()
    p = map_prompt(GeometricPrompt(box=(84, 42, 168, 84), positive_points=((42, 21),)), 300 / 840, 100 / 840)
    assert p.box == pytest.approx((30, 5, 60, 10)) and p.positive_points[0] == pytest.approx((15, 2.5))
    sample = SimpleNamespace(load=lambda: (image, mask))
    f = load_scoring_frames(sample, 600, "pad", "original")
    assert f.framed.image.shape == (600, 600, 3) and f.image.shape == (100, 300, 3) and f.scale == (0.5, 0.5)
    assert load_scoring_frames(sample, 840, "square", "agent").scale is None


# -- a refused command writes nothing ----------------------------------------------------------

DATA = ["--dataset", "earthreason:val", "--root", "ROOT"]


@pytest.mark.parametrize("argv, needle", [
    ([*DATA, "--segmenter", "box", "--agents", "center-box:2"], "center-box fraction"),  # a bad agent option
    ([*DATA, "--segmenter", "box", "--agent-config", "AGENTS"], "has no option 'colour'"),  # ... from YAML
    ([*DATA, "--segmenter", "grabcut", "--segmenter-option", "max_side=abc"], "max_side=abc"),  # a bad segmenter option
    ([*DATA, "--segmenter", "box", "--segmenter-option", "point_radius"], "KEY=VALUE"),
    ([*DATA, "--segmenter", "box", "--protocol-option", "image_size=big"], "image_size"),
    (["--resume", "20990101-nope"], "no run '20990101-nope'"),
])
def test_a_refused_command_creates_no_results_folder(disjoint_root, tmp_path, capsys, argv, needle):
    """`t2s bench` once made --out, runs/ and an empty leaderboard.sqlite before it
    rejected a bad agent or segmenter option (or an unknown run to resume)."""
    agents_yaml = tmp_path / "agents.yaml"
    agents_yaml.write_text("- {name: center-box, colour: red}\n")
    argv = [{"AGENTS": str(agents_yaml), "ROOT": str(disjoint_root)}.get(a, a) for a in argv]
    out = tmp_path / "out"
    assert cli("--out", str(out), *QUIET, *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("t2s: error:") and err.count("\n") == 1 and needle in err, err
    assert not out.exists()


def test_the_results_folder_is_made_once_the_plan_stands(disjoint_root, tmp_path):
    out = tmp_path / "deep" / "er" / "out"
    assert bench(disjoint_root, out, "--agents", "empty", "--no-tensorboard", "--limit", "1") == 0
    assert (out / "leaderboard.sqlite").is_file() and len(list((out / "runs").iterdir())) == 1


# -- the bench modules read top-down ----------------------------------------------------------

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def bench_imports(name: str) -> set[str]:
    """The benchmarks modules that benchmarks/<name>.py imports (anywhere in the file)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse((BENCH / f"{name}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("think2seg.benchmarks."):
            out.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[2] for a in node.names if a.name.startswith("think2seg.benchmarks."))
    return out


def test_the_bench_modules_import_top_down():
    """cli -> sharding -> plan -> runner -> results store and run folders: no module
    imports itself or one above it, and only the CLI imports sharding (harness.py and
    sharding.py once imported each other)."""
    order = ["cli", "sharding", "plan", "runner", "results_store", "rundir"]
    for k, name in enumerate(order):
        assert not bench_imports(name) & set(order[: k + 1]), (name, bench_imports(name))
    assert [p.stem for p in sorted(BENCH.glob("*.py")) if "sharding" in bench_imports(p.stem)] == ["cli"]


def test_the_runner_calls_no_private_method():
    """No `obj._name` outside `self`/`cls` in the command's modules: the harness once
    re-implemented Scorer.score_many around the private Scorer._finish."""
    offenders = []
    for name in ("harness", "cli", "plan", "runner", "sharding"):
        path = BENCH / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text())) if path.exists() else ():
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                offenders.append(f"{name}.py line {node.lineno}: .{node.attr}")
    assert not offenders


def test_score_parsed_is_score_many_after_parsing():
    """Scorer.score_many == Scorer.parse per completion + Scorer.score_parsed, shared
    image keys included (one encode for two groups on the same image)."""
    from t2s_env import Scorer

    rng = np.random.default_rng(3)
    groups = []
    for k in range(5):
        mask = rectangle_mask(64, 64, [(4 + k, 6, 30 + 3 * k, 40)] if k != 2 else [])
        image = np.full((64, 64, 3), 60 + 30 * k, np.uint8)
        completions = [f'```json\n[{{"bbox_2d": [{a}, {b}, {a + 20}, {b + 25}], "positive_points": '
                       f'[[{a + 5}, {b + 5}], [{a + 6}, {b + 9}]]}}]\n```' for a, b in rng.integers(0, 40, (3, 2))]
        groups.append((image, mask, completions + ["[]", "not an answer", None]))
    groups.append((groups[0][0], groups[1][1], groups[0][2]))  # the first image again, another target
    keys = [0, 1, 2, 3, 4, 0]
    for scorer in (Scorer("box", keep_masks=True), Scorer("box", parser_mode="lenient", encode_batch_size=2)):
        parsed = [(im, gt, [scorer.parse(c, gt.shape[::-1]) for c in cs]) for im, gt, cs in groups]
        for a, b in zip(scorer.score_many(groups, image_keys=keys), scorer.score_parsed(parsed, image_keys=keys)):
            assert [(r.iou, r.reward, r.prompts, r.error) for r in a] == [(r.iou, r.reward, r.prompts, r.error) for r in b]
            assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a, b) if x.mask is not None)
    with pytest.raises(ValueError, match="differ in size"):
        Scorer("box").score_parsed([(np.zeros((8, 9, 3), np.uint8), np.zeros((8, 8), bool), [])])
