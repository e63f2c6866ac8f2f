"""The procedural synthetic EarthReason-format generator (t2s_env.datasets.synthetic).

Small sets (a few images per split) keep this file fast; the embedded default set
(200 images, generated once per session into the conftest's private T2S_CACHE_DIR) is
built once and reused by the tests that need a larger sample.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t2s_env.cli import main
from t2s_env.datasets import EarthReasonDataset, make_dataset
from t2s_env.datasets import synthetic
from t2s_env.datasets.synthetic import (
    CATEGORIES,
    CATEGORY_NAMES,
    EMBEDDED_SIZES,
    GENERATOR_VERSION,
    embedded_root,
    ensure_dataset,
    generate,
    names_category,
)
from t2s_env.errors import ConfigError, DatasetError

SEED = 7
SPLITS = ("val", "test")
N = 6


def files_of(root: Path) -> dict[str, bytes]:
    """Every file under root, by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def qa_records(root: Path, split: str) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((root / split / "QAs").glob("*.json"))}


def leftovers(parent: Path) -> list[str]:
    """Hidden temporary folders the generator may have left behind."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".") and (".partial-" in p.name or ".old-" in p.name))


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "set"
    assert generate(root, n=N, seed=SEED, splits=SPLITS) == {s: N for s in SPLITS}
    return root


@pytest.fixture(scope="module")
def embedded() -> Path:
    return embedded_root()


# -- questions ---------------------------------------------------------------------------

def test_templates_never_name_their_category():
    assert len(CATEGORIES) >= 10
    for cat in CATEGORIES:
        assert len(cat.qa) >= 5, f"{cat.name}: too few question templates"
        for question, _ in cat.qa:
            for prefix in synthetic.catalogue._PREFIXES:
                text = prefix + question[0].lower() + question[1:] if prefix else question
                assert not names_category(text, cat.name), f"{cat.name}: {text!r}"


def test_names_category_matches_whole_words_and_plurals():
    assert names_category("Where are the runways?", "runway")
    assert names_category("Which swimming pool is closest?", "swimming_pool")
    assert not names_category("What could be moving goods over the water?", "harbor")  # 'port' not in 'moving'
    assert not names_category("Where could a plane take off?", "runway")


# -- determinism -------------------------------------------------------------------------

def test_same_seed_gives_byte_identical_files(small_root, tmp_path):
    again = tmp_path / "again"
    generate(again, n=N, seed=SEED, splits=SPLITS)
    a, b = files_of(small_root), files_of(again)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], f"{name} differs between two runs with the same seed"


#: sha256 of val 0, val 3, train 5 and test 1 of seed 0 (id, shape, pixels, mask): the
#: generator's drawing pinned. A change here changes the embedded data and the README's
#: table: bump GENERATOR_VERSION, update this digest and the reference in writer.py.
PINNED_RENDER_SHA256 = "da889b54a7fd2066ca43d595b0720a5485fef03a2b32789799ae0caaae12e151"


def test_rendered_pixels_and_masks_match_the_pinned_digest():
    digest = hashlib.sha256()
    for split, i in (("val", 0), ("val", 3), ("train", 5), ("test", 1)):
        s = synthetic.render_sample(0, split, i)
        digest.update(f"{s.image_id}:{s.image.shape}".encode())
        digest.update(s.image.tobytes())
        digest.update(s.mask.tobytes())
    assert digest.hexdigest() == PINNED_RENDER_SHA256


def test_the_generator_draws_without_opencv():
    """OpenCV's drawing and resampling differ between its releases and CPUs."""
    package = Path(synthetic.__file__).parent
    for module in sorted(package.glob("*.py")):
        text = module.read_text(encoding="utf-8")
        assert "import cv2" not in text and "cv2." not in text, module.name


def test_an_image_does_not_depend_on_n(small_root, tmp_path):
    fewer = tmp_path / "fewer"
    generate(fewer, n=2, seed=SEED, splits=("val",))
    for name, data in files_of(fewer).items():
        if name.startswith("val/"):
            assert (small_root / name).read_bytes() == data, name


