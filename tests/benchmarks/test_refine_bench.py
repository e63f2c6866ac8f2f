"""`t2s bench --max-turns K` (issue 20 item 4): per-turn columns, NoC, identity, bad input.

Three 840² images with one 100×60 rectangle each, the box segmenter and a scripted agent whose
IoU per turn is known: a box over the rectangle's left half has IoU 0.5, its tight box 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from think2seg.agents import Agent
from think2seg.benchmarks import cli as bench_cli
from t2s_env import GeometricPrompt, format_completion
from t2s_env.errors import ConfigError
from tests.datagen import rectangle_mask, write_sample

QUIET = ["--no-progress", "--no-leaderboard", "--no-tensorboard"]
RECTS = {"s0": (100, 120, 200, 180), "s1": (400, 300, 500, 360), "s2": (600, 600, 700, 660)}


def _box(box) -> str:
    x1, y1, x2, y2 = box
    return format_completion([GeometricPrompt(box, (((x1 + x2) / 2, (y1 + y2) / 2), ((x1 + x2) / 2 + 1, (y1 + y2) / 2)))])


def half(box):
    x1, y1, x2, y2 = box
    return (x1, y1, (x1 + x2) // 2, y2)


STOP = "<answer>stop</answer>"
#: per sample, the answer at turns 1, 2, 3: IoU per turn s0 [.5, 1, 1 (stop)], s1 [1, .5, .5], s2 [.5, .5 (stop)]
SCRIPT = {
    "s0": lambda b: [_box(half(b)), _box(b), STOP],
    "s1": lambda b: [_box(b), _box(half(b)), _box(half(b))],
    "s2": lambda b: [_box(half(b)), STOP, _box(b)],
}


class TurnScriptAgent(Agent):
    """Answers SCRIPT[sample][turn] (turn from the observation), boxes from the GT."""

    name = "turn-script"
    privileged = True

    def _answer(self, observation, info) -> str:
        ys, xs = np.nonzero(info["gt_mask"])
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        return SCRIPT[info["sample_id"].split("#")[0].split(":")[0]](box)[int(observation.get("turn", 0))]

    def act(self, observation, info) -> str:
        return self._answer(observation, info)

    def act_turn(self, observation, info) -> str:
        assert "overlay" in observation and observation["mask"].shape == (840, 840)
        return self._answer(observation, info)


AGENT = "tests.benchmarks.test_refine_bench:TurnScriptAgent"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("refine_bench")
    for sid, rect in RECTS.items():
        mask = rectangle_mask(840, 840, [rect])
        image = np.full((840, 840, 3), 90, np.uint8)
        image[mask] = (200, 180, 60)
        write_sample(root, "val", sid, image, mask, questions=[f"where is {sid}?"])
    return root


def bench(root, out, *extra) -> dict:
    assert bench_cli.main(["--dataset", "earthreason:val", "--root", str(root), "--segmenter", "box", "--out", str(out),
                           "--agents", AGENT, *QUIET, *extra]) == 0
    (run,) = sorted((Path(out) / "runs").iterdir())
    return {"metrics": json.loads((run / "metrics.json").read_text()),
            "config": yaml.safe_load((run / "run.yaml").read_text()),
            "samples": [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]}


def test_sample_ids_match_the_script(root, tmp_path):
    got = bench(root, tmp_path)
    assert sorted(r["sample_id"].split("#")[0].split(":")[0] for r in got["samples"]) == sorted(RECTS)


def test_per_turn_columns_and_noc(root, tmp_path):
    got = bench(root, tmp_path, "--max-turns", "3")
    m = got["metrics"]["refine"]
    two_thirds = pytest.approx(2 / 3, abs=1e-9)
    assert [t["turn"] for t in m["per_turn"]] == [1, 2, 3]
    # turn 1: .5, 1, .5; turn 2: 1, .5, .5; turn 3: 1, .5, .5 (equal areas: cIoU = gIoU)
    for t in m["per_turn"]:
        assert t["gIoU"] == two_thirds and t["cIoU"] == two_thirds
    assert m["NoC@85"] == pytest.approx(2.0) and m["NoC@90"] == pytest.approx(2.0)  # (2 + 1 + 3) / 3
    assert m["mean_turns"] == pytest.approx(8 / 3)  # 3, 3, 2 (the stops count as turns)
    assert m["final_below_best"] == pytest.approx(1 / 3)  # s1
    assert m["max_turns"] == 3 and m["mode"] == "replace"
    assert got["metrics"]["gIoU"] == two_thirds  # the final answers: 1, .5, .5
    by = {r["sample_id"].split("#")[0].split(":")[0]: r for r in got["samples"]}
    assert [e["iou"] for e in by["s0"]["turns"]] == [0.5, 1.0, 1.0]
    assert [e["stopped"] for e in by["s0"]["turns"]] == [False, False, True]
    assert by["s2"]["turns_used"] == 2 and by["s2"]["iou"] == 0.5
    # the return telescopes to the final answer's one-shot reward (no turn cost)
    for r in got["samples"]:
        assert r["return"] == pytest.approx(r["reward"])
    assert got["config"]["refine"] == {"max_turns": 3, "mode": "replace"}


def test_k1_keeps_todays_run_byte_for_byte(root, tmp_path):
    a = bench(root, tmp_path / "a")
    b = bench(root, tmp_path / "b", "--max-turns", "1", "--refine-mode", "add")
    c = bench(root, tmp_path / "c", "--max-turns", "3")
    d = bench(root, tmp_path / "d", "--max-turns", "3", "--refine-mode", "add")
    assert "refine" not in a["config"] and "refine" not in b["config"] and "refine" not in a["metrics"]
    assert a["config"]["identity"] == b["config"]["identity"]
    assert len({a["config"]["identity"], c["config"]["identity"], d["config"]["identity"]}) == 3
    assert a["samples"] == b["samples"]


@pytest.mark.parametrize("flags, message", [
    (["--max-turns", "0"], "max_turns must be an integer >= 1"),
    (["--max-turns", "-1"], "max_turns must be an integer >= 1"),
    (["--max-turns", "3", "--refine-mode", "merge"], "refine_mode must be one of replace, add, got 'merge'"),
])
def test_bad_refine_options(root, tmp_path, flags, message):
    with pytest.raises(ConfigError, match=message):
        bench_cli.main(["--dataset", "earthreason:val", "--root", str(root), "--out", str(tmp_path), *QUIET, *flags])
    assert not (tmp_path / "runs").exists()


def test_bench_prints_the_refine_line(root, tmp_path, capsys):
    bench(root, tmp_path, "--max-turns", "3")
    out = capsys.readouterr().out
    assert ("gIoU by turn 66.67 → 66.67 → 66.67; NoC@85 2.00, NoC@90 2.00 (K=3 when never reached); "
            "mean turns 2.67; final below best 33.33 %") in out
