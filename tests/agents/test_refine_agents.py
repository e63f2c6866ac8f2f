"""The refine agents: the oracle clicker's click rule on hand-made masks, its answers per
turn (replace and add modes, stop), and ``repeat``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from t2s_env import ConfigError, GeometricPrompt as G, parse_completion
from think2seg.agents import REGISTRY, make_agent
from think2seg.agents.refine import STOP, add_click, next_click

H, W = 60, 80


def blank() -> np.ndarray:
    return np.zeros((H, W), dtype=bool)


# -- next_click -------------------------------------------------------------------------------

def test_no_error_or_only_small_errors_is_none():
    gt = blank()
    gt[10:30, 40:60] = True
    assert next_click(gt, gt) is None
    mask = gt.copy()
    mask[10:12, 40:60] = False  # 40 px of FN
    assert next_click(mask, gt, min_region=41) is None
    assert next_click(mask, gt, min_region=40) is not None  # area >= min_region clicks


def test_positive_click_deepest_inside_the_largest_false_negative_region():
    gt = blank()
    gt[10:30, 40:60] = True  # 20 x 20, missed entirely
    mask = blank()
    mask[40:50, 0:10] = True  # 10 x 10 false positive
    # distance 10 at the four central pixels rows 19-20, cols 49-50: the smallest (y, x)
    assert next_click(mask, gt) == ("positive", (49, 19))


def test_negative_click_when_the_false_positive_region_is_larger():
    gt = blank()
    gt[0:5, 0:5] = True
    mask = gt.copy()
    mask[20:41, 30:51] = True  # 21 x 21 FP: one deepest pixel, its centre
    assert next_click(mask, gt, min_region=10) == ("negative", (40, 30))


def test_the_image_border_counts_as_boundary():
    gt = blank()
    gt[0:30, 0:10] = True  # a strip on the left edge
    assert next_click(blank(), gt) == ("positive", (4, 4))


def test_exact_euclidean_distance_picks_the_deeper_pixel():
    # an L shape: the corner square is deeper than the arms' cells at equal city-block depth
    gt = blank()
    gt[5:25, 5:15] = True
    gt[15:25, 5:45] = True
    kind, (x, y) = next_click(blank(), gt)
    assert kind == "positive" and 5 <= x < 15 and 15 <= y < 25


def test_equal_areas_prefer_the_false_negative_then_the_top_left():
    gt = blank()
    gt[40:50, 60:70] = True  # FN 10 x 10
    mask = blank()
    mask[5:15, 5:15] = True  # FP 10 x 10, higher up
    assert next_click(mask, gt, min_region=50)[0] == "positive"
    gt2 = blank()
    gt2[40:50, 60:70] = True
    gt2[5:15, 5:15] = True
    assert next_click(blank(), gt2, min_region=50) == ("positive", (9, 9))


def test_largest_component_of_several_and_8_connectivity():
    gt = blank()
    gt[0:8, 0:8] = True  # 64
    gt[20:30, 20:30] = True  # 100
    gt[30:40, 30:40] = True  # diagonal neighbour: one 8-connected component of 200
    kind, (x, y) = next_click(blank(), gt, min_region=10)
    assert kind == "positive" and (20 <= x < 40 and 20 <= y < 40)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"mask \(60, 80\) and gt \(60, 81\)"):
        next_click(blank(), np.zeros((H, W + 1), bool))


# -- add_click --------------------------------------------------------------------------------

def test_click_joins_the_box_that_contains_it_else_the_nearest():
    a, b = G(box=(0, 0, 20, 20)), G(box=(50, 30, 80, 60))
    out, i = add_click([a, b], ("positive", (60, 40)))
    assert i == 1 and out[1] == G(box=b.box, positive_points=((60, 40),)) and out[0] == a
    out, i = add_click([a, b], ("negative", (25, 10)))  # in no box: nearest centre is a's
    assert i == 0 and out[0].negative_points == ((25.0, 10.0),)
    out, i = add_click([], ("positive", (3, 4)))
    assert out == [G(positive_points=((3, 4),))] and i == 0


# -- the agent --------------------------------------------------------------------------------

def observe(gt, mask, answers=(), mode="replace"):
    image = np.zeros((H, W, 3), np.uint8)
    obs = {"image": image, "question": "q", "mask": mask.astype(np.uint8), "overlay": image, "turn": len(answers),
           "answers": tuple(answers)}
    info = {"sample_id": "s", "messages": [], "gt_mask": gt, "max_turns": 3, "refine_mode": mode}
    return obs, info


def prompts_of(text):
    """The instances of a completion. Turn 1's parse as the bench parses them; later turns
    carry any number of clicks, which the variant's fixed point count does not allow, so they
    are read as the protocol's JSON (env20's later-turn parse, docs/refine.md)."""
    parsed = parse_completion(text, "bbox+2pos", "lenient", image_size=(W, H))
    if parsed.ok:
        return list(parsed.prompts)
    body = text.split("<answer>", 1)[1].split("</answer>", 1)[0].strip().removeprefix("```json").removesuffix("```")
    return [G.from_dict(d) for d in json.loads(body)]


def test_registered_privileged_and_one_shot_act_is_the_start_agents():
    assert "oracle-clicker" in REGISTRY and "repeat" in REGISTRY
    clicker = make_agent("oracle-clicker")
    assert clicker.privileged and clicker.label == "oracle-clicker:oracle-box"
    gt = blank()
    gt[10:30, 40:60] = True
    obs, info = observe(gt, blank())
    assert clicker.act(obs, info) == make_agent("oracle-box").act(obs, info)
    assert clicker.act_turn(obs, info) == make_agent("oracle-box").act(obs, info)
    with pytest.raises(ConfigError, match="min_region=0"):
        make_agent("oracle-clicker", min_region=0)


def test_clicker_turns_replace_mode():
    gt = blank()
    gt[10:30, 40:60] = True
    clicker = make_agent("oracle-clicker", min_region=10)
    obs, info = observe(gt, blank())
    first = clicker.act_turn(obs, info)
    assert prompts_of(first) == [G(box=(40, 10, 60, 30))]
    # the segmenter missed the lower half: a positive click there, with the box re-sent
    mask = gt.copy()
    mask[20:30] = False
    second = clicker.act_turn(*observe(gt, mask, [first]))
    assert prompts_of(second) == [G(box=(40, 10, 60, 30), positive_points=((44, 24),))]
    # then a spill outside the box: a negative click joins the nearest instance, clicks accumulate
    mask2 = gt.copy()
    mask2[30:45, 40:60] = True
    third = clicker.act_turn(*observe(gt, mask2, [first, second]))
    assert prompts_of(third) == [G(box=(40, 10, 60, 30), positive_points=((44, 24),), negative_points=((47, 37),))]
    # a right mask: stop
    assert clicker.act_turn(*observe(gt, gt, [first, second, third])) == STOP


def test_clicker_add_mode_sends_only_the_anchor_and_the_new_click():
    gt = blank()
    gt[10:30, 40:60] = True
    gt[40:50, 0:10] = True
    clicker = make_agent("oracle-clicker", min_region=10)
    obs, info = observe(gt, blank(), mode="add")
    first = clicker.act_turn(obs, info)
    assert len(prompts_of(first)) == 2
    mask = gt.copy()
    mask[20:30] = False
    second = clicker.act_turn(*observe(gt, mask, [first], mode="add"))
    assert prompts_of(second) == [G(box=(40, 10, 60, 30), positive_points=((44, 24),))]


def test_clicker_needs_the_gt_after_the_first_turn():
    gt = blank()
    gt[10:30, 40:60] = True
    clicker = make_agent("oracle-clicker")
    obs, info = observe(gt, blank(), ["<answer>[]</answer>"])
    del info["gt_mask"]
    with pytest.raises(KeyError, match="privileged"):
        clicker.act_turn(obs, info)


def test_clicker_starting_from_another_agent_and_with_no_instances():
    gt = blank()
    gt[10:30, 40:60] = True
    clicker = make_agent("oracle-clicker:empty", min_region=10)
    obs, info = observe(gt, blank())
    first = clicker.act_turn(obs, info)
    assert prompts_of(first) == []
    second = clicker.act_turn(*observe(gt, blank(), [first]))
    assert prompts_of(second) == [G(positive_points=((49, 19),))]


def test_repeat_resends_its_first_answer():
    gt = blank()
    gt[10:30, 40:60] = True
    rep = make_agent("repeat:center-box")
    assert not rep.privileged and make_agent("repeat").privileged  # default: oracle-box
    obs, info = observe(gt, blank())
    first = rep.act_turn(obs, info)
    assert first == make_agent("center-box").act(obs, info)
    assert rep.act_turn(*observe(gt, gt, [first, "anything"])) == first
    assert rep.config()["agent"] == "center-box"