def test_different_seed_gives_different_data(small_root, tmp_path):
    other = tmp_path / "other"
    generate(other, n=2, seed=SEED + 1, splits=("val",))
    for i in range(2):
        name = f"val/images/{synthetic.image_id('val', i)}.jpg"
        assert (other / name).read_bytes() != (small_root / name).read_bytes()


# -- layout ------------------------------------------------------------------------------

def test_layout_is_read_strictly_by_the_earthreason_loader(small_root):
    sizes = []
    for split in SPLITS:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a skipped image would warn
            ds = EarthReasonDataset(small_root, split, question="all", strict=True)
        assert len(ds.image_ids()) == N
        for i in ds.image_ids():
            assert "." not in i
            assert (small_root / split / "images" / f"{i}.jpg").is_file()
        for s in ds:
            assert len(s.questions) >= 3
            image, mask = s.load()  # raises if the sizes differ
            assert image.dtype == np.uint8 and image.shape[2] == 3
            sizes.append(s.size)
        for p in (small_root / split / "labels").glob("*.png"):
            with Image.open(p) as im:
                assert im.mode == "L"
                assert set(np.unique(np.asarray(im))) <= {0, 255}
    assert all(256 <= w <= 1024 and 256 <= h <= 1024 for w, h in sizes)
    assert any(w != h for w, h in sizes)
    manifest = json.loads((small_root / "synthetic.json").read_text())
    assert manifest["seed"] == SEED and manifest["version"] == GENERATOR_VERSION


def test_qa_records_match_their_masks(small_root):
    for split in SPLITS:
        for image_id, qa in qa_records(small_root, split).items():
            mask = np.asarray(Image.open(small_root / split / "labels" / f"{image_id}.png")) > 0
            assert qa["category"] in CATEGORY_NAMES
            assert (qa["answer"] == []) == (not mask.any()) == (not qa["target_present"])
            assert 3 <= len(qa["questions"]) <= 5
            for q in qa["questions"]:
                assert not names_category(q, qa["category"]), q
            if qa["target_present"]:
                assert qa["category"] in qa["categories_present"] and qa["instances"] >= 1
            else:
                assert qa["category"] not in qa["categories_present"]


# -- the embedded set (generated once per session) ----------------------------------------

def test_embedded_root_is_cached_under_t2s_cache_dir(embedded):
    cache = Path(os.environ["T2S_CACHE_DIR"]).resolve()
    assert embedded.resolve().parent == cache
    assert embedded.name == f"synthetic-{GENERATOR_VERSION}-seed0"
    for split, n in EMBEDDED_SIZES.items():
        assert len(list((embedded / split / "images").glob("*.jpg"))) == n
    stamp = (embedded / "synthetic.json").stat().st_mtime_ns
    assert embedded_root() == embedded  # second call: no regeneration
    assert (embedded / "synthetic.json").stat().st_mtime_ns == stamp
    assert leftovers(embedded.parent) == []


def test_embedded_set_has_many_categories_and_some_empty_targets(embedded):
    targets, empty, total = set(), 0, 0
    for split in EMBEDDED_SIZES:
        for image_id, qa in qa_records(embedded, split).items():
            mask = np.asarray(Image.open(embedded / split / "labels" / f"{image_id}.png")) > 0
            assert (qa["answer"] == []) == (not mask.any()), image_id
            for q in qa["questions"]:
                assert not names_category(q, qa["category"]), q
            targets.add(qa["category"])
            empty += int(not mask.any())
            total += 1
            assert len(qa["categories_present"]) >= 2  # distractors are present
    assert len(targets) >= 10
    assert 0.02 <= empty / total <= 0.10, f"{empty} empty targets out of {total}"


