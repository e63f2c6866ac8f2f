"""Scorer.score_parsed: scoring answers that are already parsed (and maybe mapped to another
frame), the path the benchmark harness takes at the original image size (issue 19 item 2)."""

from __future__ import annotations

import numpy as np
import pytest

from t2s_env.framing import map_answer
from t2s_env.instructions import format_completion
from t2s_env.prompt import GeometricPrompt
from t2s_env.scoring import Scorer
from t2s_env.segmenters.box import BoxSegmenter


class CountingBox(BoxSegmenter):
    """The box segmenter, counting the images it is asked to encode."""

    def __init__(self) -> None:
        super().__init__()
        self.encoded: list[int] = []

    def encode_batch(self, images):
        self.encoded.append(len(images))
        return super().encode_batch(images)


def _box(x1, y1, x2, y2) -> str:
    return format_completion([GeometricPrompt(box=(x1, y1, x2, y2), positive_points=((x1 + 1, y1 + 1), (x2 - 1, y2 - 1)))])


def _groups():
    rng = np.random.default_rng(0)
    image_a = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
    image_b = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
    gt1 = np.zeros((32, 48), bool)
    gt1[4:20, 6:30] = True
    gt2 = np.zeros((32, 48), bool)
    gt2[10:30, 20:44] = True
    empty = np.zeros((32, 48), bool)
    completions = [_box(6, 4, 30, 20), _box(6, 4, 30, 20), "no answer", "<think> </think>\n<answer>```json[]```</answer>",
                   _box(0, 0, 48, 32), {"bbox_2d": [20, 10, 44, 30]}]
    groups = [
        (image_a, gt1, completions),
        (image_a, gt2, completions[::-1]),  # the same image, another target
        (image_b, empty, completions[2:4]),  # nothing to segment: never encoded
        (image_b, gt2, completions[4:]),
    ]
    return groups, ["a", "a", "b", "b"]


def _as_tuples(results):
    return [[(r.iou, r.intersection, r.union, r.json_ok, r.think_ok, r.parsed_ok, r.answer_empty, r.gt_empty,
              r.pred_empty, r.prompts, r.reward, r.reward_components, r.error) for r in rs] for rs in results]


def test_score_parsed_of_parsed_answers_equals_score_many():
    groups, keys = _groups()
    many_seg, parsed_seg = CountingBox(), CountingBox()
    many = Scorer(many_seg).score_many(groups, image_keys=keys)
    scorer = Scorer(parsed_seg)
    parsed_groups = [(im, gt, [scorer.parse(c, (gt.shape[1], gt.shape[0])) for c in cs]) for im, gt, cs in groups]
    parsed = scorer.score_parsed(parsed_groups, image_keys=keys)
    assert _as_tuples(parsed) == _as_tuples(many)
    # each distinct image with something to segment encoded once, in one batch
    assert parsed_seg.encoded == many_seg.encoded == [2]
    # without keys every group is its own image
    assert _as_tuples(scorer.score_parsed(parsed_groups)) == _as_tuples(Scorer("box").score_many(groups))


def test_score_parsed_scores_answers_mapped_to_another_frame():
    # The view frame is 64² of a 32×16 original: answers parsed in the view frame and
    # mapped back score on the original exactly as the same boxes written at that size.
    original = np.zeros((16, 32, 3), np.uint8)
    gt = np.zeros((16, 32), bool)
    gt[2:10, 4:20] = True
    scale = (32 / 64, 16 / 64)
    scorer = Scorer("box")
    view = [_box(8, 8, 40, 40), _box(0, 0, 64, 64), "junk"]
    answers = [scorer.parse(c, (64, 64)) for c in view]
    mapped = [(map_answer(a, scale), ok) for a, ok in answers]
    got = scorer.score_parsed([(original, gt, mapped)])[0]
    want = scorer.score_many([(original, gt, [_box(4, 2, 20, 10), _box(0, 0, 32, 16), "junk"])])[0]
    assert [r.iou for r in got] == [r.iou for r in want] == [1.0, pytest.approx(128 / 512), 0.0]
    assert [r.reward for r in got] == [r.reward for r in want]
    assert got[0].prompts[0]["bbox_2d"] == want[0].prompts[0]["bbox_2d"] == [4, 2, 20, 10]


def test_score_parsed_refuses_mismatched_inputs():
    scorer = Scorer("box")
    image, gt = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool)
    answers = [scorer.parse(_box(1, 1, 5, 5), (8, 8))]
    with pytest.raises(ValueError, match="2 image keys for 1 groups"):
        scorer.score_parsed([(image, gt, answers)], image_keys=["a", "b"])
    with pytest.raises(ValueError, match="differ in size"):
        scorer.score_parsed([(image, np.zeros((8, 9), bool), answers)])
