"""Loaders of the referring-segmentation datasets used for zero-shot transfer (SPEC §7).

RRSIS-D (refer-style annotations, COCO masks)::

    <root>/rrsisd/refs(unc).p                 pickle list of refs (image_id, split, sentences,
                                              file_name, category_id, ann_id, ref_id)
    <root>/rrsisd/instances.json              COCO-style; masks in annotations[].segmentation
    <root>/images/rrsisd/JPEGImages/<5-digit>.jpg

RefSegRS::

    <root>/images/<id>.tif
    <root>/masks/<id>.tif                     0/255; a 3-channel mask uses channel 0
    <root>/output_phrase_{train,val,test}.txt lines "<id> <expression>"

RISBench::

    <root>/img_rgb/<filename>
    <root>/mask/<filename>
    <root>/output_phrase_{train,val,test}.txt lines "<filename-with-extension> <phrase>"

Question selection: RefSegRS and RISBench have one expression per line and every line is
a sample, whatever ``question`` says. An RRSIS-D ref may carry several sentences: the
question is ``sentences[k]["sent"] + "."`` (the upstream prompt appends the period) with
``k = 0`` (``first``), a per-ref seeded ``k`` (``random``) or every ``k`` (``all``, one
sample per sentence, ``sample_id = "<ref_id>#q<k>"``).

All loaders validate at construction, like :class:`EarthReasonDataset`: a missing root,
annotation or phrase file is a :class:`DatasetError` naming the path; a missing image or
mask for one entry, an unreadable annotation or an image/mask size mismatch (read from the
file headers or the RLE size, not by decoding) raises with ``strict=True`` and is skipped,
counted and reported in one :class:`DatasetWarning` with ``strict=False``.
"""

from __future__ import annotations

import json
import numbers
import os
import pickle
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import ConfigError, DatasetError
from .base import SPLITS, SampleDataset, image_size
from .earthreason import seeded_choice
from .sample import Sample

#: extensions tried, in this order, when an entry's file is not found under its exact name
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")

_LINE = re.compile(r"(\S+)\s+(\S.*?)\s*$")


