"""Baseline and oracle agents: what they answer, parsed back through the env's parser."""

from __future__ import annotations

import numpy as np
import pytest

from think2seg.agents import BASELINES, ORACLES, REGISTRY, make_agent
from think2seg.agents.oracles import components, spread_points
from t2s_env import ConfigError, Scorer, parse_completion, summarize_records
from tests.datagen import rectangle_mask


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
