"""Bad data files: each is one ``t2s: error:`` line (or, with --lenient, a skip with a
warning), never a crash, a hang, a traceback or a silently wrong mask (issue 8 items 2-6;
issue 10 item 7: the refs pickle, ``data convert``, the referring environments)."""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t2s_env.cli import main
from t2s_env.datasets import EarthReasonDataset, check_dataset, make_dataset, read_rgb
from t2s_env.datasets.earthreason import DatasetWarning
from t2s_env.datasets.coco_mask import decode_rle, segmentation_to_rle
from t2s_env.datasets.referring import RefSegRSDataset, RRSISDDataset
from t2s_env.errors import DatasetError
from tests.datagen import coco_rle_string, rectangle_mask, write_sample
from tests.env.datasets.test_referring import H, W, _rewrite_instances, _rewrite_refs, write_refsegrs, write_risbench, write_rrsisd

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def deadline(seconds: int):
    """Turn a hang into a test failure (SIGALRM, main thread)."""
    def fail(*_):
        raise TimeoutError(f"still running after {seconds} s: hung")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _run_cli(argv, capsys):
    with deadline(60):
        rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("t2s: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def er_root(tmp_path):
    """EarthReason layout, val split: ids a, b, c (30x20 images, one rectangle each)."""
    root = tmp_path / "er"
    rng = np.random.default_rng(0)
    for sid in ("a", "b", "c"):
        write_sample(root, "val", sid, rng.integers(0, 255, (20, 30, 3), dtype=np.uint8),
                     rectangle_mask(20, 30, [(2, 3, 10, 12)]), ["q1", "q2"])
    return root


@pytest.fixture
def rrsisd_root(tmp_path):
    return write_rrsisd(tmp_path / "refer")


def _set_segmentation(root: Path, ann_id: int, segmentation) -> None:
    def edit(d):
        for a in d["annotations"]:
            if a["id"] == ann_id:
                a["segmentation"] = segmentation
    _rewrite_instances(root, edit)


# -- issue 8 item 2: no segfault, no hang ------------------------------------------------------
CRASH_SCRIPT = r"""
import json, sys, warnings
from pathlib import Path
from tests.env.datasets.test_referring import write_rrsisd, _rewrite_instances
from tests.datagen import coco_rle_string
from t2s_env.cli import main

base = Path(sys.argv[1])
cases = {
    "polygon 5e8": [[10.0, 10.0, 5e8, 10.0, 12.0, 30.0, 10.0, 30.0]],
    "polygon nan": [[10.0, 10.0, float("nan"), 10.0, 12.0, 30.0, 10.0, 30.0]],
    "polygon -inf": [[10.0, 10.0, 12.0, float("-inf"), 12.0, 30.0, 10.0, 30.0]],
    "polygon -1e9": [[10.0, 10.0, 12.0, 10.0, 12.0, -1e9, 10.0, 30.0]],
    "rle negative count": {"size": [32, 40], "counts": coco_rle_string([700, -20, 600])},
    "rle negative list": {"size": [32, 40], "counts": [-5, 1285]},
}
results = {}
for k, (name, seg) in enumerate(cases.items()):
    root = write_rrsisd(base / f"r{k}")
    def edit(d, seg=seg):
        for a in d["annotations"]:
            if a["id"] == 15:
                a["segmentation"] = seg
    _rewrite_instances(root, edit)
    strict = main(["data", "check", "rrsisd", "--root", str(root), "--split", "test"])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        lenient = main(["data", "check", "rrsisd", "--root", str(root), "--split", "test", "--lenient"])
    results[name] = [strict, lenient, [str(w.message) for w in rec]]
print("RESULTS " + json.dumps(results))
"""


def test_absurd_coordinates_and_counts_do_not_crash_the_process(tmp_path):
    """Before: pycocotools segfaulted (SIGSEGV) on a polygon coordinate >= 5e8 or NaN, and
    negative counts escaped as OverflowError. Run in a child process so that a crash is a
    failed test, not a dead test session."""
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"child died with {proc.returncode}: {proc.stderr[-2000:]}"
    results = json.loads(proc.stdout.split("RESULTS ", 1)[1])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("t2s: error:")]
    assert len(errors) == len(results), proc.stderr
    for line in errors:
        assert "annotation id 15" in line and "Traceback" not in proc.stderr
    assert sum("polygon coordinate" in line for line in errors) == 4
    for name, (strict, lenient, messages) in results.items():
        assert strict == 2, name
        assert lenient == 0, name
        assert any("skipped 1 ref" in m and "annotation id 15" in m for m in messages), (name, messages)


