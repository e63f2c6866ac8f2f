"""Loaders of RRSIS-D, RefSegRS and RISBench on tiny fixtures written here."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as cocomask

from t2s_env.cli import main
from t2s_env.datasets import check_dataset, make_dataset
from t2s_env.datasets.earthreason import DatasetWarning
from t2s_env.datasets.coco_mask import CocoMask, decode_coco_mask, segmentation_to_rle
from t2s_env.datasets.referring import LOADERS, RefSegRSDataset, RISBenchDataset, RRSISDDataset
from t2s_env.errors import ConfigError, DatasetError
from tests.datagen import rectangle_mask

W, H = 40, 32  # non-square, so a transposed mask cannot pass


def _rgb(seed: int, w: int = W, h: int = H) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _rle(mask: np.ndarray) -> dict:
    r = cocomask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": r["size"], "counts": r["counts"].decode("ascii")}


# -- RRSIS-D fixture -------------------------------------------------------------------------
RR_MASKS = {
    11: rectangle_mask(H, W, [(2, 3, 10, 12)]),
    12: rectangle_mask(H, W, [(20, 5, 35, 9), (1, 20, 4, 30)]),
    13: rectangle_mask(H, W, [(5, 5, 25, 25)]),
    14: rectangle_mask(H, W, [(0, 0, 40, 1)]),
    15: rectangle_mask(H, W, [(10, 10, 12, 30)]),
}


def write_rrsisd(root: Path) -> Path:
    (root / "rrsisd").mkdir(parents=True)
    img_dir = root / "images" / "rrsisd" / "JPEGImages"
    img_dir.mkdir(parents=True)
    for k in (1, 2, 3):
        Image.fromarray(_rgb(k)).save(img_dir / f"{k:05d}.jpg")
    polygon = [10.0, 10.0, 12.0, 10.0, 12.0, 30.0, 10.0, 30.0]
    annotations = [
        # 11: compressed RLE (string counts); 12: a list holding one RLE (the refer convention)
        {"id": 11, "image_id": 1, "segmentation": _rle(RR_MASKS[11]), "bbox": [2, 3, 10, 12], "categories_id": 1},
        {"id": 12, "image_id": 1, "segmentation": [_rle(RR_MASKS[12])], "bbox": [1, 5, 35, 30], "categories_id": 2},
        {"id": 13, "image_id": 2, "segmentation": _rle(RR_MASKS[13]), "bbox": [5, 5, 25, 25], "categories_id": 1},
        {"id": 14, "image_id": 3, "segmentation": _rle(RR_MASKS[14]), "bbox": [0, 0, 40, 1], "categories_id": 3},
        {"id": 15, "image_id": 3, "segmentation": [polygon], "bbox": [10, 10, 12, 30], "categories_id": 3},
    ]
    images = [{"id": k, "file_name": f"{k:05d}.jpg", "height": H, "width": W} for k in (1, 2, 3)]
    categories = [{"id": i, "name": n} for i, n in ((1, "airplane"), (2, "ship"), (3, "bridge"))]
    (root / "rrsisd" / "instances.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )

    def ref(ref_id, image_id, ann_id, split, sents):
        return {
            "ref_id": ref_id, "image_id": image_id, "ann_id": ann_id, "split": split, "category_id": 1,
            "file_name": f"{image_id:05d}_{ann_id}.jpg",  # refer style: the image name plus the ann id
            "sentences": [{"sent": s, "raw": s.capitalize(), "tokens": s.split(), "sent_id": ref_id * 10 + i}
                          for i, s in enumerate(sents)],
            "sent_ids": [ref_id * 10 + i for i in range(len(sents))],
        }

    refs = [
        ref(101, 1, 11, "test", ["the airplane on the upper left", "a small white plane"]),
        ref(102, 1, 12, "test", ["the ships"]),
        ref(103, 2, 13, "test", ["the square airplane in the middle"]),
        ref(104, 3, 14, "train", ["the bridge along the top edge"]),
        ref(105, 3, 15, "test", ["the thin vertical bridge"]),
    ]
    with open(root / "rrsisd" / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f)
    return root


@pytest.fixture
def rrsisd_root(tmp_path) -> Path:
    return write_rrsisd(tmp_path / "refer")


def _rewrite_refs(root: Path, edit) -> None:
    path = root / "rrsisd" / "refs(unc).p"
    refs = pickle.loads(path.read_bytes())
    edit(refs)
    path.write_bytes(pickle.dumps(refs))


def _rewrite_instances(root: Path, edit) -> None:
    path = root / "rrsisd" / "instances.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_rrsisd_samples_questions_and_masks(rrsisd_root):
    ds = RRSISDDataset(rrsisd_root, "test")
    assert ds.name == "rrsisd:test" and not ds.skipped
    assert [s.sample_id for s in ds] == ["101", "102", "103", "105"]
    by_id = {s.sample_id: s for s in ds}
    s = by_id["101"]
    assert s.question == "the airplane on the upper left."  # first sentence's `sent` + "."
    assert s.questions == ("the airplane on the upper left.", "a small white plane.")
    assert s.image_id == "00001" and s.image_path.name == "00001.jpg"
    assert s.size == (W, H)
    for sid, ann in (("101", 11), ("102", 12), ("103", 13)):
        image, mask = by_id[sid].load()
        assert image.shape == (H, W, 3) and mask.dtype == bool
        np.testing.assert_array_equal(mask, RR_MASKS[ann])
    # the polygon annotation decodes to (about) its rectangle
    poly = by_id["105"].load_mask()
    inter = (poly & RR_MASKS[15]).sum()
    assert inter / (poly | RR_MASKS[15]).sum() > 0.8
    train = RRSISDDataset(rrsisd_root, "train")
    assert [s.sample_id for s in train] == ["104"]
    np.testing.assert_array_equal(train[0].load_mask(), RR_MASKS[14])


def test_rrsisd_question_modes(rrsisd_root):
    every = RRSISDDataset(rrsisd_root, "test", question="all")
    assert [s.sample_id for s in every] == ["101#q0", "101#q1", "102#q0", "103#q0", "105#q0"]
    assert every[1].question == "a small white plane." and every[1].question_index == 1
    r1 = RRSISDDataset(rrsisd_root, "test", question="random", seed=3)
    r2 = RRSISDDataset(rrsisd_root, "test", question="random", seed=3)
    assert [s.question for s in r1] == [s.question for s in r2]
    assert all(s.question in s.questions and s.sample_id == s.sample_id.split("#")[0] for s in r1)
    picks = {RRSISDDataset(rrsisd_root, "test", question="random", seed=k)[0].question_index for k in range(20)}
    assert picks == {0, 1}
    with pytest.raises(ConfigError, match="first, random, all"):
        RRSISDDataset(rrsisd_root, "test", question="best")


def test_rrsisd_via_registry_and_check(rrsisd_root):
    ds = make_dataset("rrsisd:test", root=rrsisd_root)
    assert len(ds) == 4
    counts = check_dataset(ds)
    assert counts["images"] == 3 and counts["samples"] == 4
    assert counts["width_range"] == (W, W) and counts["height_range"] == (H, H)
    with pytest.raises(DatasetError, match="needs --root"):
        make_dataset("rrsisd:test")


def test_rrsisd_image_name_resolution(rrsisd_root):
    # no image entries: the ref's refer-style "00001_11.jpg" resolves to 00001.jpg
    _rewrite_instances(rrsisd_root, lambda d: d.pop("images"))
    assert {s.image_path.name for s in RRSISDDataset(rrsisd_root, "test")} == {"00001.jpg", "00002.jpg", "00003.jpg"}

    # neither name given: the 5-digit image id, with another extension
    def drop_names(refs):
        for r in refs:
            r.pop("file_name")
    _rewrite_refs(rrsisd_root, drop_names)
    img_dir = rrsisd_root / "images" / "rrsisd" / "JPEGImages"
    (img_dir / "00002.jpg").rename(img_dir / "00002.png")
    ds = RRSISDDataset(rrsisd_root, "test")
    assert {s.image_path.name for s in ds} == {"00001.jpg", "00002.png", "00003.jpg"}


def test_rrsisd_uncompressed_rle_and_conversion():
    m = RR_MASKS[12]
    r = cocomask.encode(np.asfortranarray(m.astype(np.uint8)))
    # uncompressed RLE: counts as a list of run lengths (column-major)
    flat = m.T.reshape(-1).astype(np.uint8)
    runs, val, n = [], 0, 0
    for v in flat:
        if v == val:
            n += 1
        else:
            runs.append(n)
            val, n = v, 1
    runs.append(n)
    ref = CocoMask("x.json", 1, segmentation_to_rle({"size": [H, W], "counts": runs}, H, W))
    np.testing.assert_array_equal(decode_coco_mask(ref), m)
    ref = CocoMask("x.json", 2, segmentation_to_rle(r, H, W))
    np.testing.assert_array_equal(decode_coco_mask(ref), m)
    empty = CocoMask("x.json", 3, segmentation_to_rle([], H, W))
    assert decode_coco_mask(empty).shape == (H, W) and not decode_coco_mask(empty).any()
    assert str(ref) == "x.json (annotation id 2)"
    with pytest.raises(ValueError):
        segmentation_to_rle("nope", H, W)
    with pytest.raises(ValueError):
        segmentation_to_rle([{"counts": "abc"}], H, W)


def test_rrsisd_missing_files(rrsisd_root, tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        RRSISDDataset(tmp_path / "nowhere", "test")
    with pytest.raises(DatasetError, match="not rrsisd/ itself"):
        RRSISDDataset(rrsisd_root / "rrsisd", "test")
    with pytest.raises(ConfigError, match="train, val, test"):
        RRSISDDataset(rrsisd_root, "testA")
    (rrsisd_root / "rrsisd" / "instances.json").rename(tmp_path / "instances.json")
    with pytest.raises(DatasetError, match=r"instances\.json"):
        RRSISDDataset(rrsisd_root, "test")
    (tmp_path / "instances.json").rename(rrsisd_root / "rrsisd" / "instances.json")
    (rrsisd_root / "rrsisd" / "refs(unc).p").rename(tmp_path / "refs.p")
    with pytest.raises(DatasetError, match=r"refs\(unc\)\.p"):
        RRSISDDataset(rrsisd_root, "test")
    (rrsisd_root / "rrsisd" / "refs(unc).p").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="is not a valid refs file: byte 0 holds 0x6e, which is not a pickle opcode"):
        RRSISDDataset(rrsisd_root, "test")
    (tmp_path / "refs.p").replace(rrsisd_root / "rrsisd" / "refs(unc).p")
    _rewrite_refs(rrsisd_root, lambda refs: [r.update(split="train") for r in refs])
    with pytest.raises(DatasetError, match="no refs with split 'test'; splits present: train"):
        RRSISDDataset(rrsisd_root, "test")


def _refs_like(n: int) -> list:
    """RRSIS-D-shaped refs: lists of dicts of str, int and lists, as the refer tools wrote them."""
    return [{"ref_id": i, "image_id": 1 + i // 3, "ann_id": 50 + i, "split": ("train", "val", "test")[i % 3],
             "category_id": 1 + i % 20, "file_name": f"{i // 3:05d}_{i}.jpg", "sent_ids": [i],
             "sentences": [{"sent_id": i, "sent": f"the white plane {i}", "raw": f"The white plane {i}",
                            "tokens": ["the", "white", "plane", str(i)]}],
             "tags": {"a", "b"}, "raw": b"caf\xe9", "score": 0.5, "bbox": (1.0, 2.0, 3.0, 4.0)} for i in range(n)]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_real_refs_pickles_pass_the_opcode_pass_in_every_protocol(protocol):
    """What picklers write (and pickletools.optimize rewrites) passes: memo indexes in
    order, lengths within the file, shallow tuples, even more tuples than the depth bound."""
    import io
    import pickletools

    from t2s_env.datasets.refs_pickle import MAX_TUPLE_DEPTH, check_pickle

    refs = _refs_like(200)
    assert 200 > MAX_TUPLE_DEPTH  # so the tuple-depth simulation runs too
    for data in (pickle.dumps(refs, protocol=protocol), pickletools.optimize(pickle.dumps(refs, protocol=protocol))):
        assert check_pickle(data) == sum(1 for _ in pickletools.genops(io.BytesIO(data)))
    nested: tuple = ()
    for _ in range(MAX_TUPLE_DEPTH - 1):
        nested = (nested, 1)
    check_pickle(pickle.dumps({nested: 1}, protocol=protocol))  # 64 deep: the bound itself


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_tuples_nested_past_the_bound_are_refused_however_built(protocol):
    from t2s_env.datasets.refs_pickle import MAX_TUPLE_DEPTH, PickleRefused, check_pickle

    shared = (1,)
    nested: tuple = ()
    for _ in range(MAX_TUPLE_DEPTH):
        nested = (nested, shared, shared)  # the memo and DUP/GET carry depths too
    with pytest.raises(PickleRefused, match=f"nests tuples more than {MAX_TUPLE_DEPTH} deep"):
        check_pickle(pickle.dumps([{nested: 1}], protocol=protocol))


def test_rrsisd_missing_image_strict_and_lenient(rrsisd_root):
    (rrsisd_root / "images" / "rrsisd" / "JPEGImages" / "00002.jpg").unlink()
    with pytest.raises(DatasetError, match=r"no image for ref 103 .*looked for 00002\.jpg.*strict=False"):
        RRSISDDataset(rrsisd_root, "test")
    with pytest.warns(DatasetWarning, match=r"skipped 1 ref\(s\) \(1 missing image\)"):
        ds = RRSISDDataset(rrsisd_root, "test", strict=False)
    assert [s.sample_id for s in ds] == ["101", "102", "105"]
    assert ds.skipped == {"missing image": 1}


def test_rrsisd_bad_annotations(rrsisd_root):
    def break_ann(d):
        d["annotations"] = [a for a in d["annotations"] if a["id"] != 12]
        for a in d["annotations"]:
            if a["id"] == 13:  # an RLE of another size than its image
                a["segmentation"] = _rle(np.zeros((H + 1, W), bool))
            if a["id"] == 15:
                a["segmentation"] = "garbage"
    _rewrite_instances(rrsisd_root, break_ann)
    with pytest.raises(DatasetError, match="no annotation id 12"):
        RRSISDDataset(rrsisd_root, "test")
    with pytest.warns(DatasetWarning) as rec:
        ds = RRSISDDataset(rrsisd_root, "test", strict=False)
    assert len(rec) == 1
    assert [s.sample_id for s in ds] == ["101"]
    assert ds.skipped == {"missing annotation": 1, "size mismatch": 1, "bad annotation": 1}


def test_rrsisd_size_mismatch_is_an_error(rrsisd_root):
    big = _rgb(9, W + 8, H)
    Image.fromarray(big).save(rrsisd_root / "images" / "rrsisd" / "JPEGImages" / "00002.jpg")
    with pytest.raises(DatasetError, match=r"00002\.jpg is 48x32 but the mask of .*annotation id 13\) is 40x32"):
        RRSISDDataset(rrsisd_root, "test")


# -- RefSegRS fixture ------------------------------------------------------------------------
RS_MASKS = {
    "0": rectangle_mask(H, W, [(3, 4, 20, 10)]),
    "1": rectangle_mask(H, W, [(0, 16, 40, 24)]),
    "7": rectangle_mask(H, W, [(30, 2, 38, 30)]),
}


def write_refsegrs(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k, (i, m) in enumerate(RS_MASKS.items()):
        Image.fromarray(_rgb(k)).save(root / "images" / f"{i}.tif")
        if i == "1":  # 3-channel mask: channel 0 holds the target, the others hold noise
            rgb = np.zeros((H, W, 3), np.uint8)
            rgb[..., 0] = m * 255
            rgb[..., 1] = 255 - m * 255
            rgb[..., 2] = 255
            Image.fromarray(rgb).save(root / "masks" / f"{i}.tif")
        else:
            Image.fromarray(m.astype(np.uint8) * 255).save(root / "masks" / f"{i}.tif")
    (root / "output_phrase_test.txt").write_text(
        "0 vehicle in the road\n1 long road in the middle \n\n0 car parked on the left\n"
    )
    (root / "output_phrase_train.txt").write_text("7 building on the right\n")
    return root


@pytest.fixture
def refsegrs_root(tmp_path) -> Path:
    return write_refsegrs(tmp_path / "RefSegRS")


def test_refsegrs_samples_and_masks(refsegrs_root):
    ds = RefSegRSDataset(refsegrs_root, "test")
    assert ds.name == "refsegrs:test"
    assert [(s.sample_id, s.question) for s in ds] == [
        ("0#1", "vehicle in the road"),
        ("1", "long road in the middle"),
        ("0#4", "car parked on the left"),
    ]
    assert ds[0].questions == ("vehicle in the road", "car parked on the left")
    assert (ds[0].question_index, ds[2].question_index) == (0, 1)
    assert ds[1].image_path.name == "1.tif" and ds[1].size == (W, H)
    for s in ds:
        image, mask = s.load()
        assert image.shape == (H, W, 3)
        np.testing.assert_array_equal(mask, RS_MASKS[s.image_id])
    assert [s.sample_id for s in RefSegRSDataset(refsegrs_root, "train")] == ["7"]
    # question modes do not change a one-expression-per-line dataset
    for q in ("random", "all"):
        assert [s.sample_id for s in RefSegRSDataset(refsegrs_root, "test", question=q)] == ["0#1", "1", "0#4"]


def test_refsegrs_errors(refsegrs_root, tmp_path):
    with pytest.raises(DatasetError, match=r"output_phrase_val\.txt"):
        RefSegRSDataset(refsegrs_root, "val")
    with pytest.raises(ConfigError, match="valid: train, val, test"):
        RefSegRSDataset(refsegrs_root, "dev")
    with pytest.raises(DatasetError, match="does not exist"):
        RefSegRSDataset(tmp_path / "missing", "test")
    (refsegrs_root / "masks" / "1.tif").unlink()
    with pytest.raises(DatasetError, match=r"missing mask for .*output_phrase_test\.txt:2: looked for .*1\.tif"):
        RefSegRSDataset(refsegrs_root, "test")
    with pytest.warns(DatasetWarning, match=r"skipped 1 line\(s\) \(1 missing mask\)"):
        ds = RefSegRSDataset(refsegrs_root, "test", strict=False)
    assert [s.sample_id for s in ds] == ["0#1", "0#4"]
    with open(refsegrs_root / "output_phrase_test.txt", "a") as f:
        f.write("12\n")
    with pytest.raises(DatasetError, match=r"output_phrase_test\.txt:5: expected '<id> <expression>'"):
        RefSegRSDataset(refsegrs_root, "test")
    with pytest.warns(DatasetWarning, match="1 bad line, 1 missing mask"):
        RefSegRSDataset(refsegrs_root, "test", strict=False)
    import shutil
    shutil.rmtree(refsegrs_root / "masks")
    with pytest.raises(DatasetError, match="missing folder .*masks"):
        RefSegRSDataset(refsegrs_root, "test")


def test_refsegrs_size_mismatch(refsegrs_root):
    Image.fromarray(np.zeros((H, W + 1), np.uint8)).save(refsegrs_root / "masks" / "7.tif")
    with pytest.raises(DatasetError, match=r"7\.tif is 40x32 but mask .*7\.tif is 41x32"):
        RefSegRSDataset(refsegrs_root, "train")


def test_cli_data_check_refsegrs(refsegrs_root, capsys):
    assert main(["data", "check", "refsegrs", "--root", str(refsegrs_root), "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "refsegrs:test" in out and "images 2" in out and "questions 3" in out
    assert "sizes (w x h) 40-40 x 32-32 px" in out
    assert main(["data", "check", "refsegrs", "--root", str(refsegrs_root / "nope"), "--split", "test"]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- RISBench fixture ------------------------------------------------------------------------
RB_MASKS = {
    "P0001_0.png": rectangle_mask(H, W, [(1, 1, 9, 9)]),
    "dior.05_12.jpg": rectangle_mask(H, W, [(10, 12, 30, 20)]),
}


def write_risbench(root: Path) -> Path:
    (root / "img_rgb").mkdir(parents=True)
    (root / "mask").mkdir()
    for k, (name, m) in enumerate(RB_MASKS.items()):
        Image.fromarray(_rgb(k)).save(root / "img_rgb" / name)
        Image.fromarray(m.astype(np.uint8) * 255).save(root / "mask" / Path(name).with_suffix(".png").name)
    (root / "output_phrase_test.txt").write_text(
        "P0001_0.png the large  white ship, next to the dock\n"
        "dior.05_12.jpg a vehicle parked on the road 's left side\n"
    )
    return root


def test_risbench_samples_and_masks(tmp_path):
    root = write_risbench(tmp_path / "RISBench")
    ds = make_dataset("risbench:test", root=root)
    assert [(s.sample_id, s.question) for s in ds] == [
        ("P0001_0", "the large  white ship, next to the dock"),
        ("dior.05_12", "a vehicle parked on the road 's left side"),
    ]
    assert ds[1].image_path.name == "dior.05_12.jpg"
    assert ds[1].mask_ref.name == "dior.05_12.png"  # mask under another extension: found by stem
    for s in ds:
        image, mask = s.load()
        assert image.shape == (H, W, 3)
        np.testing.assert_array_equal(mask, RB_MASKS[s.image_path.name])
    (root / "img_rgb" / "P0001_0.png").unlink()
    with pytest.raises(DatasetError, match=r"missing image for .*:1: looked for .*P0001_0\.png"):
        RISBenchDataset(root, "test")
    with pytest.warns(DatasetWarning, match="1 missing image"):
        assert len(RISBenchDataset(root, "test", strict=False)) == 1


# -- all loaders -----------------------------------------------------------------------------
def test_loaders_registry_and_pickling(tmp_path):
    assert set(LOADERS) == {"rrsisd", "refsegrs", "risbench"}
    roots = {
        "rrsisd": write_rrsisd(tmp_path / "r"),
        "refsegrs": write_refsegrs(tmp_path / "s"),
        "risbench": write_risbench(tmp_path / "b"),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, root in roots.items():
            ds = LOADERS[name](root, "test", question="first", seed=0, strict=True)
            blob = pickle.dumps(ds[0])
            s = pickle.loads(blob)
            assert s == ds[0]
            np.testing.assert_array_equal(s.load_mask(), ds[0].load_mask())
            assert set(check_dataset(ds)) >= {"images", "targets", "questions", "empty_targets", "width_range", "height_range"}
