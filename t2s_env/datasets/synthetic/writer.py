"""Writing datasets: one sample's files, whole sets built atomically, the manifest, and the
cached embedded default set."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

from ...errors import ConfigError, DatasetError
from ...progress import progress_bar
from .catalogue import CATEGORY_NAMES
from .scene import GENERATOR_VERSION, SPLITS, _SPLIT_CODES, SyntheticSample, render_sample

EMBEDDED_SEED = 0
#: val holds 200 images so that its 10 empty-target ones (1 in EMPTY_EVERY = 5 %, close to
#: EarthReason's share) make N-Acc mean something
EMBEDDED_SIZES: Mapping[str, int] = {"train": 120, "val": 200, "test": 40}
#: :func:`data_digest` of each embedded split as this generator writes it with numpy 2.4.6
#: and Pillow 13.0.0: the data the README's table was measured on (docs/synthetic.md)
EMBEDDED_DIGESTS: Mapping[str, str] = {
    "train": "c37b7dbce9494291", "val": "2f757f5b515bb1a6", "test": "688e05398c2eaa2b"}
JPEG_QUALITY = 90
MANIFEST = "synthetic.json"


def _write_sample(base: Path, s: SyntheticSample) -> None:
    """One image's three files. Pillow writes no timestamps or metadata, so the bytes
    depend only on the pixels."""
    Image.fromarray(s.image).save(base / "images" / f"{s.image_id}.jpg", format="JPEG",
                                  quality=JPEG_QUALITY, subsampling=2, optimize=False, progressive=False)
    Image.fromarray(s.mask.astype(np.uint8) * 255).save(base / "labels" / f"{s.image_id}.png", format="PNG",
                                                        optimize=False, compress_level=6)
    (base / "QAs" / f"{s.image_id}.json").write_text(json.dumps(s.qa, indent=1, ensure_ascii=False) + "\n",
                                                     encoding="utf-8")


def library_versions() -> dict[str, str]:
    """Versions of the libraries the written files depend on: numpy (the drawing) and
    Pillow (JPEG and PNG encoding). The manifest records them; a cache written with other
    versions is regenerated."""
    import PIL

    return {"numpy": np.__version__, "pillow": PIL.__version__}


def data_digest(root: str | Path, split: str) -> str:
    """First 16 hex digits of the sha256 of a split as a run sees it: every image decoded
    by Pillow (RGB) and every mask (nonzero = target), with its id and shape, in id order.
    Two machines with the same digest score the same pixels."""
    digest = hashlib.sha256()
    base = Path(root) / split
    for image in sorted((base / "images").glob("*.jpg")):
        with Image.open(image) as im:
            pixels = np.asarray(im.convert("RGB"))
        with Image.open(base / "labels" / f"{image.stem}.png") as im:
            mask = np.asarray(im) > 0
        digest.update(f"{image.stem}:{pixels.shape}:{mask.shape}\0".encode())
        digest.update(pixels.tobytes())
        digest.update(mask.tobytes())
    return digest.hexdigest()[:16]


def _write_dataset(root: Path, sizes: Mapping[str, int], seed: int, progress: bool | None = None) -> None:
    """Write every split of ``sizes`` and the manifest under ``root`` (which exists), with a
    progress bar on stderr (``progress`` None: when stderr is a terminal)."""
    with progress_bar(sum(sizes.values()), "synthetic", "image", progress) as bar:
        for split, n in sizes.items():
            base = root / split
            for sub in ("images", "labels", "QAs"):
                (base / sub).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                _write_sample(base, render_sample(seed, split, i))
                bar.update(1)
    manifest = {
        "generator": "think2seg-synthetic",
        "version": GENERATOR_VERSION,
        "source_sha256": source_fingerprint(),
        "libraries": library_versions(),
        "seed": seed,
        "splits": dict(sizes),
        "categories": list(CATEGORY_NAMES),
        "layout": "<split>/images/<id>.jpg, <split>/labels/<id>.png, <split>/QAs/<id>.json",
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def _build_in_temp(parent: Path, name: str, sizes: Mapping[str, int], seed: int, what: str,
                   progress: bool | None = None) -> Path:
    """Generate into a fresh hidden sibling folder; on any failure remove it and raise."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent))
    except OSError as exc:
        raise DatasetError(f"cannot write to {parent / name}: {exc.strerror or exc}; {what}") from None
    try:
        _write_dataset(tmp, sizes, seed, progress)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"cannot write to {parent / name}: {exc.strerror or exc}; {what}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move ``tmp`` to ``out``, replacing an existing ``out`` (renamed aside first, so a
    reader never sees a half-deleted folder)."""
    if out.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, trash / out.name)
        os.rename(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, out)


def _validate(n, seed, splits) -> tuple[int, int, list[str]]:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"--n must be a whole number of images per split, at least 1; got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer; got {seed!r}")
    if isinstance(splits, str):
        splits = splits.split(",")
    names = [s.strip() for s in splits if s and s.strip()]
    if not names:
        raise ConfigError(f"--splits names no split; use a comma-separated subset of {','.join(SPLITS)}")
    unknown = [s for s in names if s not in _SPLIT_CODES]
    if unknown:
        raise ConfigError(f"unknown split {unknown[0]!r} in --splits; valid: {', '.join(SPLITS)} (comma-separated)")
    return int(n), int(seed), list(dict.fromkeys(names))


#: what a folder may hold for ``overwrite=True`` to replace it (a safety net against
#: ``--overwrite`` pointed at a folder that is not a dataset)
_REPLACEABLE = {"train", "val", "test", MANIFEST}


def generate(out: str | Path, n: int = 200, seed: int = 0, splits: Sequence[str] = SPLITS,
             overwrite: bool = False, progress: bool | None = None) -> dict[str, int]:
    """Write ``n`` images per split to ``out`` in the EarthReason layout; returns
    ``{split: images written}``. A progress bar goes to stderr when it is a terminal
    (``progress`` True or False forces it on or off).

    The set is generated in a hidden sibling folder and renamed into place at the end, so
    an error or interruption never leaves a half-written ``out``. An existing non-empty
    ``out`` is replaced only with ``overwrite=True``, and only when it looks like a
    dataset (nothing but ``train/ val/ test/`` and ``synthetic.json``).

    Raises :class:`ConfigError` for a bad ``n``, ``seed`` or split name or an occupied
    ``out``, and :class:`DatasetError` when ``out`` cannot be written.
    """
    n, seed, names = _validate(n, seed, splits)
    out = Path(out).expanduser()
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise ConfigError(f"--out {out} exists and is not a folder; choose a folder path")
        entries = sorted(p.name for p in out.iterdir())
        if entries and not overwrite:
            raise ConfigError(f"--out {out} exists and is not empty; pass --overwrite to replace it or choose another folder")
        foreign = [e for e in entries if e not in _REPLACEABLE]
        if foreign:
            raise ConfigError(f"refusing to replace {out}: it holds {foreign[0]!r}, which is not part of a dataset; "
                              "remove the folder yourself or choose another --out")
    out = out.absolute()
    tmp = _build_in_temp(out.parent, out.name, {s: n for s in names}, seed, "choose a folder you can write to",
                         progress)
    try:
        _replace_dir(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"cannot write to {out}: {exc.strerror or exc}; choose a folder you can write to") from None
    return {s: n for s in names}


# -- the embedded default set ---------------------------------------------------------------

def cache_dir() -> Path:
    """``$T2S_CACHE_DIR`` if set, else ``~/.cache/think2seg``."""
    env = os.environ.get("T2S_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "think2seg"


def source_fingerprint() -> str:
    """SHA-256 (first 16 hex digits) of the generator's source: every module of this
    package, by name in sorted order, then the rasteriser it draws with
    (:mod:`t2s_env.raster`). The cache folder is named after
    :data:`GENERATOR_VERSION`; the fingerprint in its manifest also catches an edit made
    without bumping the version (a cache written by a development copy)."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        digest = hashlib.sha256()
        here = Path(__file__).parent
        for module in [*sorted(here.glob("*.py")), here.parent.parent / "raster.py"]:
            digest.update(module.name.encode() + b"\0" + module.read_bytes())
        _FINGERPRINT = digest.hexdigest()[:16]
    return _FINGERPRINT