# -- masks stored as COCO run-length encodings ---------------------------------------------
@dataclass(frozen=True)
class CocoMask:
    """Reference to one COCO annotation's mask, held as a single compressed RLE.

    Equality and hashing use ``(source, ann_id)``; ``str()`` names the annotation, so error
    messages that print a sample's ``mask_ref`` stay one readable line.
    """

    source: str
    ann_id: Any
    rle: dict = field(compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.source} (annotation id {self.ann_id})"

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the mask."""
        h, w = self.rle["size"]
        return int(w), int(h)


def decode_coco_mask(ref: CocoMask) -> np.ndarray:
    """A :class:`CocoMask` as an (H, W) bool array (the ``mask_reader`` of RRSIS-D)."""
    from pycocotools import mask as cocomask

    try:
        with warnings.catch_warnings():
            # pycocotools' __array__ predates numpy 2's copy keyword: harmless, once per decode
            warnings.filterwarnings("ignore", message=r"__array__ implementation", category=DeprecationWarning)
            m = cocomask.decode(ref.rle)
    except Exception as exc:  # pycocotools raises bare Exceptions on corrupt counts
        raise DatasetError(f"cannot decode the mask of {ref}: {exc}; fix or remove that annotation") from None
    if m.ndim == 3:
        m = m.any(axis=2)
    return np.ascontiguousarray(m, dtype=bool)


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict:
    """A COCO ``segmentation`` (RLE dict, uncompressed RLE, a list of RLEs, or polygons)
    as one compressed RLE of their union. Raises ValueError on anything else."""
    from pycocotools import mask as cocomask

    seg = segmentation
    if isinstance(seg, dict):
        parts: list = [seg]
    elif isinstance(seg, (list, tuple)):
        parts = list(seg)
        if parts and all(isinstance(v, (int, float)) for v in parts):
            parts = [parts]  # one flat polygon
    else:
        raise ValueError(f"segmentation must be an RLE dict or a list, not {type(seg).__name__}")
    rles: list[dict] = []
    polygons: list[list[float]] = []
    for part in parts:
        if isinstance(part, dict):
            if "counts" not in part or "size" not in part:
                raise ValueError("an RLE needs 'counts' and 'size'")
            ph, pw = (int(v) for v in part["size"])
            counts = part["counts"]
            if isinstance(counts, list):
                rles.append(cocomask.frPyObjects({"size": [ph, pw], "counts": counts}, ph, pw))
            elif isinstance(counts, (str, bytes)):
                rles.append({"size": [ph, pw], "counts": counts.encode() if isinstance(counts, str) else counts})
            else:
                raise ValueError(f"RLE counts must be a string or a list, not {type(counts).__name__}")
        elif isinstance(part, (list, tuple)) and all(isinstance(v, (int, float)) for v in part):
            if len(part) % 2:
                raise ValueError(f"a polygon needs an even number of coordinates, got {len(part)}")
            if len(part) >= 6:  # shorter ones have no area (and pycocotools would read 4 as a box)
                polygons.append([float(v) for v in part])
        else:
            raise ValueError("segmentation parts must be RLE dicts or polygons (lists of numbers)")
    if polygons:
        rles.extend(cocomask.frPyObjects(polygons, height, width))
    if not rles:
        return cocomask.encode(np.zeros((height, width, 1), dtype=np.uint8, order="F"))[0]
    sizes = {tuple(r["size"]) for r in rles}
    if len(sizes) > 1:
        raise ValueError(f"its parts have different sizes {sorted(sizes)}")
    return rles[0] if len(rles) == 1 else cocomask.merge(rles, intersect=False)


# -- shared machinery ----------------------------------------------------------------------
class _DirIndex:
    """The files of one folder, listed once: look-ups by exact name, then by stem."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names: dict[str, Path] = {}
        self.stems: dict[str, list[Path]] = {}
        with os.scandir(folder) as it:
            for e in it:
                if e.is_file():
                    p = folder / e.name
                    self.names[e.name] = p
                    self.stems.setdefault(p.stem, []).append(p)

    def find(self, names: Iterable[str], stems: Iterable[str] = ()) -> Path | None:
        for n in names:
            if n in self.names:
                return self.names[n]
        for s in stems:
            found = [p for p in self.stems.get(s, ()) if p.suffix.lower() in IMAGE_EXTENSIONS]
            if found:
                return sorted(found, key=lambda p: (IMAGE_EXTENSIONS.index(p.suffix.lower()), p.name))[0]
        return None


class ReferringDataset(SampleDataset):
    """Base of the referring loaders: a validated, indexed list of samples.

    Arguments:
        root: the dataset root (see the module docstring for each layout).
        split: ``train``, ``val`` or ``test``.
        question: ``first``, ``random`` or ``all``; only RRSIS-D refs with several sentences
            are affected (see the module docstring).
        seed: seed of ``random``.
        strict: a missing image or mask, a malformed entry or a size mismatch raises
            :class:`DatasetError`; with ``strict=False`` the entry is skipped and one
            warning counts the skips (``self.skipped``).
    """

    dataset = "referring"
    layout_hint = ""
    unit = "entry"

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        question: str = "first",
        seed: int = 0,
        strict: bool = True,
    ) -> None:
        if split not in SPLITS:
            raise ConfigError(f"unknown {self.dataset} split {split!r}; valid: {', '.join(SPLITS)}")
        self._sizes: dict[Path, tuple[int, int]] = {}  # header reads, shared while indexing
        super().__init__(root, split, question, seed, strict)
        self._sizes.clear()

    def _size(self, path: Path) -> tuple[int, int]:
        if path not in self._sizes:
            self._sizes[path] = image_size(path)
        return self._sizes[path]

    def _require_dir(self, folder: Path, what: str) -> None:
        if not folder.is_dir():
            raise DatasetError(f"missing folder {folder} ({what}); expected {self.layout_hint}")

    def _require_file(self, path: Path, what: str) -> None:
        if not path.is_file():
            raise DatasetError(f"missing {what} {path}; expected {self.layout_hint} (see docs/datasets.md)")