def test_polygon_vertices_a_little_outside_the_frame_are_kept():
    # (absurd ones are refused: the child process above; not here, where a regression
    # would segfault the test session)
    rle = segmentation_to_rle([[-2.0, -2.0, 12.0, -2.0, 12.0, 40.0, -2.0, 40.0]], H, W)
    assert decode_rle(rle)[:, :12].all()


def test_fifo_is_refused_not_waited_on(er_root, capsys, tmp_path):
    label = er_root / "val" / "labels" / "b.png"
    label.unlink()
    os.mkfifo(label)
    rc, _, err = _run_cli(["data", "check", "earthreason", "--root", str(er_root), "--split", "val"], capsys)
    assert rc == 2
    line = _one_error_line(err)
    assert str(label) in line and "FIFO" in line
    with pytest.warns(DatasetWarning, match="skipped 1 image"):
        rc, out, _ = _run_cli(["data", "check", "earthreason", "--root", str(er_root), "--split", "val", "--lenient"], capsys)
    assert rc == 0 and "images 2" in out

    # the referring loaders too: an image (RRSIS-D) and a mask (RefSegRS)
    rr = write_rrsisd(tmp_path / "rr")
    image = rr / "images" / "rrsisd" / "JPEGImages" / "00002.jpg"
    image.unlink()
    os.mkfifo(image)
    with deadline(30), pytest.raises(DatasetError, match=r"00002\.jpg is a FIFO"):
        RRSISDDataset(rr, "test")
    rs = write_refsegrs(tmp_path / "rs")
    mask = rs / "masks" / "7.tif"
    mask.unlink()
    os.mkfifo(mask)
    with deadline(30), pytest.raises(DatasetError, match=r"7\.tif is a FIFO"):
        RefSegRSDataset(rs, "train")
    # and a FIFO where the annotation file should be
    inst = rr / "rrsisd" / "instances.json"
    inst.unlink()
    os.mkfifo(inst)
    with deadline(30), pytest.raises(DatasetError, match=r"instances\.json is a FIFO"):
        RRSISDDataset(rr, "test")


# -- issue 8 item 3: one line, not a traceback -----------------------------------------------------
def test_decompression_bomb_is_one_line(er_root, capsys, monkeypatch):
    # Pillow raises at twice MAX_IMAGE_PIXELS; 30x20 = 600 pixels > 2 * 200
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)
    rc, _, err = _run_cli(["data", "check", "earthreason", "--root", str(er_root), "--split", "val"], capsys)
    assert rc == 2
    line = _one_error_line(err)
    assert "too large to decode safely" in line and "MAX_IMAGE_PIXELS" in line


MALFORMED_PICKLES = {  # name: (file, what the error line says)
    "SETITEMS on a list": (b"](X\x01\x00\x00\x00aK\x02u.", "TypeError"),
    # refused by the opcode pass before the unpickler reserves or indexes anything:
    "BINBYTES8 length": (b"\x80\x04\x8e" + (2**63 + 5).to_bytes(8, "little") + b".",
                         "BINBYTES8 at byte 2 declares 9,223,372,036,854,775,813 bytes but 1 remain"),
    "LONG_BINPUT 2**31-1": (b"\x80\x02]r\xff\xff\xff\x7f.", "LONG_BINPUT at byte 3 stores memo index 2,147,483,647 after only 3 opcodes"),
    "PUT 10**8": (b"(lp100000000\n.", "PUT at byte 2 stores memo index 100,000,000 after only 3 opcodes"),
    "BINUNICODE length": (b"\x80\x02X\xff\xff\xff\xffabc.", "BINUNICODE at byte 2 declares 4,294,967,295 bytes but 4 remain"),
    "FRAME length": (b"\x80\x04\x95" + (2**40).to_bytes(8, "little") + b"].", "FRAME at byte 2 declares 1,099,511,627,776 bytes"),
    "no STOP": (b"\x80\x02]q\x00", "without a STOP opcode"),
    "not an opcode": (b"\x80\x02]\xff.", "byte 3 holds 0xff, which is not a pickle opcode"),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED_PICKLES))
