"""Test vectors for the upstream-compatible parsing choices (SPEC §8.1, issue 10 item 1).

Each vector names the behaviour of upstream Think2Seg-RS (Ricardo-XZ/Think2Seg-RS,
``geo_reward_func_ultra.py``: its training parser, its evaluation parser and its
duplicate-box removal) that it pins. Upstream is described here, not copied.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t2s_env.errors import ConfigError
from t2s_env.parser import PROMPT_GEOMETRIES, parse_completion, parse_with_strict
from t2s_env.prompt import GeometricPrompt, deduplicate
from t2s_env.scoring import Scorer
from t2s_env.segmenters import make_segmenter


def _answer(instances, fence=True) -> str:
    body = json.dumps(instances)
    if fence:
        body = f"```json{body}```"
    return f"<think>t</think>\n<answer>{body}</answer>"


# -- "positive_points": null --------------------------------------------------------------


@pytest.mark.parametrize("fence", [True, False])
def test_lenient_null_positive_points_beside_a_box_fails(fence):
    # Upstream's evaluation parser checks positive_points whenever the key is present, and
    # its point check rejects anything that is not a non-empty list: null fails the parse.
    text = _answer([{"bbox_2d": [10, 10, 50, 50], "positive_points": None}], fence=fence)
    a = parse_completion(text, mode="lenient", image_size=(100, 100))
    assert not a.ok and "positive_points" in a.error


def test_lenient_absent_positive_points_beside_a_box_parses():
    # Upstream's evaluation parser skips the point check when the key is absent.
    a = parse_completion(_answer([{"bbox_2d": [10, 10, 50, 50]}]), mode="lenient", image_size=(100, 100))
    assert a.ok and a.prompts[0].positive_points == ()


def test_strict_null_positive_points_fails():
    # Upstream's training parser always checks positive_points (exactly two pairs).
    a = parse_completion(_answer([{"bbox_2d": [10, 10, 50, 50], "positive_points": None}]))
    assert not a.ok


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_null_negative_points_is_no_negative_points(mode):
    # Upstream's point check accepts null when the variant asks for no points of that
    # kind (its negative count is 0). (Its SAM loop then crashes on the null: not copied.)
    inst = {"bbox_2d": [10, 10, 50, 50], "positive_points": [[20, 20], [30, 30]], "negative_points": None}
    a = parse_completion(_answer([inst]), mode=mode, image_size=(100, 100))
    assert a.ok and a.prompts[0].negative_points == ()


def test_null_positive_points_where_the_variant_asks_for_none():
    # With a point count of 0, upstream's check accepts null (bbox-only variant).
    a = parse_completion(_answer([{"bbox_2d": [10, 10, 50, 50], "positive_points": None}]), "bbox", "lenient")
    assert a.ok


# -- prompt geometry ----------------------------------------------------------------------

INST = {"bbox_2d": [100, 80, 10, 20], "positive_points": [[-5, 30], [900, 1200]]}


def test_geometry_values_and_default():
    assert PROMPT_GEOMETRIES == ("clipped", "raw")
    text = _answer([INST])
    assert parse_completion(text, image_size=(840, 840)) == parse_completion(
        text, image_size=(840, 840), prompt_geometry="clipped"
    )
    with pytest.raises(ValueError, match="prompt_geometry"):
        parse_completion(text, prompt_geometry="upstream")


def test_raw_keeps_corners_and_coordinates_as_written():
    # Upstream passes bbox_2d and the points to SAM2 exactly as parsed: no reordering of
    # corners, no clipping to the frame.
    a = parse_completion(_answer([INST]), image_size=(840, 840), prompt_geometry="raw")
    assert a.ok
    assert a.prompts[0].box == (100.0, 80.0, 10.0, 20.0)
    assert a.prompts[0].positive_points == ((-5.0, 30.0), (900.0, 1200.0))


def test_clipped_reorders_and_clips():
    a = parse_completion(_answer([INST]), image_size=(840, 840))
    assert a.prompts[0].box == (10.0, 20.0, 100.0, 80.0)
    assert a.prompts[0].positive_points == ((0.0, 30.0), (840.0, 840.0))


def test_raw_duplicate_removal_runs_on_unclipped_boxes():
    # Upstream removes duplicates before anything touches the coordinates: two boxes that
    # only coincide once clipped to a 100x100 frame are both kept (box IoU 0.1 raw).
    text = _answer([{"bbox_2d": [0, 0, 100, 100]}, {"bbox_2d": [0, 0, 100, 1000]}])
    raw = parse_completion(text, "bbox", image_size=(100, 100), prompt_geometry="raw")
    clipped = parse_completion(text, "bbox", image_size=(100, 100))
    assert [p.box for p in raw.prompts] == [(0.0, 0.0, 100.0, 100.0), (0.0, 0.0, 100.0, 1000.0)]
    assert [p.box for p in clipped.prompts] == [(0.0, 0.0, 100.0, 100.0)]


def test_raw_reversed_box_is_not_a_duplicate_of_its_reordered_twin():
    # Upstream's box IoU clips the intersection at 0 but not the areas: a box with one
    # reversed pair of corners has a negative area and intersects nothing, so it never
    # suppresses and is never suppressed. Reordered first, the two boxes coincide.
    text = _answer([{"bbox_2d": [0, 0, 50, 50]}, {"bbox_2d": [50, 0, 0, 50]}])
    raw = parse_completion(text, "bbox", image_size=(100, 100), prompt_geometry="raw")
    clipped = parse_completion(text, "bbox", image_size=(100, 100))
    assert len(raw.prompts) == 2 and len(clipped.prompts) == 1


def test_raw_duplicate_removal_ranks_by_unclipped_area():
    # Upstream ranks boxes by their raw area, largest first, and uses the raw areas in the
    # IoU's union: B, mostly outside the 100² frame, is large raw and overlaps C little;
    # clipped, B is nearly C and is dropped.
    a = [0, 0, 60, 100]  # area 6000
    c = [20, 0, 100, 100]  # area 8000; IoU(A, C) = 4000 / 10000 = 0.4 -> kept together
    b = [30, 0, 250, 100]  # raw area 22000 (clipped: [30, 0, 100, 100], 7000)
    text = _answer([{"bbox_2d": a}, {"bbox_2d": b}, {"bbox_2d": c}])
    raw = parse_completion(text, "bbox", image_size=(100, 100), prompt_geometry="raw")
    clipped = parse_completion(text, "bbox", image_size=(100, 100))
    # raw ranking B, C, A: IoU(B, C) = 7000 / 23000 -> kept; IoU(B, A) = 3000/25000 -> kept
    assert [p.box[:1] for p in raw.prompts] == [(0.0,), (30.0,), (20.0,)]
    # clipped ranking C (8000), B (7000), A: IoU(C, B) = 7000 / 8000 > 0.5 -> B dropped
    assert [p.box[:1] for p in clipped.prompts] == [(0.0,), (20.0,)]


def _upstream_like_nms(boxes, thr=0.5):
    """Reference written from upstream's description: rank by signed area (stable), an
    N×N IoU matrix with intersections clipped at 0 and signed areas in the union, IoU 0
    where the union is not positive, greedy removal of later boxes with IoU > thr."""
    n = len(boxes)
    if n <= 1:
        return list(range(n))
    area = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    order = sorted(range(n), key=lambda i: area[i], reverse=True)
    iou = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            a, b = boxes[order[i]], boxes[order[j]]
            w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            u = area[order[i]] + area[order[j]] - w * h
            iou[i, j] = (w * h) / u if u > 0 else 0.0
    removed = set()
    for i in range(n):
        if i in removed:
            continue
        for j in range(i + 1, n):
            if j not in removed and iou[i, j] > thr:
                removed.add(j)
    gone = {order[i] for i in removed}
    return [i for i in range(n) if i not in gone]


_coord = st.integers(-30, 130)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_coord, _coord, _coord, _coord), max_size=40))
def test_raw_deduplicate_matches_upstream_reference(boxes):
    prompts = [GeometricPrompt(box=b) for b in boxes]
    kept = deduplicate(prompts, 0.5, signed_area=True)
    expect = [prompts[i] for i in _upstream_like_nms([tuple(map(float, b)) for b in boxes])]
    assert kept == expect


# -- scorer and segmenters ----------------------------------------------------------------


def test_scorer_prompt_geometry_option():
    assert Scorer("box").prompt_geometry == "clipped"
    assert Scorer("box", prompt_geometry="raw").prompt_geometry == "raw"
    with pytest.raises(ConfigError, match="prompt_geometry.*clipped, raw"):
        Scorer("box", prompt_geometry="unclipped")


def test_scorer_raw_passes_prompts_unclipped_to_the_segmenter():
    img = np.zeros((100, 100, 3), np.uint8)
    gt = np.zeros((100, 100), bool)
    gt[20:80, 10:100] = True
    reversed_box = _answer([{"bbox_2d": [100, 80, 10, 20], "positive_points": [[50, 50], [60, 60]]}])
    outside = _answer([{"bbox_2d": [10, 20, 400, 80], "positive_points": [[50, 50], [60, 60]]}])
    raw = Scorer("box", prompt_geometry="raw").score(img, gt, [reversed_box, outside])
    clipped = Scorer("box").score(img, gt, [reversed_box, outside])
    # reversed corners: clipped reorders them (a perfect box); raw fills nothing
    assert clipped[0].iou == 1.0 and raw[0].iou == 0.0 and raw[0].pred_empty and raw[0].parsed_ok
    assert raw[0].prompts[0]["bbox_2d"] == [100, 80, 10, 20]
    # out of frame: the frame cuts the raw box where clipping would have
    assert raw[1].iou == clipped[1].iou == 1.0
    assert raw[1].prompts[0]["bbox_2d"] == [10, 20, 400, 80]
    assert clipped[1].prompts[0]["bbox_2d"] == [10, 20, 100, 80]


RAW_SETS = [
    [GeometricPrompt(box=(90.0, 70.0, 10.0, 20.0), positive_points=((40.0, 40.0), (50.0, 50.0)))],
    [GeometricPrompt(box=(-50.0, -40.0, 300.0, 500.0), positive_points=((-5.0, 30.0), (900.0, 1200.0)))],
    [GeometricPrompt(box=(-1e30, 5.0, 1e30, 1e300), positive_points=((1e300, -1e300), (3.0, 4.0)))],
    [GeometricPrompt(box=(500.0, 500.0, 600.0, 600.0))],
    [GeometricPrompt(positive_points=((-100.0, 50.0), (1e9, 1e9)))],
]


@pytest.mark.parametrize("name", ["box", "grabcut"])
def test_weightless_segmenters_accept_raw_prompts(name):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
    seg = make_segmenter(name)
    masks = seg.decode(seg.encode(image), RAW_SETS)
    assert tuple(masks.shape) == (len(RAW_SETS), 64, 80) and masks.dtype.is_floating_point is False
    assert not masks[3].any()  # entirely outside the frame


@pytest.mark.slow
def test_sam2_accepts_raw_prompts():
    import torch

    from t2s_env.segmenters.sam2_segmenter import SAM2Segmenter

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seg = SAM2Segmenter("tiny", device="cpu", allow_random_weights=True, image_size=256)
        image = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
        masks = seg.decode(seg.encode(image), RAW_SETS)
    finally:
        torch.set_num_threads(n)
    assert tuple(masks.shape) == (len(RAW_SETS), 64, 80) and masks.dtype == torch.bool


def test_parse_with_strict_matches_two_parses():
    texts = [
        _answer([INST]),
        _answer([INST], fence=False),
        _answer([{"bbox_2d": [1, 2, 30, 40]}]),
        "<answer>[]</answer>",
        "nothing",
    ]
    for text in texts:
        for mode in ("strict", "lenient"):
            for geometry in PROMPT_GEOMETRIES:
                answer, strict_ok = parse_with_strict(text, mode=mode, image_size=(50, 50), prompt_geometry=geometry)
                assert answer == parse_completion(text, mode=mode, image_size=(50, 50), prompt_geometry=geometry)
                assert strict_ok == parse_completion(text, image_size=(50, 50)).ok