# -- RRSIS-D -------------------------------------------------------------------------------
class RRSISDDataset(ReferringDataset):
    """RRSIS-D: one sample per ref (``question="all"``: per sentence), mask = the ref's
    annotation decoded from ``instances.json``, ``sample_id`` = ``str(ref_id)``.

    The image of a ref is looked for in ``images/rrsisd/JPEGImages/`` under the
    ``file_name`` of its ``instances.json`` image entry, then the ref's own ``file_name``
    (also without a trailing ``_<ann>`` part, the refer convention), then
    ``<image_id as 5 digits>`` and ``<image_id>`` with any image extension.
    """

    dataset = "rrsisd"
    unit = "ref"
    layout_hint = "the folder holding rrsisd/refs(unc).p, rrsisd/instances.json and images/rrsisd/JPEGImages/"

    def _index(self) -> list[Sample]:
        refs_path = self.root / "rrsisd" / "refs(unc).p"
        inst_path = self.root / "rrsisd" / "instances.json"
        image_dir = self.root / "images" / "rrsisd" / "JPEGImages"
        if not refs_path.is_file() and (self.root / "refs(unc).p").is_file():
            raise DatasetError(
                f"missing {refs_path}, but {self.root / 'refs(unc).p'} exists: --root must be the folder "
                f"above rrsisd/ (holding rrsisd/ and images/rrsisd/JPEGImages/), not rrsisd/ itself"
            )
        self._require_file(refs_path, "RRSIS-D refs file")
        self._require_file(inst_path, "RRSIS-D annotation file")
        self._require_dir(image_dir, "RRSIS-D images")
        refs = _read_refs(refs_path)
        instances = _read_json(inst_path)
        anns_list = instances.get("annotations") if isinstance(instances, dict) else None
        if not isinstance(anns_list, list):
            raise DatasetError(f"{inst_path} must be a COCO-style JSON object with an 'annotations' list")
        anns = {a["id"]: a for a in anns_list if isinstance(a, dict) and "id" in a}
        images_meta = {
            im["id"]: im for im in instances.get("images") or [] if isinstance(im, dict) and "id" in im
        }
        files = _DirIndex(image_dir)

        split_refs = [r for r in refs if isinstance(r, dict) and r.get("split") == self.split]
        if not split_refs:
            present = sorted({str(r.get("split")) for r in refs if isinstance(r, dict)})
            raise DatasetError(
                f"{refs_path} has no refs with split {self.split!r}; splits present: {', '.join(present) or 'none'}"
            )
        samples: list[Sample] = []
        seen: set[str] = set()
        for ref in split_refs:
            missing_keys = [k for k in ("ref_id", "ann_id", "image_id", "sentences") if k not in ref]
            if missing_keys:
                self._problem(f"{refs_path}: a ref lacks {', '.join(missing_keys)}: {_short(ref)}", "bad ref")
                continue
            ref_id = str(ref["ref_id"])
            if ref_id in seen:
                self._problem(f"{refs_path}: ref_id {ref_id} appears twice in split {self.split!r}", "duplicate ref")
                continue
            seen.add(ref_id)
            sentences = _sentences(ref["sentences"])
            if not sentences:
                self._skip("no sentences", f"{refs_path}: ref {ref_id} has no sentences")
                continue
            ann = anns.get(ref["ann_id"])
            if ann is None:
                self._problem(f"{inst_path} has no annotation id {ref['ann_id']!r} (ref {ref_id})", "missing annotation")
                continue
            names, stems = _rrsisd_candidates(ref, images_meta.get(ref["image_id"]))
            image_path = files.find(names, stems)
            if image_path is None:
                looked = ", ".join(names + [f"{s}.<{'|'.join(e[1:] for e in IMAGE_EXTENSIONS)}>" for s in stems])
                self._problem(f"no image for ref {ref_id} (image_id {ref['image_id']}) in {image_dir}: looked for {looked}", "missing image")
                continue
            width, height = self._size(image_path)
            try:
                rle = segmentation_to_rle(ann.get("segmentation"), height, width)
            except (ValueError, TypeError) as exc:
                self._problem(f"{inst_path}: annotation id {ref['ann_id']!r} (ref {ref_id}) has an unusable segmentation: {exc}", "bad annotation")
                continue
            mask = CocoMask(source=str(inst_path), ann_id=ref["ann_id"], rle=rle)
            if mask.size != (width, height):
                self._problem(
                    f"image {image_path} is {width}x{height} but the mask of {mask} is {mask.size[0]}x{mask.size[1]}; they must match",
                    "size mismatch",
                )
                continue
            # Upstream prompt: the referring sentence with a "." appended (SPEC §2).
            questions = tuple(s + "." for s in sentences)
            if self.question == "all":
                picks = list(range(len(questions)))
            elif self.question == "random":
                picks = [seeded_choice(len(questions), self.seed, ref_id)]
            else:
                picks = [0]
            for k in picks:
                samples.append(
                    Sample(
                        sample_id=f"{ref_id}#q{k}" if self.question == "all" else ref_id,
                        image_id=image_path.stem,
                        question=questions[k],
                        image_path=image_path,
                        mask_ref=mask,
                        questions=questions,
                        question_index=k,
                        size=(width, height),
                        mask_reader=decode_coco_mask,
                    )
                )
        return samples