def test_malformed_refs_pickle_is_one_line(rrsisd_root, capsys, kind):
    refs = rrsisd_root / "rrsisd" / "refs(unc).p"
    data, needle = MALFORMED_PICKLES[kind]
    refs.write_bytes(data)
    rc, _, err = _run_cli(["data", "check", "rrsisd", "--root", str(rrsisd_root), "--split", "test"], capsys)
    assert rc == 2
    line = _one_error_line(err)
    assert str(refs) in line and needle in line


#: a child that runs `t2s data check rrsisd` under an address-space limit and reports its
#: peak resident and virtual memory on stdout (the error line goes to stderr)
BOUNDED_CHECK = """
import resource, sys
limit = int(sys.argv[2])
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from t2s_env.cli import main
rc = main(["data", "check", "rrsisd", "--root", sys.argv[1], "--split", "test"])
peak = [l.split()[1] for l in open("/proc/self/status") if l.startswith("VmPeak")][0]
print("MEMORY", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, int(peak), flush=True)
sys.exit(rc)
"""


def _bounded_check(root: Path, limit: int = 0) -> tuple[int, str, int, int]:
    """(exit status, stderr, peak RSS in kB, peak virtual size in kB) of a child check."""
    proc = subprocess.run([sys.executable, "-c", BOUNDED_CHECK, str(root), str(limit)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    memory = [line.split() for line in proc.stdout.splitlines() if line.startswith("MEMORY ")]
    assert memory, f"child died with {proc.returncode}: {proc.stderr[-2000:]}"
    return proc.returncode, proc.stderr, int(memory[0][1]), int(memory[0][2])


def _memo_bomb(index: int, size: int = 399) -> bytes:
    """A ``size``-byte protocol-2 refs pickle (one plausible ref) whose first memo store
    names ``index``: CPython's unpickler grows its memo array to that size first."""
    def dumped(pad: str) -> bytes:
        return pickle.dumps([{"ref_id": 101, "image_id": 1, "ann_id": 11, "split": "test", "note": pad,
                              "sentences": [{"sent": "the airplane on the upper left"}]}], protocol=2)
    pad = "x" * (size - len(dumped("")) - 3)  # LONG_BINPUT takes 3 bytes more than BINPUT
    data = dumped(pad)
    assert data[2:5] == b"]q\x00"  # EMPTY_LIST, BINPUT 0
    data = data[:3] + b"r" + index.to_bytes(4, "little") + data[5:]
    assert len(data) == size
    return data


@pytest.mark.slow
def test_refs_pickle_memo_bomb_is_refused_in_bounded_memory(rrsisd_root):
    """Before: a 399-byte refs file with memo index 2e8 made `t2s data check` use 3.6 GB
    and exit 0. Now the opcode pass refuses it before unpickling: one line, exit 2, and
    no more memory than checking the real file (the child's address space is capped at
    that plus 1 GiB, so the old code fails rather than exhausting the machine)."""
    rc, err, rss_kb, vm_kb = _bounded_check(rrsisd_root)
    assert rc == 0, err
    refs = rrsisd_root / "rrsisd" / "refs(unc).p"
    refs.write_bytes(_memo_bomb(200_000_000))
    rc, err, bomb_rss_kb, _ = _bounded_check(rrsisd_root, limit=(vm_kb << 10) + (1 << 30))
    assert rc == 2
    line = _one_error_line(err)
    assert line == (f"t2s: error: {refs} is not a valid refs file: LONG_BINPUT at byte 3 stores memo index "
                    f"200,000,000 after only 3 opcodes; download it again")
    assert bomb_rss_kb - rss_kb < 100_000, (rss_kb, bomb_rss_kb)


@pytest.mark.slow
def test_refs_pickle_with_a_deeply_nested_tuple_key_is_refused(rrsisd_root):
    """Before: a 1 MB refs file whose dict key is a tuple nested 10**6 deep crashed
    `t2s data check` with SIGSEGV (hashing a tuple recurses in C without a limit)."""
    refs = rrsisd_root / "rrsisd" / "refs(unc).p"
    refs.write_bytes(b"\x80\x02]}K\x01" + b"\x85" * 1_000_000 + b"K\x02sa.")  # [{((...(1,)...),): 2}]
    rc, err, _, _ = _bounded_check(rrsisd_root)
    assert rc == 2
    line = _one_error_line(err)
    assert str(refs) in line and "nests tuples more than 64 deep" in line


def test_unhashable_ids_are_bad_refs(rrsisd_root, capsys):
    def edit_refs(refs):
        refs[0]["ann_id"] = [11]  # a list: unhashable
        refs[1]["image_id"] = {"id": 1}
    _rewrite_refs(rrsisd_root, edit_refs)
    _rewrite_instances(rrsisd_root, lambda d: d["annotations"][2].update(id=[13]))
    rc, _, err = _run_cli(["data", "check", "rrsisd", "--root", str(rrsisd_root), "--split", "test"], capsys)
    assert rc == 2
    assert "must be a string or a whole number" in _one_error_line(err)
    with pytest.warns(DatasetWarning) as rec:
        ds = RRSISDDataset(rrsisd_root, "test", strict=False)
    assert [s.sample_id for s in ds] == ["105"]
    assert ds.skipped == {"bad ref": 2, "missing annotation": 1}
    assert len(rec) == 1


# -- issue 8 item 4: nothing silently wrong ----------------------------------------------------------
def test_16_bit_image_is_scaled_by_its_range_not_white(tmp_path):
    ramp = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 5 + 1000)  # 1000 .. 3995
    path = tmp_path / "dem.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode == "I;16"
    rgb = read_rgb(path)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    assert rgb.min() == 0 and rgb.max() == 255  # old: every pixel clipped to 255
    expected = np.rint((ramp.astype(float) - 1000) * 255 / (3995 - 1000)).astype(np.uint8)
    np.testing.assert_array_equal(rgb[..., 0], expected)
    assert (rgb[..., 0] == rgb[..., 2]).all()
    # a 32-bit float TIFF with a NaN: finite values scaled, NaN -> 0; a constant image -> 0
    f = np.linspace(-1.0, 1.0, 600, dtype=np.float32).reshape(20, 30)
    f[0, 0] = np.nan
    Image.fromarray(f).save(tmp_path / "f.tif")
    out = read_rgb(tmp_path / "f.tif")[..., 0]
    assert out[0, 0] == 0 and out[-1, -1] == 255 and out[0, 1] == 0
    Image.fromarray(np.full((4, 4), 7, np.uint16)).save(tmp_path / "flat.png")
    assert not read_rgb(tmp_path / "flat.png").any()


@pytest.mark.parametrize("counts", ["zzzz", "0", "d1:5O31", "\x7f\x7f", coco_rle_string([1000, 200])])
def test_garbage_rle_is_an_error_not_an_empty_mask(rrsisd_root, counts):
    _set_segmentation(rrsisd_root, 11, {"size": [H, W], "counts": counts})
    with pytest.raises(DatasetError, match=r"annotation id 11 \(ref 101\) has an unusable segmentation"):
        RRSISDDataset(rrsisd_root, "test")
    with pytest.raises(ValueError):
        decode_rle({"size": [H, W], "counts": counts})


# -- issue 8 item 5: --lenient skips every unreadable entry; check decodes fully ----------------------
def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_lenient_skips_every_unreadable_entry(tmp_path, capsys):
    root = tmp_path / "er"
    rng = np.random.default_rng(1)
    ids = ["good", "badjson", "latin1", "emptyimg", "corruptlabel", "truncjpg", "trunclabel", "emptyqa"]
    for sid in ids:
        write_sample(root, "val", sid, rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),
                     rectangle_mask(48, 64, [(2, 3, 30, 40)]), ["q"],
                     image_ext=".jpg" if sid == "truncjpg" else ".png")
    base = root / "val"
    (base / "QAs" / "badjson.json").write_text('{"questions": ["unterminated')
    (base / "QAs" / "latin1.json").write_bytes('{"questions": ["caf\xe9"]}'.encode("latin-1"))
    (base / "images" / "emptyimg.png").write_bytes(b"")
    (base / "labels" / "corruptlabel.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    _truncate(base / "images" / "truncjpg.jpg")
    _truncate(base / "labels" / "trunclabel.png", 0.7)
    (base / "QAs" / "emptyqa.json").write_bytes(b"")

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        rc, out, err = _run_cli(["data", "check", "earthreason", "--root", str(root), "--split", "val", "--lenient"], capsys)
    assert rc == 0, err
    assert "images 1 " in out and "skipped 7" in out
    messages = " | ".join(str(w.message) for w in rec if issubclass(w.category, DatasetWarning))
    assert "skipped 5 image(s)" in messages  # at indexing: QA files, the empty and the corrupt file
    assert "skipped 2 unreadable target(s)" in messages  # at decoding: the truncated files

    # strict: the first broken file is one line naming it
    rc, _, err = _run_cli(["data", "check", "earthreason", "--root", str(root), "--split", "val"], capsys)
    assert rc == 2 and "badjson.json" in _one_error_line(err)


def test_check_decodes_images_so_a_truncated_jpeg_is_caught(er_root, capsys):
    image = er_root / "val" / "images" / "b.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(
        image.with_suffix(".jpg"), quality=95)
    image.unlink()
    _truncate(image.with_suffix(".jpg"), 0.6)
    EarthReasonDataset(er_root, "val")  # the header is intact: indexing cannot tell
    rc, _, err = _run_cli(["data", "check", "earthreason", "--root", str(er_root), "--split", "val"], capsys)
    assert rc == 2  # old: 0, the image was never decoded
    line = _one_error_line(err)
    assert "b.jpg" in line and "truncated" in line


