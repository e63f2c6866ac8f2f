"""Fuzz the dataset loaders with mutated files (issue 8): every case must either load and
check cleanly or raise a :class:`T2SError`; any other exception, a crash or a hang is a
finding.

    python -m tests.fuzz_data --seed 0 --count 120 --dir /tmp/fuzz

Targets: the RRSIS-D refs pickle and ``instances.json``, RefSegRS TIFF images and masks,
EarthReason PNG/JPEG images, labels and QA JSON files. Each is mutated at the byte level
(flips, interesting bytes, insertions, deletions, truncation, chunk copies; the refs
pickle also as written by protocols 0 and 2, whose explicit memo indexes flips make huge,
which once made a run allocate 18.5 GB); the two
annotation files are also mutated as structures (a value replaced by junk: huge, NaN,
negative, wrong type, deep nesting), because byte flips of JSON and pickles mostly stop
at the parser. ``tests/robustness/test_data_fuzz.py`` runs this in a child process so that a
segfault or a hang fails one test instead of killing the session. The address space is
capped (a bomb fails as a MemoryError, reported), and a case that raises the peak
resident memory by more than ``CASE_MEMORY_MIB`` is a finding too.
"""

from __future__ import annotations

import argparse
import copy
import json
import pickle
import random
import shutil
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

CASE_SECONDS = 10  # a case slower than this is reported as a hang
#: a case that raises the process's peak resident memory by more than this is a finding
CASE_MEMORY_MIB = 256
#: the address space is capped at what the loaders need plus this: an allocation bomb
#: fails as a MemoryError (a finding) instead of exhausting the machine
SPARE_ADDRESS_SPACE_MIB = 2048


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if not b:
            b = bytearray(rng.randbytes(rng.randint(1, 16)))
            continue
        i = rng.randrange(len(b))
        if op == 0:  # flip bits
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # interesting byte
            b[i] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0x01, 0x20, 0x2D, 0x39))
        elif op == 2:  # insert random bytes
            b[i:i] = rng.randbytes(rng.randint(1, 8))
        elif op == 3:  # delete a range
            del b[i:i + rng.randint(1, 16)]
        elif op == 4:  # truncate
            del b[i:]
        else:  # copy a chunk elsewhere
            j = rng.randrange(len(b))
            b[j:j] = b[i:i + rng.randint(1, 32)]
    return bytes(b)


JUNK: list[Any] = [
    None, True, -1, 0, 5e8, -5e8, 2**63, 10**30, float("nan"), float("inf"), float("-inf"), 1.5,
    "", "zzzz", "\x00", "0" * 5000, [], [1], [[1, 2]], [float("nan")] * 6, {}, {"a": [1]},
    {"size": [32, 40], "counts": "\x7f\x7f"}, {"size": [-1, 40], "counts": [1]},
    {"size": [32, 40], "counts": [-5, 1285]}, {"size": [10**9, 10**9], "counts": "0"},
    [[10.0, 10.0, 5e8, 10.0, 12.0, 30.0]], [[0, 0, 1, 1, 2, 2, 3]],
]


def _nested(depth: int) -> Any:
    v: Any = 1
    for _ in range(depth):
        v = [v]
    return v


def mutate_structure(obj: Any, rng: random.Random) -> Any:
    """A deep copy of ``obj`` with one to three values replaced by junk."""
    obj = pickle.loads(pickle.dumps(obj))
    for _ in range(rng.randint(1, 3)):
        slots: list[tuple[Any, Any]] = []

        def walk(node: Any, depth: int = 0) -> None:
            if depth > 12:  # not into junk nested by an earlier round
                return
            if isinstance(node, dict):
                for k in list(node):
                    slots.append((node, k))
                    walk(node[k], depth + 1)
            elif isinstance(node, list):
                for k in range(len(node)):
                    slots.append((node, k))
                    walk(node[k], depth + 1)

        walk(obj)
        if not slots:
            break
        parent, key = rng.choice(slots)
        parent[key] = _nested(400) if rng.random() < 0.02 else copy.deepcopy(rng.choice(JUNK))
    return obj


class Hang(Exception):
    pass


def _alarm(*_):
    raise Hang(f"case still running after {CASE_SECONDS} s")


