"""The per-completion reward (SPEC §4) with exact values, and the Scorer's batching.

R = 2·IoU + 1[strict parse] + 1[think/answer format]. The `box` segmenter's mask is the
union of the prompted boxes (integer box [x1,y1,x2,y2] covers columns x1..x2-1), so on
rectangle ground truths every IoU below is computed by hand.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from t2s_env.errors import ConfigError
from t2s_env.reward import RewardWeights, reward_components, total_reward
from t2s_env.integrations.trl import make_reward_functions
from t2s_env.scoring import Scorer
from t2s_env.segmenters.box import BoxSegmenter
from tests.datagen import rectangle_mask

H, W = 100, 120
IMAGE = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
EMPTY_GT = np.zeros((H, W), dtype=bool)


def gt(*rects):
    return rectangle_mask(H, W, rects)


def inst(box, pts=None):
    x1, y1, x2, y2 = box
    if pts is None:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        pts = [[cx, cy], [cx + 1, cy + 1]]
    return {"bbox_2d": list(box), "positive_points": pts}


def completion(instances, think="reasoning", fence=True, sep="\n"):
    body = json.dumps(instances)
    if fence:
        body = f"```json{body}```"
    return f"<think>{think}</think>{sep}<answer>{body}</answer>"


def score_one(completion_text, gt_mask, **scorer_kw):
    return Scorer("box", **scorer_kw).score(IMAGE, gt_mask, [completion_text])[0]


# -- SPEC §4 values -----------------------------------------------------------------------


def test_perfect_answer_scores_four():
    g = gt((20, 30, 60, 70))
    r = score_one(completion([inst((20, 30, 60, 70))]), g)
    assert r.reward == pytest.approx(4.0)
    assert r.iou == 1.0 and r.json_ok and r.think_ok and r.parsed_ok
    assert r.intersection == r.union == 40 * 40
    assert r.reward_components == {"iou": 1.0, "json": 1.0, "think": 1.0}
    assert not r.gt_empty and not r.pred_empty and not r.answer_empty


def test_missing_fence_strict_mode():
    """Strict scorer: the answer fails to parse, so the IoU term is 0 and only the think
    point remains."""
    g = gt((20, 30, 60, 70))
    r = score_one(completion([inst((20, 30, 60, 70))], fence=False), g, parser_mode="strict")
    assert r.reward == pytest.approx(1.0)
    assert r.reward_components == {"iou": 0.0, "json": 0.0, "think": 1.0}
    assert not r.parsed_ok and not r.json_ok and r.pred_empty
    assert r.intersection == 0 and r.union == 40 * 40


def test_missing_fence_lenient_mode_keeps_iou():
    """Lenient scorer: the prompts are segmented, but the JSON point is always strict."""
    g = gt((20, 30, 60, 70))
    r = score_one(completion([inst((20, 30, 60, 70))], fence=False), g, parser_mode="lenient")
    assert r.reward == pytest.approx(3.0)
    assert r.reward_components == {"iou": 1.0, "json": 0.0, "think": 1.0}
    assert r.parsed_ok and not r.json_ok


def test_empty_list_on_empty_gt_scores_four():
    r = score_one(completion([]), EMPTY_GT)
    assert r.reward == pytest.approx(4.0)
    assert r.gt_empty and r.pred_empty and r.answer_empty and r.iou == 1.0


def test_empty_list_on_nonempty_gt_scores_two():
    r = score_one(completion([]), gt((10, 10, 30, 30)))
    assert r.reward == pytest.approx(2.0)
    assert r.reward_components == {"iou": 0.0, "json": 1.0, "think": 1.0}
    assert r.pred_empty and not r.gt_empty


def test_box_on_empty_gt_gets_no_iou_point():
    r = score_one(completion([inst((10, 10, 30, 30))]), EMPTY_GT)
    assert r.reward == pytest.approx(2.0)
    assert r.iou == 0.0 and not r.pred_empty and r.union == 400 and r.intersection == 0


def test_parse_failure_on_empty_gt():
    r = score_one("<think>no idea</think><answer>nothing here</answer>", EMPTY_GT)
    assert r.reward == pytest.approx(1.0)
    assert r.reward_components == {"iou": 0.0, "json": 0.0, "think": 1.0}
    r = score_one("no tags at all", EMPTY_GT)
    assert r.reward == 0.0


def test_half_overlapping_box():
    g = gt((20, 20, 60, 60))  # 40x40
    r = score_one(completion([inst((40, 20, 80, 60))]), g)
    inter, union = 20 * 40, 1600 + 1600 - 20 * 40
    assert (r.intersection, r.union) == (inter, union)
    assert r.iou == pytest.approx(inter / union)
    assert r.reward == pytest.approx(2 * inter / union + 2)


def test_partially_outside_image_is_clipped():
    g = gt((100, 80, 120, 100))  # bottom-right corner 20x20
    r = score_one(completion([inst((100, 80, 500, 400), [[110, 90], [115, 95]])]), g)
    assert r.iou == 1.0 and r.reward == pytest.approx(4.0)


def test_two_instances_are_ored():
    g = gt((10, 10, 30, 30), (60, 50, 100, 90))
    r = score_one(completion([inst((10, 10, 30, 30)), inst((60, 50, 100, 90))]), g)
    assert r.iou == 1.0 and r.reward == pytest.approx(4.0)
    # only one of the two found
    r = score_one(completion([inst((60, 50, 100, 90))]), g)
    assert r.iou == pytest.approx(1600 / 2000)


def test_overlapping_instances_count_pixels_once():
    """The mask is the OR of the instance masks: overlap is not counted twice."""
    g = gt((0, 0, 60, 40))  # 2400 px
    a, b = (0, 0, 40, 40), (20, 0, 60, 40)  # box IoU 800/2400 < 0.5: both kept
    r = score_one(completion([inst(a), inst(b)]), g)
    assert (r.intersection, r.union) == (2400, 2400)
    assert r.reward == pytest.approx(4.0)
    # OR-ed prediction sticking out of the GT
    g2 = gt((0, 0, 40, 40))  # 1600
    r = score_one(completion([inst(a), inst(b)]), g2)
    assert (r.intersection, r.union) == (1600, 2400)
    assert r.reward == pytest.approx(2 * 1600 / 2400 + 2)


def test_duplicate_boxes_are_removed_before_segmenting():
    g = gt((0, 0, 50, 50))
    r = score_one(completion([inst((0, 0, 50, 50)), inst((0, 0, 48, 50))]), g)
    assert len(r.prompts) == 1 and r.iou == 1.0


@pytest.mark.parametrize(
    "sep, prefix, suffix, think_ok",
    [
        ("\n", "", "", True),
        ("  \n\t ", "", "", True),
        ("", "", "", True),
        ("\n", "Sure! ", "", False),
        ("\n", "", " Hope this helps.", False),
        (" text ", "", "", False),
    ],
)
def test_think_format_point(sep, prefix, suffix, think_ok):
    g = gt((20, 20, 60, 60))
    text = prefix + completion([inst((20, 20, 60, 60))], sep=sep) + suffix
    r = score_one(text, g)
    assert r.think_ok is think_ok
    assert r.reward_components["think"] == (1.0 if think_ok else 0.0)
    # the JSON point and the IoU do not depend on text outside the tags
    assert r.json_ok and r.iou == 1.0
    assert r.reward == pytest.approx(3.0 + think_ok)


def test_non_default_weights():
    g = gt((20, 20, 60, 60))
    weights = {"iou": 1.0, "json": 0.5, "think": 0.25}
    r = score_one(completion([inst((40, 20, 80, 60))]), g, reward_weights=weights)
    iou = 800 / 2400
    assert r.reward_components == {"iou": pytest.approx(iou), "json": 1.0, "think": 1.0}
    assert r.reward == pytest.approx(1.0 * iou + 0.5 + 0.25)
    r = score_one(completion([inst((20, 20, 60, 60))], fence=False), g, reward_weights=weights, parser_mode="lenient")
    assert r.reward == pytest.approx(1.0 + 0.25)
    # a weights object works as well, and partial mappings keep the other defaults
    r = score_one(completion([inst((20, 20, 60, 60))]), g, reward_weights=RewardWeights(iou=3, json=0, think=0))
    assert r.reward == pytest.approx(3.0)
    r = score_one(completion([inst((20, 20, 60, 60))]), g, reward_weights={"iou": 1})
    assert r.reward == pytest.approx(3.0)


def test_unknown_weight_is_an_error():
    with pytest.raises(ConfigError):
        Scorer("box", reward_weights={"iou": 2, "format": 1})
    with pytest.raises(ConfigError):
        Scorer("box", parser_mode="loose")


def test_reward_weights_helpers():
    w = RewardWeights()
    assert (w.iou, w.json, w.think) == (2.0, 1.0, 1.0)
    assert w.as_list() == [2.0, 1.0, 1.0]
    assert w.maximum == 4.0


def test_reward_components_function():
    # non-empty GT
    assert reward_components(True, False, 30, 40, False, True, True) == {"iou": 0.75, "json": 1.0, "think": 1.0}
    assert reward_components(False, False, 30, 40, False, False, True)["iou"] == 0.0
    assert reward_components(True, True, 0, 40, False, True, False)["iou"] == 0.0
    # empty GT: 1 iff the answer parsed and is []
    assert reward_components(True, True, 0, 0, True, True, True)["iou"] == 1.0
    assert reward_components(True, False, 0, 10, True, True, True)["iou"] == 0.0
    assert reward_components(False, False, 0, 0, True, False, True)["iou"] == 0.0
    c = {"iou": 0.75, "json": 1.0, "think": 0.0}
    assert total_reward(c, RewardWeights()) == pytest.approx(2.5)
    assert total_reward({"iou": 1.0, "json": 1.0, "think": 1.0}, RewardWeights()) == 4.0


def test_json_point_with_neg_variant():
    g = gt((20, 20, 60, 60))
    text = completion([{"bbox_2d": [20, 20, 60, 60], "positive_points": [[30, 30], [40, 40]],
                        "negative_points": [[5, 5], [90, 90]]}])
    r = score_one(text, g, prompt_variant="bbox+2pos+2neg")
    assert r.reward == pytest.approx(4.0)
    # the default variant does not accept negative points
    assert score_one(text, g).reward == pytest.approx(1.0)


def test_trl_style_completions():
    g = gt((20, 20, 60, 60))
    trl = [{"role": "assistant", "content": completion([inst((20, 20, 60, 60))])}]
    r = Scorer("box").score(IMAGE, g, [trl])[0]
    assert r.reward == pytest.approx(4.0)


def test_make_reward_functions_components():
    scorer = Scorer("box")
    g = gt((20, 20, 60, 60))
    completions = [
        [{"role": "assistant", "content": completion([inst((20, 20, 60, 60))])}],
        [{"role": "assistant", "content": completion([inst((40, 20, 80, 60))], fence=False)}],
        [{"role": "assistant", "content": "garbage"}],
    ]
    cols = {"image": [IMAGE] * 3, "gt_mask": [g] * 3}
    iou_f, json_f, think_f = make_reward_functions(scorer)
    assert iou_f(prompts=None, completions=completions, **cols) == pytest.approx([1.0, 0.0, 0.0])
    assert json_f(prompts=None, completions=completions, **cols) == [1.0, 0.0, 0.0]
    assert think_f(prompts=None, completions=completions, **cols) == [1.0, 1.0, 0.0]
    assert scorer.weights.as_list() == [2.0, 1.0, 1.0]


# -- Scorer batching ----------------------------------------------------------------------


class SpyBox(BoxSegmenter):
    def __init__(self):
        super().__init__()
        self.encoded: list[tuple] = []
        self.decode_calls = 0

    def encode_batch(self, images):
        self.encoded.extend(im.shape for im in images)
        return super().encode_batch(images)

    def decode(self, embedding, prompt_sets):
        self.decode_calls += 1
        return super().decode(embedding, prompt_sets)


def _groups():
    rng = np.random.default_rng(1)
    groups = []
    for k, (h, w) in enumerate([(50, 60), (64, 64), (40, 90), (30, 30)]):
        image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        g = rectangle_mask(h, w, [(5, 5, 25, 20)]) if k != 3 else np.zeros((h, w), dtype=bool)
        comps = [
            completion([inst((5, 5, 25, 20))]),
            completion([inst((10, 5, 30, 25))]),
            completion([inst((5, 5, 25, 20))], fence=False),
            completion([]),
            "garbage",
            completion([inst((0, 0, 10, 10)), inst((15, 10, 29, 29))], sep=" x "),
        ]
        groups.append((image, g, comps))
    return groups


def _as_tuple(r):
    return (r.iou, r.intersection, r.union, r.json_ok, r.think_ok, r.parsed_ok, r.answer_empty,
            r.gt_empty, r.pred_empty, r.prompts, r.reward, r.reward_components)


@pytest.mark.parametrize("mode", ["strict", "lenient"])
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_score_many_equals_per_image_score(mode, batch):
    groups = _groups()
    many = Scorer("box", parser_mode=mode, encode_batch_size=batch).score_many(groups)
    single = Scorer("box", parser_mode=mode)
    assert len(many) == len(groups)
    for (image, g, comps), res in zip(groups, many):
        one = single.score(image, g, comps)
        assert [_as_tuple(r) for r in res] == [_as_tuple(r) for r in one]
        # and per completion, scored alone
        assert [_as_tuple(r) for r in res] == [_as_tuple(single.score(image, g, [c])[0]) for c in comps]


def test_encode_once_per_image_that_needs_it():
    spy = SpyBox()
    groups = _groups()
    Scorer(spy, encode_batch_size=2).score_many(groups)
    assert sorted(spy.encoded) == sorted(im.shape for im, _, _ in groups)
    assert spy.decode_calls == len(groups)  # one batched decode per image


def test_no_encode_when_nothing_to_segment():
    spy = SpyBox()
    comps = [completion([]), "garbage", completion([inst((1, 1, 5, 5))], fence=False), None, 42]
    res = Scorer(spy).score_many([(IMAGE, gt((1, 1, 5, 5)), comps), (IMAGE, EMPTY_GT, comps[:2])])
    assert spy.encoded == [] and spy.decode_calls == 0
    assert [r.reward for r in res[0]] == pytest.approx([2.0, 0.0, 1.0, 0.0, 0.0])
    assert [r.reward for r in res[1]] == pytest.approx([4.0, 0.0])
    # only the groups that need masks are encoded
    spy2 = SpyBox()
    image2 = np.zeros((20, 30, 3), dtype=np.uint8)
    Scorer(spy2).score_many([(IMAGE, EMPTY_GT, comps[:2]), (image2, np.ones((20, 30), bool), [completion([inst((0, 0, 5, 5))])])])
    assert spy2.encoded == [(20, 30, 3)]


def test_keep_masks():
    g = gt((20, 20, 60, 60))
    res = Scorer("box", keep_masks=True).score(IMAGE, g, [completion([inst((40, 20, 80, 60))]), "garbage"])
    assert res[0].mask.shape == (H, W) and res[0].mask.dtype == bool
    assert res[0].mask.sum() == 1600 and res[0].mask[20:60, 40:80].all()
    assert res[1].mask.shape == (H, W) and not res[1].mask.any()


def test_mismatched_image_and_mask():
    with pytest.raises(ValueError):
        Scorer("box").score(IMAGE, np.zeros((10, 10), bool), ["x"])


def test_reward_functions_score_each_sample_against_its_own_mask_with_one_encode():
    """Two referring expressions on one image have different masks: the image is encoded
    once, but each completion is scored against its own sample's mask."""
    import numpy as np

    from t2s_env import GeometricPrompt, Scorer, format_completion, make_reward_functions
    from t2s_env.segmenters.box import BoxSegmenter

    calls = []

    class CountingBox(BoxSegmenter):
        def encode_batch(self, images):
            calls.append(len(images))
            return super().encode_batch(images)

    image = np.zeros((64, 64, 3), np.uint8)
    m1 = np.zeros((64, 64), bool)
    m1[0:10, 0:10] = True
    m2 = np.zeros((64, 64), bool)
    m2[20:40, 20:40] = True
    iou_fn = make_reward_functions(Scorer(CountingBox()), gt_mask_lookup={"r1": m1, "r2": m2}.__getitem__)[0]
    c = format_completion([GeometricPrompt(box=(20, 20, 40, 40), positive_points=((25, 25), (30, 30)))])
    out = iou_fn(None, [c, c, c], image=[image] * 3, image_id=["a"] * 3, sample_id=["r1", "r2", "r2"])
    assert out == [0.0, 1.0, 1.0]
    assert calls == [1]