def test_truncated_tiff_mask_caught_by_check(tmp_path):
    root = write_refsegrs(tmp_path / "rs")
    _truncate(root / "masks" / "0.tif", 0.5)
    ds = make_dataset("refsegrs:test", root=root)
    with pytest.raises(DatasetError, match=r"0\.tif"):
        check_dataset(ds)
    with pytest.warns(DatasetWarning, match="skipped 1 unreadable target"):
        counts = check_dataset(ds, strict=False)
    assert counts["images"] == 1 and counts["skipped"] == 1


# -- issue 8 item 6: honest messages ---------------------------------------------------------------
def test_unreadable_folder_is_not_missing(er_root, capsys, monkeypatch):
    """Tests run as root here, where chmod cannot make a folder unreadable: the denial is
    simulated where the library lists folders."""
    real = os.scandir
    labels = str(er_root / "val" / "labels")

    def scandir(path="."):
        if str(path) == labels:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    rc, _, err = _run_cli(["data", "check", "earthreason", "--root", str(er_root), "--split", "val"], capsys)
    assert rc == 2
    line = _one_error_line(err)
    assert labels in line and "permission denied" in line and "missing" not in line

    real_stat = os.stat

    def stat(path, *a, **kw):
        if str(path).startswith(str(er_root / "val")):  # no search permission on val/
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *a, **kw)

    monkeypatch.setattr(os, "scandir", real)
    monkeypatch.setattr(os, "stat", stat)
    rc, _, err = _run_cli(["data", "check", "earthreason", "--root", str(er_root), "--split", "val"], capsys)
    line = _one_error_line(err)
    assert rc == 2 and "permission denied" in line and "missing" not in line


