"""Agents: baselines and oracles (what they answer, parsed back through the env's parser) and
plug-in agents by import path or entry point (registry, bench runs, resume, bad specs)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from think2seg.agents import BASELINES, ORACLES, REGISTRY, agent_source, available_agents, make_agent
from think2seg.agents.oracles import components, spread_points
from think2seg.benchmarks import cli as bench_cli
from t2s_env import ConfigError, Scorer, parse_completion, summarize_records
from t2s_env.cli import main as t2s_main
from tests.datagen import rectangle_mask, write_rectangle_dataset


def observe(width=64, height=48, sample_id="s0", gt=None):
    obs = {"image": np.zeros((height, width, 3), np.uint8), "question": "where?"}
    info = {"sample_id": sample_id, "messages": []}
    if gt is not None:
        info["gt_mask"] = gt
    return obs, info


def prompts_of(completion, variant="bbox+2pos", mode="strict"):
    answer = parse_completion(completion, variant, mode)
    assert answer.ok, answer.error
    return answer.prompts


# -- registry and name:arg --------------------------------------------------------------

def test_every_baseline_and_oracle_is_registered():
    for name in (*BASELINES, *ORACLES):
        agent = make_agent(name)
        assert agent.name == name and name in REGISTRY


def test_name_arg_parsing():
    a = make_agent("center-box:0.3")
    assert a.fraction == 0.3 and a.label == "center-box:0.3"
    r = make_agent("random-box:7")
    assert r.seed == 7 and r.label == "random-box:7"
    m = make_agent({"name": "center-box", "fraction": 0.25, "prompt_variant": "bbox"})
    assert m.fraction == 0.25 and m.variant.name == "bbox"
    with pytest.raises(ConfigError, match="takes no ':' argument"):
        make_agent("empty:3")
    with pytest.raises(ConfigError, match="oracle-box"):
        make_agent("no-such-agent")
    with pytest.raises(ConfigError, match="fraction"):
        make_agent("center-box:1.5")
    with pytest.raises(ConfigError, match="no option"):
        make_agent("full-image", colour="red")


@pytest.mark.parametrize(
    "spec, options, needle",
    [
        ("oracle-bx", {}, "unknown agent 'oracle-bx' (did you mean oracle-box?); valid: full-image, center-box"),
        ("centre-box:0.5", {}, "unknown agent 'centre-box' (did you mean center-box?)"),
        ("random-box", {"sed": 3}, "agent 'random-box' has no option 'sed' (did you mean seed?); valid: seed, "),
        ({"name": "center-box", "fracton": 0.3}, {}, "agent 'center-box' has no option 'fracton' (did you mean fraction?)"),
    ],
)
def test_misspelt_agent_names_and_options_say_did_you_mean(spec, options, needle):
    with pytest.raises(ConfigError) as e:
        make_agent(spec, **options)
    assert needle in str(e.value) and "\n" not in str(e.value)


# -- baselines --------------------------------------------------------------------------

def test_full_image_box_is_the_image():
    obs, info = observe(64, 48)
    (p,) = prompts_of(make_agent("full-image").act(obs, info))
    assert p.box == (0, 0, 64, 48)
    assert len(p.positive_points) == 2
    assert all(0 <= x < 64 and 0 <= y < 48 for x, y in p.positive_points)


def test_center_box_fraction():
    obs, info = observe(100, 80)
    (p,) = prompts_of(make_agent("center-box:0.5").act(obs, info))
    assert p.box == (25, 20, 75, 60)
    x1, y1, x2, y2 = p.box
    assert all(x1 <= x < x2 and y1 <= y < y2 for x, y in p.positive_points)


def test_random_box_is_seeded_per_sample_not_per_call_order():
    agent = make_agent("random-box:3")
    pairs = [observe(120, 90, f"s{k}") for k in range(6)]
    forward = agent.act_batch([o for o, _ in pairs], [i for _, i in pairs])
    backward = make_agent("random-box:3").act_batch([o for o, _ in pairs[::-1]], [i for _, i in pairs[::-1]])
    assert forward == backward[::-1]
    assert len(set(forward)) > 1  # different samples, different boxes
    other_seed = make_agent("random-box:4").act_batch([o for o, _ in pairs], [i for _, i in pairs])
    assert other_seed != forward
    for c in forward:
        (p,) = prompts_of(c)
        x1, y1, x2, y2 = p.box
        assert 0 <= x1 < x2 <= 120 and 0 <= y1 < y2 <= 90


def test_empty_answers_no_target_and_scores_n_acc_one():
    agent = make_agent("empty")
    obs, info = observe(32, 32)
    completion = agent.act(obs, info)
    answer = parse_completion(completion, "bbox+2pos", "strict")
    assert answer.ok and answer.is_empty_answer
    gt = np.zeros((32, 32), bool)
    results = Scorer("box", parser_mode="lenient").score(obs["image"], gt, [completion])
    records = [
        {"intersection": r.intersection, "union": r.union, "gt_empty": r.gt_empty,
         "pred_empty": r.pred_empty, "parsed_ok": r.parsed_ok}
        for r in results
    ]
    metrics = summarize_records(records)
    assert metrics["N-Acc"] == 1.0 and metrics["gIoU"] == 1.0


def test_baselines_follow_the_prompt_variant():
    obs, info = observe(100, 100)
    (p,) = prompts_of(make_agent("full-image", prompt_variant="2pos").act(obs, info), "2pos")
    assert p.box is None and len(p.positive_points) == 2
    (p,) = prompts_of(make_agent("center-box", prompt_variant="bbox").act(obs, info), "bbox")
    assert p.box is not None and not p.positive_points
    (p,) = prompts_of(make_agent("center-box", prompt_variant="bbox+4pos").act(obs, info), "bbox+4pos")
    assert len(p.positive_points) == 4
    (p,) = prompts_of(make_agent("center-box", prompt_variant="bbox+2pos+2neg").act(obs, info), "bbox+2pos+2neg")
    x1, y1, x2, y2 = p.box
    assert len(p.negative_points) == 2
    assert all(not (x1 <= x < x2 and y1 <= y < y2) for x, y in p.negative_points)


# -- oracles ----------------------------------------------------------------------------

RECTS = [(10, 10, 40, 30), (60, 50, 100, 90), (0, 95, 3, 100)]


def test_oracle_box_gives_tight_boxes_largest_first():
    gt = rectangle_mask(100, 120, RECTS)
    obs, info = observe(120, 100, gt=gt)
    got = [p.box for p in prompts_of(make_agent("oracle-box").act(obs, info), mode="lenient")]
    assert got == [(60, 50, 100, 90), (10, 10, 40, 30), (0, 95, 3, 100)]
    # and the box segmenter turns them back into the GT exactly
    (r,) = Scorer("box", parser_mode="lenient").score(obs["image"], gt, [make_agent("oracle-box").act(obs, info)])
    assert r.iou == 1.0


def test_oracle_points_lie_inside_the_gt_and_are_distinct():
    # an L-shaped component, a ring (its centre is background) and a single pixel
    gt = np.zeros((80, 80), bool)
    gt[5:40, 5:12] = True
    gt[33:40, 5:35] = True
    gt[50:75, 50:75] = True
    gt[56:69, 56:69] = False
    gt[2, 70] = True
    obs, info = observe(80, 80, gt=gt)
    for variant, n in (("bbox+2pos", 2), ("bbox+4pos", 4)):
        prompts = prompts_of(make_agent("oracle-points", prompt_variant=variant).act(obs, info), variant, "lenient")
        assert len(prompts) == 3
        for p in prompts:
            assert p.box is None and len(p.positive_points) == n
            assert all(gt[int(y), int(x)] for x, y in p.positive_points)
        big = [p for p in prompts if len(set(p.positive_points)) > 1]
        assert len(big) == 2  # only the one-pixel component repeats its point


def test_oracle_box_points_with_negative_points_outside():
    gt = rectangle_mask(100, 120, RECTS[:2])
    obs, info = observe(120, 100, gt=gt)
    prompts = prompts_of(make_agent("oracle-box+points", prompt_variant="bbox+2pos+2neg").act(obs, info), "bbox+2pos+2neg")
    assert len(prompts) == 2
    for p in prompts:
        assert p.box is not None and len(p.positive_points) == 2 and len(p.negative_points) == 2
        assert all(gt[int(y), int(x)] for x, y in p.positive_points)
        assert not any(gt[int(y), int(x)] for x, y in p.negative_points)


def test_oracles_on_empty_gt_answer_empty_list():
    obs, info = observe(50, 50, gt=np.zeros((50, 50), bool))
    for name in ORACLES:
        assert parse_completion(make_agent(name).act(obs, info), "bbox+2pos", "lenient").is_empty_answer


def test_oracles_are_privileged_and_need_the_gt():
    obs, info = observe(50, 50)
    for name in ORACLES:
        agent = make_agent(name)
        assert agent.privileged
        with pytest.raises(KeyError, match="gt_mask"):
            agent.act(obs, info)
    assert not any(make_agent(n).privileged for n in BASELINES)


def test_oracle_points_needs_a_variant_with_points():
    with pytest.raises(ConfigError, match="positive points"):
        make_agent("oracle-points", prompt_variant="bbox")
    make_agent("oracle-box", prompt_variant="bbox")  # fine: boxes only


def test_components_use_8_connectivity():
    gt = np.zeros((10, 10), bool)
    gt[2, 2] = gt[3, 3] = True  # diagonal neighbours: one component
    assert len(components(gt)) == 1
    assert len(components(gt, connectivity=4)) == 2
    assert components(gt)[0].box == (2, 2, 4, 4)


def test_spread_points_prefers_deep_and_distant_pixels():
    score = np.zeros((5, 9))
    score[2, 1:8] = [1, 2, 3, 4, 3, 2, 1]
    (r0, c0), (r1, c1) = spread_points(score, 2)
    assert (r0, c0) == (2, 4)
    assert (r1, c1) != (r0, c0) and score[r1, c1] > 0


# -- plug-in agents (import path and entry point) ------------------------------------------

PLUGIN = "tests.agent_plugins.boxes:PluginBoxAgent"


@pytest.fixture
def plugin(monkeypatch):
    from tests.agent_plugins.boxes import PluginBoxAgent

    monkeypatch.setattr(PluginBoxAgent, "batches", 0)
    monkeypatch.setattr(PluginBoxAgent, "kill_after_batches", None)
    monkeypatch.setattr(PluginBoxAgent, "answered", [])
    return PluginBoxAgent


@pytest.fixture
def entry_point_dist(tmp_path, monkeypatch):
    """An installed distribution (a .dist-info on sys.path) registering a plug-in agent."""
    info = tmp_path / "site" / "t2s_plugin_demo-2.5.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: t2s-plugin-demo\nVersion: 2.5.0\n")
    (info / "entry_points.txt").write_text(f"[think2seg.agents]\nplug-box = {PLUGIN}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return info


def small_rect_root(tmp_path) -> Path:
    root = tmp_path / "rects"
    write_rectangle_dataset(root, split="val", n=5, n_empty=1, seed=0, size=128)
    return root


def bench(root, out, *extra) -> int:
    return bench_cli.main(["--dataset", "earthreason:val", "--root", str(root), "--segmenter", "box",
                         "--out", str(out), "--no-progress", "--no-leaderboard", "--no-tensorboard", *extra])


def only_run(out: Path) -> tuple[Path, dict]:
    (run_dir,) = sorted((out / "runs").iterdir())
    return run_dir, yaml.safe_load((run_dir / "run.yaml").read_text())


def sample_lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def test_plugin_by_import_path_with_arg(plugin):
    agent = make_agent(f"{PLUGIN}:0.3")
    assert isinstance(agent, plugin) and agent.fraction == 0.3 and agent.label == "plugin-box:0.3"
    assert make_agent({"name": PLUGIN, "fraction": 0.2}).fraction == 0.2
    assert make_agent("tests.agent_plugins.boxes:Anonymous").label == "Anonymous"
    assert agent_source(PLUGIN) == {"kind": "import", "import_path": PLUGIN, "version": "0.7.1", "distribution": None}
    assert agent_source("center-box:0.3")["import_path"] == "think2seg.agents.baselines:CenterBoxAgent"


def test_plugin_registered_as_entry_point(plugin, entry_point_dist):
    assert "plug-box" in available_agents()
    agent = make_agent("plug-box:0.25")
    assert isinstance(agent, plugin) and agent.fraction == 0.25
    assert agent_source("plug-box:0.25") == {"kind": "entry_point", "import_path": PLUGIN, "version": "2.5.0",
                                             "distribution": "t2s-plugin-demo"}
    assert "plug-box" in bench_cli.build_parser().format_help()


@pytest.mark.parametrize("spec, needle", [
    ("missing.module:X", "cannot import module 'missing.module'"),
    ("tests.agent_plugins.boxes:Nope", "has no 'Nope'"),
    ("tests.agent_plugins.boxes:NotAnAgent", "is not an agent"),
    ("tests.agent_plugins.boxes:not_a_class", "is not an agent"),
    ("no-such-agent", "module.path:Class"),
])
def test_bad_agent_spec_is_one_line_naming_it(spec, needle, tmp_path, capsys):
    assert t2s_main(["bench", "--agents", spec, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("t2s: error: ") and needle in err, err
    assert repr(spec.partition(":")[0] if spec == "no-such-agent" else spec) in err
    assert not (tmp_path / "out" / "runs").exists() or not any((tmp_path / "out" / "runs").iterdir())


def test_plugin_run_resumes_like_a_builtin_and_records_its_source(plugin, tmp_path):
    root = small_rect_root(tmp_path)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    plugin.kill_after_batches = 1
    with pytest.raises(KeyboardInterrupt):
        bench(root, killed, "--agents", f"{PLUGIN}:0.4", "--batch-size", "2")
    run_dir, config = only_run(killed)
    assert [s["sample_id"] for s in sample_lines(run_dir)] == ["img000", "img001"]
    assert config["agent"]["label"] == "plugin-box:0.4"
    assert config["agent"]["source"] == {"kind": "import", "import_path": PLUGIN, "version": "0.7.1",
                                         "distribution": None}

    plugin.kill_after_batches = None
    plugin.answered.clear()
    assert bench_cli.main(["--out", str(killed), "--resume", run_dir.name, "--no-progress", "--no-leaderboard",
                         "--no-tensorboard"]) == 0
    assert plugin.answered == ["img002", "img003", "img004"]
    assert bench(root, clean, "--agents", f"{PLUGIN}:0.4", "--batch-size", "2") == 0
    clean_dir, _ = only_run(clean)
    assert sample_lines(run_dir) == sample_lines(clean_dir)
    resumed, uninterrupted = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, clean_dir))
    for m in (resumed, uninterrupted):
        del m["run_id"]
    assert resumed == uninterrupted


def test_the_documented_example_agent_runs(tmp_path, monkeypatch):
    """The 20-line example of docs/agents.md, copied into a module of its own, benches."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "agents.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 30
    (tmp_path / "my_agents.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    root = small_rect_root(tmp_path)
    assert t2s_main(["bench", "--dataset", "earthreason:val", "--root", str(root), "--segmenter", "box",
                     "--out", str(tmp_path / "out"), "--agents", "my_agents:BrightBoxAgent:0.9",
                     "--no-progress", "--no-leaderboard", "--no-tensorboard"]) == 0
    run_dir, config = only_run(tmp_path / "out")
    assert config["agent"]["label"] == "bright-box:0.9" and config["agent"]["source"]["version"] == "1.0"
    lines = sample_lines(run_dir)
    assert len(lines) == 5 and all(s["parsed_ok"] for s in lines)
