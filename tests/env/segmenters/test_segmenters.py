"""The weightless segmenters (`box`, `grabcut`) and the segmenter registry.

GrabCut's speed is measured in benchmarks/, never asserted here.
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import torch

from t2s_env.errors import ConfigError
from t2s_env.prompt import GeometricPrompt as G
from t2s_env.scoring import Scorer
from t2s_env.segmenters import SEGMENTERS, BoxSegmenter, Segmenter, make_segmenter
from t2s_env.segmenters.grabcut import GrabCutSegmenter

S = 420  # side of the synthetic scene


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    """A bright ellipse on a textured green background: (image (S, S, 3) uint8, mask)."""
    rng = np.random.default_rng(0)
    img = (np.array([60, 110, 70]) + rng.integers(0, 35, (S, S, 3))).astype(np.uint8)
    yy, xx = np.mgrid[:S, :S]
    gt = ((xx + 0.5 - 200) / 75) ** 2 + ((yy + 0.5 - 150) / 45) ** 2 <= 1
    img[gt] = (np.array([205, 190, 175]) + rng.integers(0, 25, (int(gt.sum()), 3))).astype(np.uint8)
    return img, gt


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


# -- grabcut ------------------------------------------------------------------------------

def test_grabcut_segments_a_clear_object(scene):
    img, gt = scene
    seg = GrabCutSegmenter()
    box = tight_box(gt)
    pts = ((200, 150), (220, 160))
    sets = [
        [G(box=box, positive_points=pts)],  # the protocol's default answer
        [G(box=box)],
        [G(box=(box[0] - 20, box[1] - 15, box[2] + 20, box[3] + 15))],  # a loose box
        [G(positive_points=pts)],  # points only: a region around them
    ]
    masks = seg.decode(seg.encode(img), sets)
    assert masks.shape == (4, S, S) and masks.dtype == torch.bool and masks.device.type == "cpu"
    ious = [iou(m.numpy(), gt) for m in masks]
    assert min(ious[:3]) > 0.85, ious
    assert ious[3] > 0.6, ious
    # never outside the box (upsampling from the working scale is clipped to it)
    x1, y1, x2, y2 = box
    assert not masks[0].numpy()[:y1].any() and not masks[0].numpy()[:, x2:].any()


def test_grabcut_is_deterministic(scene):
    img, gt = scene
    sets = [[G(box=tight_box(gt), positive_points=((200, 150), (220, 160)))], [G(positive_points=((190, 140),))]]
    a = GrabCutSegmenter().segment(img, sets[0])
    cv2.setRNGSeed(12345)  # someone else moved OpenCV's global RNG
    cv2.randu(np.zeros((10, 10), np.float32), 0, 1)
    b = GrabCutSegmenter().segment(img, sets[0])
    np.testing.assert_array_equal(a, b)
    seg = GrabCutSegmenter()
    emb = seg.encode(img)
    np.testing.assert_array_equal(seg.decode(emb, sets).numpy(), seg.decode(emb, sets[::-1]).numpy()[::-1])


def test_grabcut_ors_instances_and_handles_empty_sets(scene):
    img, gt = scene
    seg = GrabCutSegmenter()
    emb = seg.encode(img)
    a, b = G(box=tight_box(gt)), G(box=(300, 300, 380, 360))
    m = seg.decode(emb, [[a], [b], [a, b], [], [G()], [G(negative_points=((10, 10),))]]).numpy()
    np.testing.assert_array_equal(m[2], m[0] | m[1])
    assert not m[3].any() and not m[4].any() and not m[5].any()
    assert seg.decode(emb, []).shape == (0, S, S)


@pytest.mark.parametrize(
    "prompt",
    [
        G(box=(50, 50, 50, 120)),  # zero width
        G(box=(80, 80, 80, 80)),  # a point
        G(box=(-100, -80, -10, -5)),  # entirely outside (clips to nothing)
        G(box=(500, 500, 900, 700)),  # outside on the other side
        G(box=(120, 100, 40, 30)),  # corners swapped
        G(box=(10, 10, 12.5, 13)),  # tiny
        G(box=(0, 0, S, S)),  # the whole image
        G(box=(0, 0, S, S), positive_points=((0, 0), (S, S))),  # points on the border
        G(box=(400, 400, S, S)),  # in the corner
        G(positive_points=((0, 0),)),  # points only, in a corner
        G(positive_points=((-5, 600), (1e6, -1e6))),  # points only, far outside
        G(box=(100, 100, 200, 200), negative_points=((150, 150),)),
        G(box=(1.4, 1.6, 2.6, 2.4)),  # sub-pixel box covering no pixel centre
        G(box=(float("nan"), 0, 50, 50)),  # non-finite (the parser never passes these)
        G(box=(0, 0, 50, 50), positive_points=((float("inf"), 3),)),
    ],
)
def test_grabcut_degenerate_prompts_do_not_crash(scene, prompt):
    img, _ = scene
    m = GrabCutSegmenter().decode(img, [[prompt]])
    assert m.shape == (1, S, S) and m.dtype == torch.bool


def test_grabcut_tiny_boxes_fall_back_to_the_box(scene):
    img, _ = scene
    seg = GrabCutSegmenter(min_box_side=4)
    m = seg.decode(seg.encode(img), [[G(box=(10, 20, 13, 22))], [G(box=(1.4, 1.4, 1.6, 1.6))], [G(box=(5, 5, 5, 9))]])
    ref = BoxSegmenter().decode((S, S), [[G(box=(10, 20, 13, 22))], [G(box=(1.4, 1.4, 1.6, 1.6))], [G(box=(5, 5, 5, 9))]])
    assert torch.equal(m, ref)
    assert int(m[0].sum()) == 3 * 2 and int(m[1].sum()) == 1 and int(m[2].sum()) == 0


def test_grabcut_works_on_small_and_non_square_images():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 60, (37, 90, 3), dtype=np.uint8)
    img[10:25, 30:60] = 230
    seg = GrabCutSegmenter(max_side=32)
    m = seg.segment(img, [G(box=(28, 8, 62, 27), positive_points=((45, 17), (50, 20)))])
    assert m.shape == (37, 90)
    truth = np.zeros((37, 90), bool)
    truth[10:25, 30:60] = True
    assert iou(m, truth) > 0.7


def test_grabcut_options_and_describe():
    seg = make_segmenter("grabcut", max_side=64, iterations=2, seed=5)
    assert isinstance(seg, GrabCutSegmenter)
    d = seg.describe()
    assert d["name"] == "grabcut" and d["max_side"] == 64 and d["iterations"] == 2 and d["seed"] == 5
    with pytest.raises(ConfigError):
        GrabCutSegmenter(max_side=4)
    with pytest.raises(ConfigError):
        GrabCutSegmenter(iterations=0)
    with pytest.raises(ConfigError, match="has no option 'no_such_option'"):
        make_segmenter("grabcut", no_such_option=1)


def test_grabcut_through_the_scorer(scene):
    img, gt = scene
    scorer = Scorer("grabcut")
    box = tight_box(gt)
    action = [G(box=box, positive_points=((200, 150), (220, 160)))]
    r1, r2 = scorer.score(img, gt, [action, action])
    assert r1.iou > 0.85 and r1.reward > 3.5
    assert r1.info() == r2.info()


# -- box ----------------------------------------------------------------------------------

def test_box_integer_box_covers_x1_to_x2_minus_1():
    m = BoxSegmenter().decode((10, 12), [[G(box=(2, 3, 5, 7))]])[0].numpy()
    rows, cols = np.nonzero(m)
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (2, 4, 3, 6)
    assert m.sum() == 3 * 4


def test_box_tight_box_of_a_component_reproduces_it():
    truth = np.zeros((30, 40), bool)
    truth[4:17, 9:31] = True  # columns 9..30, rows 4..16
    box = tight_box(truth)
    assert box == (9, 4, 31, 17)
    m = BoxSegmenter().decode((30, 40), [[G(box=box)]])[0].numpy()
    np.testing.assert_array_equal(m, truth)


def test_box_fractional_edges_use_pixel_centres():
    m = BoxSegmenter().decode((5, 5), [[G(box=(1.4, 0, 3.6, 1))], [G(box=(1.6, 0, 3.4, 1))]]).numpy()
    assert list(np.nonzero(m[0][0])[0]) == [1, 2, 3]
    assert list(np.nonzero(m[1][0])[0]) == [2]


def test_box_points_only_is_a_disc_and_negatives_are_ignored():
    seg = BoxSegmenter(point_radius=3)
    m = seg.decode((20, 20), [[G(positive_points=((10, 10),), negative_points=((10, 10),))]])[0].numpy()
    yy, xx = np.mgrid[:20, :20]
    np.testing.assert_array_equal(m, (xx + 0.5 - 10) ** 2 + (yy + 0.5 - 10) ** 2 <= 9)
    m2 = seg.decode((20, 20), [[G(positive_points=((3, 3), (15, 15)))], [], [G(negative_points=((5, 5),))]]).numpy()
    assert m2[0][3, 3] and m2[0][15, 15] and not m2[0][9, 9]
    assert not m2[1].any() and not m2[2].any()


def test_box_unions_instances():
    m = BoxSegmenter().decode((10, 10), [[G(box=(0, 0, 2, 2)), G(box=(5, 5, 7, 8))]])[0]
    assert int(m.sum()) == 4 + 6


# -- registry -----------------------------------------------------------------------------

def test_make_segmenter_names():
    assert isinstance(make_segmenter("box"), BoxSegmenter)
    assert isinstance(make_segmenter("grabcut"), GrabCutSegmenter)
    seg = BoxSegmenter(point_radius=2)
    assert make_segmenter(seg) is seg
    assert isinstance(seg, Segmenter)


@pytest.mark.parametrize("name", ["nope", "sam", "grab-cut", "", "BOX"])
def test_make_segmenter_unknown_names_list_the_valid_ones(name):
    with pytest.raises(ConfigError) as e:
        make_segmenter(name)
    for valid in SEGMENTERS:
        assert valid in str(e.value)


@pytest.mark.parametrize(
    "spec, key, hint",
    [("grabcut", "iteratons", "iterations"), ("grabcut", "max_sides", "max_side"), ("box", "point_radiu", "point_radius")],
)
def test_misspelt_options_are_one_line_with_a_did_you_mean(spec, key, hint):
    with pytest.raises(ConfigError) as e:
        make_segmenter(spec, **{key: 5})
    msg = str(e.value)
    assert "\n" not in msg and f"has no option {key!r}" in msg and f"(did you mean {hint}?)" in msg
    assert "valid: " in msg and "point_radius" in msg


BAD_NUMBERS = [float("nan"), float("inf"), -float("inf"), True, False, "5", None, [3]]


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=repr)
@pytest.mark.parametrize(
    "spec, key",
    [("box", "point_radius")]
    + [("grabcut", k) for k in ("max_side", "iterations", "context", "min_context", "point_region", "seed_radius",
                                "point_radius", "min_box_side", "seed", "max_grabcut_instances")],
)
def test_numeric_options_refuse_non_finite_and_wrong_types(spec, key, value):
    with pytest.raises(ConfigError) as e:
        make_segmenter(spec, **{key: value})
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{spec} option {key}=") and "give " in msg


@pytest.mark.parametrize(
    "spec, options, bound",
    [
        ("box", {"point_radius": -1}, "in [0, 1024]"),
        ("box", {"point_radius": 1e9}, "in [0, 1024]"),  # its stencil would be (2e9)^2 cells
        ("grabcut", {"max_side": 8}, ">= 16"),
        ("grabcut", {"max_side": 112.5}, "integer >= 16"),
        ("grabcut", {"iterations": 0}, ">= 1"),
        ("grabcut", {"point_region": 1.5}, "in [0, 1]"),
        ("grabcut", {"seed": 2**31}, "in [0, 2147483647]"),  # cv2.setRNGSeed takes a C int
        ("grabcut", {"seed": -1}, "in [0, 2147483647]"),
        ("grabcut", {"seed_radius": 1e12}, "in [0, 1024]"),
        ("grabcut", {"context": -0.1}, ">= 0"),
    ],
)
def test_numeric_options_out_of_range_name_the_range(spec, options, bound):
    with pytest.raises(ConfigError, match=re.escape(bound)):
        make_segmenter(spec, **options)


def test_valid_numeric_options_of_any_number_type_are_kept():
    seg = make_segmenter("grabcut", max_side=np.int64(64), point_radius=np.float32(2.5), context=0, seed=2**31 - 1)
    assert seg.max_side == 64 and type(seg.max_side) is int and seg.point_radius == 2.5 and seg.context == 0.0
    assert make_segmenter("box", point_radius=0).point_radius == 0.0