def test_unknown_split_lists_the_valid_ones(er_root, rrsisd_root, capsys):
    rc, _, err = _run_cli(["data", "check", "earthreason", "--root", str(er_root), "--split", "bogus"], capsys)
    assert rc == 2
    line = _one_error_line(err)
    assert "'bogus'" in line and "splits present: val" in line
    rc, _, err = _run_cli(["data", "check", "rrsisd", "--root", str(rrsisd_root), "--split", "bogus"], capsys)
    assert rc == 2 and "valid: train, val, test" in _one_error_line(err)


# -- issue 10 item 7: the refs pickle, data convert ------------------------------------------------
class _Attack:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Writer:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.mark.parametrize("attack", [_Attack, _Writer])
def test_refs_pickle_that_runs_code_is_refused(rrsisd_root, tmp_path, capsys, attack):
    marker = tmp_path / "pwned"
    refs_path = rrsisd_root / "rrsisd" / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    refs[2]["sentences"][0]["sent"] = attack(marker)  # hidden deep inside a ref
    refs_path.write_bytes(pickle.dumps(refs))
    rc, _, err = _run_cli(["data", "check", "rrsisd", "--root", str(rrsisd_root), "--split", "test"], capsys)
    assert rc == 2
    line = _one_error_line(err)
    assert str(refs_path) in line and "only plain" in line
    with pytest.raises(DatasetError, match="only plain lists, dicts"):
        RRSISDDataset(rrsisd_root, "test", strict=False)  # not skippable: nothing is read
    rc, _, err = _run_cli(["data", "convert", "rrsisd", "--root", str(rrsisd_root)], capsys)
    assert rc == 2 and str(refs_path) in _one_error_line(err)
    assert not marker.exists()
    assert not (rrsisd_root / "rrsisd" / "refs(unc).json").exists()