def run_case(load: Callable[[], Any]) -> str | None:
    """None if the case loaded or raised T2SError; else a description of the finding."""
    from t2s_env.datasets import check_dataset
    from t2s_env.errors import T2SError

    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for strict in (True, False):
                try:
                    ds = load(strict)
                    check_dataset(ds, strict=strict)
                    for s in list(ds)[:3]:
                        image, mask = s.load()
                        assert image.dtype == np.uint8 and image.ndim == 3 and mask.dtype == bool
                except T2SError as exc:
                    if "\n" in str(exc):
                        return f"multi-line error: {str(exc)[:300]!r}"
                    if "MemoryError" in str(exc):  # an allocation the cap refused: a bomb got through
                        return f"out of memory: {str(exc)[:300]!r}"
        return None
    except Hang as exc:
        return f"hang: {exc}"
    except BaseException as exc:  # noqa: BLE001 - anything else is the finding
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        return f"{type(exc).__name__}: {str(exc)[:200]} at {Path(tb.filename).name}:{tb.lineno}"
    finally:
        signal.alarm(0)


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _cap_address_space(spare_mib: int) -> None:
    """Limit the address space to what is mapped now plus ``spare_mib`` (Linux only)."""
    import resource

    try:
        with open("/proc/self/status") as f:
            mapped_kb = next(int(line.split()[1]) for line in f if line.startswith("VmPeak"))
    except (OSError, StopIteration):
        return
    limit = (mapped_kb << 10) + (spare_mib << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=120, help="cases per target")
    ap.add_argument("--dir", required=True)
    args = ap.parse_args(argv)

    from t2s_env.datasets.earthreason import EarthReasonDataset
    from t2s_env.datasets.referring import RefSegRSDataset, RRSISDDataset
    from tests.datagen import write_rectangle_dataset
    from tests.env.datasets.test_referring import write_refsegrs, write_rrsisd

    work = Path(args.dir)
    pristine = work / "pristine"
    rr = write_rrsisd(pristine / "rr")
    rs = write_refsegrs(pristine / "rs")
    er = pristine / "er"
    write_rectangle_dataset(er, split="val", n=2, n_empty=0, seed=0, size=48)
    # one JPEG image too
    from PIL import Image

    png = er / "val" / "images" / "img001.png"
    Image.open(png).convert("RGB").save(png.with_suffix(".jpg"), quality=90)
    png.unlink()

    refs = pickle.loads((rr / "rrsisd" / "refs(unc).p").read_bytes())
    instances = json.loads((rr / "rrsisd" / "instances.json").read_text())

    targets: dict[str, tuple[Path, str, Callable[[Path], Callable[[bool], Any]]]] = {
        "refs pickle": (rr, "rrsisd/refs(unc).p", lambda r: lambda strict: RRSISDDataset(r, "test", strict=strict)),
        "instances.json": (rr, "rrsisd/instances.json", lambda r: lambda strict: RRSISDDataset(r, "test", strict=strict)),
        "rrsisd image": (rr, "images/rrsisd/JPEGImages/00001.jpg", lambda r: lambda strict: RRSISDDataset(r, "test", strict=strict)),
        "refsegrs image": (rs, "images/0.tif", lambda r: lambda strict: RefSegRSDataset(r, "test", strict=strict)),
        "refsegrs mask": (rs, "masks/1.tif", lambda r: lambda strict: RefSegRSDataset(r, "test", strict=strict)),
        "image png": (er, "val/images/img000.png", lambda r: lambda strict: EarthReasonDataset(r, "val", strict=strict)),
        "image jpg": (er, "val/images/img001.jpg", lambda r: lambda strict: EarthReasonDataset(r, "val", strict=strict)),
        "label png": (er, "val/labels/img001.png", lambda r: lambda strict: EarthReasonDataset(r, "val", strict=strict)),
        "QA json": (er, "val/QAs/img000.json", lambda r: lambda strict: EarthReasonDataset(r, "val", strict=strict)),
    }
    # Old-protocol pickles store memo indexes explicitly (BINPUT, LONG_BINPUT, PUT), which
    # byte flips turn into huge ones; the file written above is protocol 4 (MEMOIZE).
    old_protocol_refs = {0: pickle.dumps(refs, protocol=0), 2: pickle.dumps(refs, protocol=2)}
    rng = random.Random(args.seed)
    findings: list[str] = []
    cases = 0
    # one load of each target first, so that the cap leaves room for what a good file needs
    for root, rel, make_load in targets.values():
        run_case(make_load(root))
    _cap_address_space(SPARE_ADDRESS_SPACE_MIB)
    peak = _peak_rss_mib()
    t0 = time.perf_counter()
    for name, (root, rel, make_load) in targets.items():
        case_root = work / "case" / root.name
        if case_root.exists():
            shutil.rmtree(case_root)
        shutil.copytree(root, case_root)
        target = case_root / rel
        original = (root / rel).read_bytes()
        for k in range(args.count):
            structured = name in ("refs pickle", "instances.json") and k % 2 == 1
            if structured and name == "refs pickle":
                data = pickle.dumps(mutate_structure(refs, rng), protocol=rng.choice((2, 4)))
            elif structured:
                data = json.dumps(mutate_structure(instances, rng)).encode()
            elif name == "refs pickle" and k % 4 == 2:
                data = mutate_bytes(old_protocol_refs[rng.choice((0, 2))], rng)
            else:
                data = mutate_bytes(original, rng)
            target.write_bytes(data)
            cases += 1
            finding = run_case(make_load(case_root))
            if _peak_rss_mib() - peak > CASE_MEMORY_MIB:
                finding = finding or f"peak memory grew by {_peak_rss_mib() - peak:.0f} MiB"
            peak = _peak_rss_mib()
            if finding:
                findings.append(f"{name} #{k}: {finding}")
        target.write_bytes(original)
    elapsed = time.perf_counter() - t0
    print(f"fuzz: {cases} cases in {elapsed:.1f} s, seed {args.seed}, {len(findings)} finding(s)")
    for f in findings[:30]:
        print("FINDING", f)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
