"""`t2s data check earthreason --root DIR [--split S]`, run in-process."""

from __future__ import annotations

import numpy as np
import pytest

from t2s_env.cli import main
from tests.datagen import rectangle_mask, write_sample


@pytest.fixture
def small_root(tmp_path):
    """val: 3 images (30x20, 50x40, 44x33), 6 questions, 1 empty target."""
    root = tmp_path / "er_root"
    rng = np.random.default_rng(0)
    specs = [("a", 30, 20, [(1, 1, 5, 5)], ["q1", "q2"]),
             ("b", 50, 40, [], ["q1", "q2", "q3"]),
             ("c", 44, 33, [(0, 0, 44, 33)], ["q1"])]
    for sid, w, h, rects, qs in specs:
        write_sample(root, "val", sid, rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
                     rectangle_mask(h, w, rects), qs, answer=["x"] if rects else [])
    return root


def _numbers_in(line: str) -> dict:
    return {
        "images": "images 3" in line,
        "questions": "questions 6" in line,
        "empty": "empty targets 1" in line,
        "sizes": "30-50" in line and "20-40" in line,
    }


def test_check_with_split_prints_counts(small_root, capsys):
    rc = main(["data", "check", "earthreason", "--root", str(small_root), "--split", "val"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    line = next(l for l in out.splitlines() if "val" in l)
    assert all(_numbers_in(line).values()), line


def test_check_without_split(small_root, capsys):
    rc = main(["data", "check", "earthreason", "--root", str(small_root)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    line = next(l for l in out.splitlines() if "val" in l and "images" in l)
    assert all(_numbers_in(line).values()), line


def test_check_rect_fixture(rect_root, capsys):
    rc = main(["data", "check", "earthreason", "--root", str(rect_root), "--split", "val"])
    out, _ = capsys.readouterr()
    assert rc == 0
    assert "images 6" in out and "questions 18" in out and "empty targets 1" in out and "840-840" in out


@pytest.mark.parametrize("split", [None, "val"])
def test_bad_root_exits_2_with_one_line(tmp_path, capsys, split):
    bad = tmp_path / "no_such_dataset_dir"
    argv = ["data", "check", "earthreason", "--root", str(bad)] + (["--split", split] if split else [])
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert str(bad) in lines[0]
    assert "Traceback" not in err


def test_missing_split_exits_2(small_root, capsys):
    rc = main(["data", "check", "earthreason", "--root", str(small_root), "--split", "test"])
    _, err = capsys.readouterr()
    assert rc == 2
    assert len([l for l in err.splitlines() if l.strip()]) == 1
    assert "test" in err


def test_broken_dataset_names_file_and_lenient_skips(small_root, capsys):
    label = small_root / "val" / "labels" / "b.png"
    label.unlink()
    rc = main(["data", "check", "earthreason", "--root", str(small_root), "--split", "val"])
    _, err = capsys.readouterr()
    assert rc == 2
    assert str(label) in err and len([l for l in err.splitlines() if l.strip()]) == 1
    with pytest.warns(UserWarning):
        rc = main(["data", "check", "earthreason", "--root", str(small_root), "--split", "val", "--lenient"])
    out, _ = capsys.readouterr()
    assert rc == 0
    assert "images 2" in out and "questions 3" in out and "empty targets 0" in out
