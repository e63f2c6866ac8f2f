"""EarthReason loader (SPEC §7): pairing by id, errors naming files, thresholds, questions."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t2s_env.datasets import EarthReasonDataset, make_dataset
from t2s_env.errors import ConfigError, DatasetError
from tests.datagen import rectangle_mask, write_rectangle_dataset, write_sample

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def rects64(tmp_path_factory):
    """Like the shared ``rect_root`` fixture (val, 6 images, 1 empty, 3 questions each), with
    64-px images so that it is cheap to share read-only across this module."""
    root = tmp_path_factory.mktemp("rects64")
    write_rectangle_dataset(root, split="val", n=6, n_empty=1, seed=0, size=64)
    return root


def _img(h=20, w=30):
    return RNG.integers(0, 255, (h, w, 3), dtype=np.uint8)


def _mask(h=20, w=30, rects=((2, 3, 10, 12),)):
    return rectangle_mask(h, w, rects)


def _write(root, sid, questions=("q0", "q1", "q2"), split="val", **kw):
    write_sample(root, split, sid, _img(), _mask(), questions, **kw)


def _paths(root, split, sid):
    base = Path(root) / split
    return {
        "image": next((base / "images").glob(f"{sid}.*")),
        "label": base / "labels" / f"{sid}.png",
        "qa": base / "QAs" / f"{sid}.json",
    }


def test_rect_fixture_loads(rect_root):
    ds = EarthReasonDataset(rect_root, "val")
    assert len(ds) == 6
    assert [s.sample_id for s in ds] == [f"img{k:03d}" for k in range(6)]
    s = ds[0]
    image, mask = s.load()
    assert image.shape == (840, 840, 3) and image.dtype == np.uint8
    assert mask.shape == (840, 840) and mask.dtype == bool
    assert not mask.any()  # the first image is the empty-target one
    assert ds[1].load_mask().any()
    assert s.question == "question 0 about image 0"
    assert s.questions == tuple(f"question {j} about image 0" for j in range(3))


def test_pairs_by_id_up_to_first_dot(tmp_path):
    root = tmp_path / "er"
    base = root / "val"
    for d in ("images", "labels", "QAs"):
        (base / d).mkdir(parents=True)
    Image.fromarray(_img()).save(base / "images" / "tile_7.sat.rgb.jpg")
    Image.fromarray(_mask().astype(np.uint8) * 255).save(base / "labels" / "tile_7.png")
    (base / "QAs" / "tile_7.json").write_text(json.dumps({"questions": ["where?"], "answer": ["x"]}))
    # A second id with a different extension mix
    write_sample(root, "val", "b", _img(), _mask(), ["q"], image_ext=".jpeg")
    # Files that are not images are ignored
    (base / "images" / "notes.txt").write_text("hello")
    ds = EarthReasonDataset(root, "val")
    assert sorted(s.image_id for s in ds) == ["b", "tile_7"]
    s = {x.image_id: x for x in ds}["tile_7"]
    assert s.image_path.name == "tile_7.sat.rgb.jpg"
    assert s.load()[0].shape == (20, 30, 3)


@pytest.mark.parametrize("which", ["image", "label", "qa"])
def test_missing_file_is_an_error_naming_it(tmp_path, which):
    root = tmp_path / "er"
    _write(root, "a")
    _write(root, "b")
    path = _paths(root, "val", "b")[which]
    path.unlink()
    with pytest.raises(DatasetError) as exc:
        EarthReasonDataset(root, "val")
    msg = str(exc.value)
    assert "b" in msg
    folder = {"image": "images", "label": "labels", "qa": "QAs"}[which]
    assert str(Path(root) / "val" / folder) in msg
    if which != "image":
        assert str(path) in msg


@pytest.mark.parametrize("which", ["image", "label", "qa"])
def test_missing_file_skipped_with_counted_warning(tmp_path, which):
    root = tmp_path / "er"
    for sid in ("a", "b", "c"):
        _write(root, sid)
    _paths(root, "val", "b")[which].unlink()
    _paths(root, "val", "c")[which].unlink()
    with pytest.warns(UserWarning, match="skipped 2") as rec:
        ds = EarthReasonDataset(root, "val", strict=False)
    assert [s.image_id for s in ds] == ["a"]
    assert sum(ds.skipped.values()) == 2
    assert len([w for w in rec if "skipped" in str(w.message)]) == 1  # one summary warning


def test_no_warning_when_nothing_skipped(rects64):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        EarthReasonDataset(rects64, "val")


def test_size_mismatch_is_an_error(tmp_path):
    root = tmp_path / "er"
    _write(root, "a")
    write_sample(root, "val", "bad", _img(20, 30), _mask(21, 30), ["q"])
    with pytest.raises(DatasetError) as exc:
        EarthReasonDataset(root, "val")
    msg = str(exc.value)
    assert "bad" in msg and "30x20" in msg and "30x21" in msg


def test_mask_threshold_is_greater_than_zero(tmp_path):
    root = tmp_path / "er"
    write_sample(root, "val", "m", _img(4, 4), _mask(4, 4), ["q"])
    values = np.array([[0, 1, 128, 255]] * 4, dtype=np.uint8)
    Image.fromarray(values).save(_paths(root, "val", "m")["label"])
    mask = EarthReasonDataset(root, "val")[0].load_mask()
    assert mask.dtype == bool
    assert mask.tolist() == [[False, True, True, True]] * 4


def test_rgb_mask(tmp_path):
    root = tmp_path / "er"
    write_sample(root, "val", "m", _img(4, 4), _mask(4, 4), ["q"])
    values = np.array([[0, 1, 128, 255]] * 4, dtype=np.uint8)
    rgb = np.stack([values] * 3, axis=-1)
    Image.fromarray(rgb).save(_paths(root, "val", "m")["label"])
    s = EarthReasonDataset(root, "val")[0]
    mask = s.load_mask()
    assert mask.shape == (4, 4) and mask.dtype == bool
    assert mask.tolist() == [[False, True, True, True]] * 4
    image, mask2 = s.load()
    assert image.shape == (4, 4, 3)


def test_empty_questions_skipped_with_warning(tmp_path):
    root = tmp_path / "er"
    _write(root, "a")
    _write(root, "noq", questions=())
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = EarthReasonDataset(root, "val")  # also in strict mode
    assert [s.image_id for s in ds] == ["a"]
    with pytest.warns(UserWarning):
        ds = EarthReasonDataset(root, "val", strict=False)
    assert [s.image_id for s in ds] == ["a"]


def test_unreadable_qa_json_names_file(tmp_path):
    root = tmp_path / "er"
    _write(root, "a")
    _write(root, "b")
    qa = _paths(root, "val", "b")["qa"]
    qa.write_text('{"questions": ["unterminated')
    with pytest.raises(DatasetError) as exc:
        EarthReasonDataset(root, "val")
    assert str(qa) in str(exc.value)


def test_missing_split_folder_is_an_error(rects64, tmp_path):
    with pytest.raises(DatasetError) as exc:
        EarthReasonDataset(rects64, "test")
    assert "test" in str(exc.value)
    with pytest.raises(DatasetError) as exc:
        EarthReasonDataset(tmp_path / "nowhere", "val")
    assert "nowhere" in str(exc.value)
    with pytest.raises(DatasetError):
        make_dataset("earthreason:val", root=None)


def test_question_first(rects64):
    ds = EarthReasonDataset(rects64, "val", question="first")
    assert all(s.question == s.questions[0] and s.question_index == 0 for s in ds)


def test_question_all_unique_ids(rects64):
    ds = EarthReasonDataset(rects64, "val", question="all")
    assert len(ds) == 6 * 3
    ids = [s.sample_id for s in ds]
    assert len(set(ids)) == len(ids)
    for image_id in {s.image_id for s in ds}:
        qs = [s for s in ds if s.image_id == image_id]
        assert [s.question for s in qs] == list(qs[0].questions)
        assert sorted(s.question_index for s in qs) == [0, 1, 2]


QUESTIONS = [f"question number {j}" for j in range(7)]
IDS = [f"id{k:02d}" for k in range(12)]


def _write_random_set(root, order):
    for sid in order:
        write_sample(root, "val", sid, _img(8, 8), _mask(8, 8, ((1, 1, 4, 4),)), QUESTIONS)


def _choice(root, seed):
    ds = EarthReasonDataset(root, "val", question="random", seed=seed)
    return {s.image_id: s.question for s in ds}


def test_question_random_is_seeded_per_id_not_listing_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _write_random_set(a, IDS)
    _write_random_set(b, list(reversed(IDS)))
    first = _choice(a, seed=3)
    assert set(first) == set(IDS)
    assert all(q in QUESTIONS for q in first.values())
    assert _choice(b, seed=3) == first  # other creation order
    moved = tmp_path / "renamed_elsewhere"
    shutil.move(str(a), str(moved))
    assert _choice(moved, seed=3) == first  # other folder name
    assert _choice(moved, seed=3) == _choice(moved, seed=3)  # stable
    # a subset of the ids keeps the same choice for each remaining id
    for sid in IDS[::2]:
        for f in _paths(moved, "val", sid).values():
            f.unlink()
    sub = _choice(moved, seed=3)
    assert sub == {k: v for k, v in first.items() if k in sub}
    # the choice actually varies with the seed and across ids
    choices = [_choice(b, seed=s) for s in range(6)]
    assert any(c != first for c in choices)
    assert len(set(first.values())) > 1


def test_question_random_sample_fields(tmp_path):
    _write_random_set(tmp_path / "r", IDS[:3])
    for s in EarthReasonDataset(tmp_path / "r", "val", question="random", seed=1):
        assert s.questions[s.question_index] == s.question
        assert s.sample_id == s.image_id


def test_bad_question_choice(rects64):
    with pytest.raises(ConfigError):
        EarthReasonDataset(rects64, "val", question="last")


def test_make_dataset_spec(rects64):
    ds = make_dataset("earthreason:val", root=rects64, question="all")
    assert len(ds) == 18
    with pytest.raises(ConfigError):
        make_dataset("earthrisen:val", root=rects64)