def test_refs_pickle_with_shared_parts_is_not_expanded(rrsisd_root, capsys):
    """A few hundred bytes of pickle can describe 2**40 values by sharing parts; nothing
    may walk or print it in full."""
    bomb: list = [1]
    for _ in range(40):
        bomb = [bomb, bomb]
    refs_path = rrsisd_root / "rrsisd" / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    refs[0]["ref_id"] = bomb  # a bad id: its message quotes the ref
    refs.append({"split": bomb})
    refs_path.write_bytes(pickle.dumps(refs))
    assert refs_path.stat().st_size < 10_000
    with deadline(30):
        with pytest.raises(DatasetError, match="must be a string or a whole number"):
            RRSISDDataset(rrsisd_root, "test")
        with pytest.raises(DatasetError, match="no refs with split 'val'"):
            RRSISDDataset(rrsisd_root, "val")
        rc, _, err = _run_cli(["data", "convert", "rrsisd", "--root", str(rrsisd_root)], capsys)
    assert rc == 2 and "expands to more than" in _one_error_line(err)


def test_convert_writes_json_refs_preferred_afterwards(rrsisd_root, capsys):
    before = [(s.sample_id, s.question, s.image_path.name) for s in RRSISDDataset(rrsisd_root, "test", question="all")]
    rc, out, err = _run_cli(["data", "convert", "rrsisd", "--root", str(rrsisd_root)], capsys)
    assert rc == 0, err
    target = rrsisd_root / "rrsisd" / "refs(unc).json"
    assert str(target) in out and "5 refs" in out
    data = json.loads(target.read_text(encoding="utf-8"))
    assert [r["ref_id"] for r in data] == [101, 102, 103, 104, 105]
    # the loader now reads the JSON: the pickle may even be gone
    (rrsisd_root / "rrsisd" / "refs(unc).p").write_bytes(b"corrupt")
    after = [(s.sample_id, s.question, s.image_path.name) for s in RRSISDDataset(rrsisd_root, "test", question="all")]
    assert after == before
    # an existing JSON is not replaced without --overwrite; bad names are one line
    rc, _, err = _run_cli(["data", "convert", "rrsisd", "--root", str(rrsisd_root)], capsys)
    assert rc == 2 and "--overwrite" in _one_error_line(err)
    rc, _, err = _run_cli(["data", "convert", "earthreason", "--root", str(rrsisd_root)], capsys)
    assert rc == 2 and "convertible: rrsisd" in _one_error_line(err)
    rc, _, err = _run_cli(["data", "convert", "rrsisd", "--root", str(rrsisd_root / "nope")], capsys)
    assert rc == 2 and "does not exist" in _one_error_line(err)