def _read_refs(path: Path) -> list:
    """The refs pickle (only load one from a source you trust: unpickling runs code)."""
    try:
        with open(path, "rb") as f:
            try:
                refs = pickle.load(f)
            except UnicodeDecodeError:  # a Python 2 pickle with non-ASCII text
                f.seek(0)
                refs = pickle.load(f, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as exc:
        raise DatasetError(f"cannot read refs file {path}: {exc}; download it again") from None
    if isinstance(refs, dict) and isinstance(refs.get("refs"), list):
        refs = refs["refs"]
    if not isinstance(refs, list):
        raise DatasetError(f"refs file {path} must hold a list of refs, not {type(refs).__name__}; download it again")
    return refs


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}; download it again") from None


def _sentences(raw: Any) -> list[str]:
    """The ``sent`` of each sentence (``raw`` when ``sent`` is missing), non-empty ones."""
    out = []
    for s in raw if isinstance(raw, list) else []:
        text = (s.get("sent") or s.get("raw")) if isinstance(s, dict) else s
        if isinstance(text, str) and text.strip():
            out.append(text)
    return out


def _rrsisd_candidates(ref: dict, image_meta: dict | None) -> tuple[list[str], list[str]]:
    """File names, then stems (any image extension), where a ref's image may be."""
    names: list[str] = []
    stems: list[str] = []
    for fn in ((image_meta or {}).get("file_name"), ref.get("file_name")):
        if isinstance(fn, str) and fn:
            base = os.path.basename(fn)
            names.append(base)
            stems.append(Path(base).stem)
            trimmed = re.sub(r"_\d+$", "", Path(base).stem)  # refer's "<image>_<ann>.jpg"
            if trimmed != Path(base).stem:
                names.append(trimmed + Path(base).suffix)
                stems.append(trimmed)
    image_id = ref.get("image_id")
    if isinstance(image_id, numbers.Integral) or (isinstance(image_id, str) and image_id.isdigit()):
        stems.append(f"{int(image_id):05d}")
    stems.append(str(image_id))
    return list(dict.fromkeys(names)), list(dict.fromkeys(stems))


def _short(obj: Any, n: int = 120) -> str:
    text = repr(obj)
    return text if len(text) <= n else text[: n - 3] + "..."