def test_make_dataset_and_data_check_read_the_embedded_set(embedded, capsys):
    ds = make_dataset("synthetic:val")
    assert len(ds) == EMBEDDED_SIZES["val"]
    assert ds.root.resolve() == embedded.resolve()
    assert main(["data", "check", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert "synthetic:val" in out and f"images {EMBEDDED_SIZES['val']}" in out


def test_default_val_split_has_enough_empty_targets_for_n_acc(embedded):
    """N-Acc needs at least 10 empty-target samples; the share stays near EarthReason's."""
    qas = qa_records(embedded, "val")
    empty = [i for i, qa in qas.items() if qa["answer"] == []]
    assert len(empty) >= 10, empty
    assert 0.04 <= len(empty) / len(qas) <= 0.06


def test_an_empty_target_question_is_not_answerable_in_its_image(embedded):
    """An image whose answer is "none" draws neither the asked category nor anything that
    could answer its question (e.g. no road up to a river when it asks about bridges:
    val_00002 of generator v1 did that)."""
    from t2s_env.datasets.synthetic import REQUIRES
    from t2s_env.datasets.synthetic.catalogue import CONFUSABLE

    checked = 0
    for split in EMBEDDED_SIZES:
        for image_id, qa in qa_records(embedded, split).items():
            if qa["answer"]:
                continue
            present = set(qa["categories_present"])
            cat = qa["category"]
            needs_it = {c for c, deps in REQUIRES.items() if cat in deps}
            assert not present & ({cat} | needs_it | set(CONFUSABLE.get(cat, ()))), (split, image_id, cat, present)
            checked += 1
    assert checked >= 10
    # every category can be asked about with an empty answer without a contradiction
    assert set(CONFUSABLE) <= set(CATEGORY_NAMES)


# -- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_bad_n_is_a_config_error(tmp_path, n):
    with pytest.raises(ConfigError, match="--n") as info:
        generate(tmp_path / "out", n=n)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("splits", [("train", "bogus"), ("",), "val,nope"])
def test_unknown_split_is_a_config_error(tmp_path, splits):
    with pytest.raises(ConfigError, match="split") as info:
        generate(tmp_path / "out", n=1, splits=splits)
    assert "valid: train, val, test" in str(info.value) or "names no split" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_negative_seed_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="seed"):
        generate(tmp_path / "out", n=1, seed=-1)


def test_non_empty_out_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--overwrite") as info:
        generate(out, n=1, splits=("val",))
    assert str(out) in str(info.value)
    assert (out / "keep.txt").read_text() == "mine" and len(list(out.iterdir())) == 1
    # --overwrite does not delete a folder that is not a dataset either
    with pytest.raises(ConfigError, match="refusing"):
        generate(out, n=1, splits=("val",), overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"
    assert leftovers(tmp_path) == []


def test_overwrite_replaces_a_previous_dataset(tmp_path):
    out = tmp_path / "out"
    generate(out, n=1, seed=1, splits=("val", "test"))
    generate(out, n=2, seed=2, splits=("val",), overwrite=True)
    assert json.loads((out / "synthetic.json").read_text())["seed"] == 2
    assert not (out / "test").exists()
    assert len(list((out / "val" / "images").iterdir())) == 2
    assert leftovers(tmp_path) == []


def test_empty_existing_out_is_fine(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert generate(out, n=1, splits=("val",)) == {"val": 1}


def test_out_that_is_a_file_is_a_config_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        generate(f, n=1, overwrite=True)
    assert f.read_text() == "x"


def test_unwritable_out_is_a_dataset_error(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, so nothing can be created below it")
    out = blocker / "sub" / "out"
    with pytest.raises(DatasetError, match="cannot write") as info:
        generate(out, n=1)
    assert str(out) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_parent_is_a_dataset_error(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(DatasetError, match="cannot write"):
            generate(parent / "out", n=1)
    finally:
        parent.chmod(0o700)
    assert list(parent.iterdir()) == []


def test_failure_part_way_leaves_nothing_behind(tmp_path, monkeypatch):
    real, calls = synthetic.writer._write_sample, []

    def failing(base, sample):
        calls.append(sample.image_id)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(base, sample)

    monkeypatch.setattr(synthetic.writer, "_write_sample", failing)
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match="No space left"):
        generate(out, n=3, splits=("val",))
    assert not out.exists() and list(tmp_path.iterdir()) == []

    def interrupted(base, sample):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic.writer, "_write_sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate(out, n=3, splits=("val",))
    assert list(tmp_path.iterdir()) == []


# -- the CLI -----------------------------------------------------------------------------

def test_cli_synth_writes_a_dataset_that_data_check_reads(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["data", "synth", "--out", str(out), "--n", "2", "--seed", "3", "--splits", "val"]) == 0
    assert "val: 2 images" in capsys.readouterr().out
    assert len(list((out / "val" / "images").glob("*.jpg"))) == 2
    assert len(list((out / "val" / "labels").glob("*.png"))) == 2
    assert len(list((out / "val" / "QAs").glob("*.json"))) == 2
    assert main(["data", "check", "earthreason", "--root", str(out)]) == 0
    assert "earthreason:val  images 2" in capsys.readouterr().out


@pytest.mark.parametrize("args, needle", [
    (["--n", "0"], "--n"),
    (["--splits", "train,dev"], "'dev'"),
    (["--seed", "-2"], "--seed"),
])
def test_cli_synth_bad_input_prints_one_line(tmp_path, capsys, args, needle):
    assert main(["data", "synth", "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("t2s: error:") and needle in err and "\n" not in err
    assert not (tmp_path / "o").exists()


# -- the cache under concurrency ---------------------------------------------------------

def test_concurrent_first_use_yields_one_complete_copy(tmp_path):
    root = tmp_path / "cache" / "synthetic-test"
    sizes = {"val": 2}
    results, errors = [], []

    def worker():
        try:
            results.append(ensure_dataset(root, sizes, 0))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [root, root]
    assert len(EarthReasonDataset(root, "val")) == 2
    assert leftovers(root.parent) == []


def test_a_stale_cache_folder_is_replaced(tmp_path):
    root = tmp_path / "synthetic-stale"
    (root / "val").mkdir(parents=True)
    (root / "val" / "half-written").write_text("")
    assert ensure_dataset(root, {"val": 1}, 0) == root
    assert not (root / "val" / "half-written").exists()
    assert len(EarthReasonDataset(root, "val")) == 1
    assert leftovers(tmp_path) == []


def test_unwritable_cache_dir_names_the_fix(tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    monkeypatch.setenv("T2S_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(DatasetError, match="T2S_CACHE_DIR") as info:
        embedded_root()
    assert "\n" not in str(info.value)


def test_a_cache_written_with_other_library_versions_is_regenerated(tmp_path):
    root = ensure_dataset(tmp_path / "c", {"val": 2}, SEED)
    manifest = json.loads((root / "synthetic.json").read_text())
    assert manifest["libraries"] == synthetic.writer.library_versions()
    manifest["libraries"]["pillow"] = "12.3.0"  # as if written before a Pillow upgrade
    (root / "synthetic.json").write_text(json.dumps(manifest))
    ensure_dataset(root, {"val": 2}, SEED)
    assert json.loads((root / "synthetic.json").read_text())["libraries"] == synthetic.writer.library_versions()


def test_data_digest_covers_pixels_and_masks(small_root, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_root, copy)
    digest = synthetic.data_digest(small_root, "val")
    assert len(digest) == 16 and synthetic.data_digest(copy, "val") == digest
    label = sorted((copy / "val" / "labels").glob("*.png"))[0]
    mask = np.asarray(Image.open(label)).copy()
    mask[0, 0] = 255 - mask[0, 0]
    Image.fromarray(mask).save(label)
    assert synthetic.data_digest(copy, "val") != digest


def test_the_embedded_splits_match_their_reference_digests(embedded):
    for split in EMBEDDED_SIZES:
        assert synthetic.data_digest(embedded, split) == synthetic.EMBEDDED_DIGESTS[split], split


def test_a_cache_from_another_generator_build_is_regenerated(tmp_path):
    root = tmp_path / "synthetic-old"
    ensure_dataset(root, {"val": 1}, 0)
    manifest = json.loads((root / "synthetic.json").read_text())
    assert manifest["source_sha256"] == synthetic.source_fingerprint()
    manifest["source_sha256"] = "0" * 16  # as if written by an edited copy of the generator
    (root / "synthetic.json").write_text(json.dumps(manifest))
    ensure_dataset(root, {"val": 1}, 0)
    assert json.loads((root / "synthetic.json").read_text())["source_sha256"] == synthetic.source_fingerprint()
    assert leftovers(tmp_path) == []