_FINGERPRINT: str | None = None


def _is_complete(root: Path, sizes: Mapping[str, int], seed: int) -> bool:
    """A cached set is complete and current when its manifest (written last, before the
    atomic rename) matches what this generator, with these library versions, would write."""
    try:
        m = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and m.get("version") == GENERATOR_VERSION and m.get("seed") == seed \
        and m.get("splits") == dict(sizes) and m.get("source_sha256") == source_fingerprint() \
        and m.get("libraries") == library_versions()


def ensure_dataset(root: str | Path, sizes: Mapping[str, int], seed: int) -> Path:
    """Return ``root``, generating the set there first if it is not complete.

    Generation goes to a temporary sibling renamed atomically into place; when another
    process wins the race to create ``root``, its copy is used and ours discarded. A stale
    incomplete folder at ``root`` is replaced."""
    root = Path(root).expanduser().absolute()
    if _is_complete(root, sizes, seed):
        return root
    sys.stderr.write(f"t2s: generating the synthetic dataset in {root} (one-time, about "
                     f"{max(1, sum(sizes.values()) // 4)} s)\n")
    fix = "set T2S_CACHE_DIR to a writable folder"
    tmp = _build_in_temp(root.parent, root.name, sizes, seed, fix)
    try:
        os.rename(tmp, root)
        return root
    except OSError:
        pass
    try:
        if _is_complete(root, sizes, seed):  # lost the race: use the winner's copy
            shutil.rmtree(tmp, ignore_errors=True)
            return root
        _replace_dir(tmp, root)  # a stale or partial folder from elsewhere
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_complete(root, sizes, seed):
            return root
        raise DatasetError(f"cannot write the synthetic dataset to {root}: {exc.strerror or exc}; {fix}") from None
    return root


def embedded_root() -> Path:
    """The embedded default dataset (train 120, val 200, test 40 images, seed 0), generated
    on first use into ``<cache>/synthetic-<version>-seed<seed>`` (see :func:`cache_dir`)."""
    root = cache_dir() / f"synthetic-{GENERATOR_VERSION}-seed{EMBEDDED_SEED}"
    return ensure_dataset(root, EMBEDDED_SIZES, EMBEDDED_SEED)