def test_convert_keeps_python2_text_and_sets(rrsisd_root, capsys):
    refs_path = rrsisd_root / "rrsisd" / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    refs[0]["sentences"][0]["sent"] = "the caf\xe9 roof"
    refs[0]["tags"] = {"b", "a"}
    refs[0]["raw_bytes"] = b"bytes"
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    assert _run_cli(["data", "convert", "rrsisd", "--root", str(rrsisd_root)], capsys)[0] == 0
    data = json.loads((rrsisd_root / "rrsisd" / "refs(unc).json").read_text(encoding="utf-8"))
    assert data[0]["tags"] == ["a", "b"] and data[0]["raw_bytes"] == "bytes"
    assert RRSISDDataset(rrsisd_root, "test")[0].question == "the caf\xe9 roof."


# -- issue 10 item 7: the referring benchmarks as environments ----------------------------------------
SPEC_STRINGS = json.loads((Path(__file__).parents[1] / "data" / "spec_prompt_strings.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("env_id, writer, expected_question", [
    ("Think2Seg-RRSISD-v0", write_rrsisd, "the airplane on the upper left."),
    ("Think2Seg-RefSegRS-v0", write_refsegrs, "vehicle in the road"),
    ("Think2Seg-RISBench-v0", write_risbench, "the large  white ship, next to the dock"),
])
def test_referring_env_ids_use_upstream_prompts(tmp_path, env_id, writer, expected_question):
    import gymnasium as gym

    import t2s_env  # noqa: F401  (registers the ids)

    root = writer(tmp_path / "data")
    spec = gym.spec(env_id)
    assert spec.kwargs["split"] == "test" and spec.kwargs["segmenter"] == "sam2:small"
    assert spec.kwargs["prompt_variant"] == "bbox+2pos"
    env = gym.make(env_id, root=str(root), segmenter="box")
    obs, info = env.reset(options={"index": 0})
    assert obs["question"] == expected_question
    system, user = info["messages"]
    assert system["content"][0]["text"] == SPEC_STRINGS["system"]
    assert user["content"][1]["text"] == SPEC_STRINGS["user"].replace("{Question}", expected_question)
    env.close()


def test_refsegrs_question_is_single_spaced_as_upstream(tmp_path):
    """Upstream splits a RefSegRS line on whitespace and re-joins the words with one space."""
    root = write_refsegrs(tmp_path / "rs")
    (root / "output_phrase_test.txt").write_text("0  vehicle \t in   the road \n")
    assert RefSegRSDataset(root, "test")[0].question == "vehicle in the road"


def test_rle_size_and_counts_bounds():
    with pytest.raises(ValueError, match="outside 1..100000"):
        segmentation_to_rle({"size": [10**9, 10**9], "counts": [10**18]}, H, W)
    with pytest.raises(ValueError, match="whole numbers"):
        segmentation_to_rle({"size": [H, W], "counts": [float("nan"), 1]}, H, W)
    with pytest.raises(ValueError, match="cover 1 pixels"):
        segmentation_to_rle({"size": [H, W], "counts": [1]}, H, W)
    assert not math.isnan(decode_rle(segmentation_to_rle({"size": [H, W], "counts": [H * W]}, H, W)).sum())