# -- RefSegRS and RISBench: phrase files -----------------------------------------------------
class _PhraseDataset(ReferringDataset):
    """One sample per line ``<key> <expression>`` of ``output_phrase_<split>.txt``.

    The image and mask of a line are ``<image_dir>/<file>`` and ``<mask_dir>/<file>``; the
    ``questions`` of a sample are all expressions of the same image in the split (they share
    its mask), ``question`` is the line's own. ``sample_id`` is the image id, or
    ``<image id>#<line number>`` (1-based) for an image named on several lines.
    """

    unit = "line"
    image_dir = "images"
    mask_dir = "masks"
    _key_name = "id"

    def _files(self, key: str) -> tuple[str, list[str], list[str]]:
        """(image id, exact file names, stems) for the key of a line."""
        raise NotImplementedError

    def _index(self) -> list[Sample]:
        phrase_path = self.root / f"output_phrase_{self.split}.txt"
        self._require_file(phrase_path, f"{self.dataset} phrase file")
        image_dir, mask_dir = self.root / self.image_dir, self.root / self.mask_dir
        self._require_dir(image_dir, f"{self.dataset} images")
        self._require_dir(mask_dir, f"{self.dataset} masks")
        images, masks = _DirIndex(image_dir), _DirIndex(mask_dir)

        entries: list[tuple[int, str, str, list[str], list[str]]] = []  # line, image id, expr, names, stems
        for line_no, line in _read_lines(phrase_path):
            m = _LINE.match(line)
            if m is None:
                self._problem(f"{phrase_path}:{line_no}: expected '<{self._key_name}> <expression>', got {line.strip()!r}", "bad line")
                continue
            key, expression = m.group(1), m.group(2)
            image_id, names, stems = self._files(key)
            entries.append((line_no, image_id, expression, names, stems))

        per_image: dict[str, list[str]] = {}
        for _, image_id, expression, _, _ in entries:
            per_image.setdefault(image_id, []).append(expression)
        counts = Counter(e[1] for e in entries)
        position: Counter[str] = Counter()

        samples: list[Sample] = []
        for line_no, image_id, expression, names, stems in entries:
            k = position[image_id]
            position[image_id] += 1
            where = f"{phrase_path}:{line_no}"
            image_path = images.find(names, stems)
            if image_path is None:
                self._problem(f"missing image for {where}: looked for {_looked(image_dir, names, stems)}", "missing image")
                continue
            mask_path = masks.find(names, stems)
            if mask_path is None:
                self._problem(f"missing mask for {where}: looked for {_looked(mask_dir, names, stems)}", "missing mask")
                continue
            size, msize = self._size(image_path), self._size(mask_path)
            if size != msize:
                self._problem(
                    f"image {image_path} is {size[0]}x{size[1]} but mask {mask_path} is {msize[0]}x{msize[1]} ({where}); they must match",
                    "size mismatch",
                )
                continue
            samples.append(
                Sample(
                    sample_id=image_id if counts[image_id] == 1 else f"{image_id}#{line_no}",
                    image_id=image_id,
                    question=expression,
                    image_path=image_path,
                    mask_ref=mask_path,
                    questions=tuple(per_image[image_id]),
                    question_index=k,
                    size=size,
                )
            )
        return samples


class RefSegRSDataset(_PhraseDataset):
    """RefSegRS: ``images/<id>.tif``, ``masks/<id>.tif``, lines ``<id> <expression>``."""

    dataset = "refsegrs"
    image_dir, mask_dir = "images", "masks"
    layout_hint = "the folder holding images/, masks/ and output_phrase_{train,val,test}.txt"

    def _files(self, key: str) -> tuple[str, list[str], list[str]]:
        path = Path(key)
        if path.suffix.lower() in IMAGE_EXTENSIONS:  # tolerate "<id>.tif" in the phrase file
            return path.stem, [key], [path.stem]
        return key, [f"{key}.tif", f"{key}.tiff"], [key]


class RISBenchDataset(_PhraseDataset):
    """RISBench: ``img_rgb/<file>``, ``mask/<file>``, lines ``<file> <phrase>`` (the file name
    with its extension, split from the phrase at the first space)."""

    dataset = "risbench"
    image_dir, mask_dir = "img_rgb", "mask"
    layout_hint = "the folder holding img_rgb/, mask/ and output_phrase_{train,val,test}.txt"
    _key_name = "filename"

    def _files(self, key: str) -> tuple[str, list[str], list[str]]:
        stem = Path(key).stem if Path(key).suffix.lower() in IMAGE_EXTENSIONS else key
        return stem, [key], [stem]


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of the non-blank lines of a UTF-8 text file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text ({exc}); re-save it as UTF-8") from None
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield i, line


def _looked(folder: Path, names: list[str], stems: list[str]) -> str:
    exts = "|".join(e[1:] for e in IMAGE_EXTENSIONS)
    return ", ".join([str(folder / n) for n in names] + [str(folder / f"{s}.<{exts}>") for s in stems])


#: name -> loader(root, split, question=, seed=, strict=); used by ``make_dataset``
LOADERS: dict[str, Callable[..., Sequence[Sample]]] = {
    "rrsisd": RRSISDDataset,
    "refsegrs": RefSegRSDataset,
    "risbench": RISBenchDataset,
}

__all__ = [
    "LOADERS",
    "CocoMask",
    "RISBenchDataset",
    "RRSISDDataset",
    "RefSegRSDataset",
    "ReferringDataset",
    "decode_coco_mask",
    "segmentation_to_rle",
]
