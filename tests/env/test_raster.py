"""t2s_env.raster: exact numpy raster primitives (checked against brute force or by hand)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from t2s_env import raster


def brute_edt(mask: np.ndarray) -> np.ndarray:
    zeros = np.argwhere(~mask.astype(bool))
    out = np.zeros(mask.shape)
    for r, c in np.argwhere(mask.astype(bool)):
        out[r, c] = math.sqrt(float(((zeros - [r, c]) ** 2).sum(axis=1).min()))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_distance_transform_is_the_exact_euclidean_distance(seed):
    mask = np.random.default_rng(seed).random((23, 31)) > 0.15
    mask[0, 0] = False
    np.testing.assert_array_equal(raster.distance_transform(mask), brute_edt(mask))


def test_distance_transform_limit_caps_exactly():
    mask = np.zeros((41, 41), bool)
    mask[5:36, 5:36] = True
    exact = brute_edt(mask)
    np.testing.assert_array_equal(raster.distance_transform(mask, limit=4.5), np.minimum(exact, 4.5))


def test_fill_poly_fills_pixel_centres_of_a_square_and_a_triangle():
    img = np.zeros((10, 10), np.uint8)
    raster.fill_poly(img, [(2, 2), (6, 2), (6, 5), (2, 5)], 1)
    expected = np.zeros((10, 10), np.uint8)
    expected[2:6, 2:7] = 1
    np.testing.assert_array_equal(img, expected)
    tri = np.zeros((10, 10), np.uint8)
    raster.fill_poly(tri, [(0, 0), (8, 0), (0, 8)], 1)
    rows, cols = np.nonzero(tri)
    assert (rows + cols <= 8).all() and tri.sum() == 45  # x + y <= 8, x, y >= 0


def test_lines_have_the_requested_width_and_unit_lines_are_connected():
    img = np.zeros((40, 40), np.uint8)
    raster.line(img, (5, 20), (35, 20), 1, 5)
    assert img[:, 20].sum() == 5 and img[20].sum() == 31 + 4  # round caps add 2 on each end
    thin = np.zeros((40, 40), np.uint8)
    raster.line(thin, (3, 4), (30, 17), 1, 1)
    assert thin.sum() == 28 and raster.count_components(thin) == 1


def test_count_components_uses_8_connectivity():
    m = np.zeros((6, 6), bool)
    m[0, 0] = m[1, 1] = True      # diagonal: one region
    m[4, 0] = m[4, 1] = True      # second
    m[0, 4] = m[2, 4] = True      # a gap: two more
    assert raster.count_components(m) == 4
    assert raster.count_components(np.zeros((3, 3), bool)) == 0


def test_dilate_erode_and_sweep():
    m = np.zeros((9, 9), bool)
    m[4, 4] = True
    assert raster.dilate(m, 2).sum() == 25
    assert not raster.erode(raster.dilate(m, 2), 2)[0, 0] and raster.erode(raster.dilate(m, 2), 2)[4, 4]
    assert raster.erode(np.ones((3, 3), bool), 1).all()  # outside the array counts as full
    swept = raster.sweep(np.ones((1, 1), bool), 3, -2)
    assert swept.shape == (5, 7) and swept[2, 3] and swept[0, 6] and swept.sum() == 4


def test_resize_keeps_constants_and_hits_source_samples():
    flat = np.full((4, 5), 3.25, np.float32)
    for kind in ("linear", "cubic"):
        np.testing.assert_array_equal(raster.resize(flat, 17, 9, kind), np.full((9, 17), 3.25, np.float32))
    a = np.random.default_rng(0).random((6, 8)).astype(np.float32)
    np.testing.assert_array_equal(raster.resize(a, 8, 6, "cubic"), a)


def test_warp_by_identity_and_quarter_turn_is_exact():
    src = np.arange(12, dtype=np.uint8).reshape(3, 4)
    M = raster.rotation_matrix((0, 0), 0.0)
    np.testing.assert_array_equal(raster.warp_affine(src, M, 4, 3, nearest=True), src)
    M = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 3.0]])  # 90 degrees counter-clockwise
    np.testing.assert_array_equal(raster.warp_affine(src, M, 3, 4, nearest=True), np.rot90(src))


def test_gaussian_blur_keeps_a_flat_image_and_its_mean():
    flat = np.full((12, 14, 3), 77, np.uint8)
    np.testing.assert_array_equal(raster.gaussian_blur_u8(flat, 0.7), flat)


@pytest.mark.parametrize("shape,size", [((3, 5), (10, 6)), ((7, 7), (7, 7)), ((4, 9), (27, 12))])
def test_upsample_mask_takes_the_pixel_under_each_centre(shape, size):
    m = np.random.default_rng(1).random(shape) > 0.5
    w, h = size
    out = raster.upsample_mask(m, w, h)
    for r, c in itertools.product(range(h), range(w)):
        assert out[r, c] == m[int((r + 0.5) * shape[0] / h), int((c + 0.5) * shape[1] / w)]


def test_trigonometry_goes_through_the_c_library():
    x = np.linspace(-7, 7, 101)
    assert raster.sin(x).tolist() == [math.sin(v) for v in x.tolist()]
    assert raster.cos(x.reshape(1, -1)).shape == (1, 101)
