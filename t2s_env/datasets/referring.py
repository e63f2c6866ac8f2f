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

RRSIS-D's masks are decoded by the COCO mask codec (:mod:`.coco_mask`) and its refs pickle
is read by the restricted unpickler (:mod:`.refs_pickle`); this module holds the loaders
and ``t2s data convert rrsisd``.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..errors import ConfigError, DatasetError
from ..instructions import referring_question
from .base import SPLITS, SampleDataset, list_folder, require_folder, short_repr
from .coco_mask import CocoMask, decode_coco_mask, segmentation_to_rle
from .earthreason import seeded_choice
from .refs_pickle import read_refs_pickle, refs_list
from .sample import Sample, image_size, open_data_file

#: extensions tried, in this order, when an entry's file is not found under its exact name
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")

_LINE = re.compile(r"(\S+)\s+(\S.*?)\s*$")


# -- shared machinery ----------------------------------------------------------------------
class _DirIndex:
    """The files of one folder, listed once: look-ups by exact name, then by stem.

    Every entry that is not a folder is indexed, FIFOs and broken links included: reading
    one then fails with a message that says what it is, instead of "missing" or a hang.
    """

    def __init__(self, folder: Path, what: str = "files") -> None:
        self.folder = folder
        self.names: dict[str, Path] = {}
        self.stems: dict[str, list[Path]] = {}
        for name, p, is_dir in list_folder(folder, what):
            if not is_dir:
                self.names[name] = p
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
        self._sizes: dict[Path, tuple[int, int] | DatasetError] = {}  # header reads, shared while indexing
        super().__init__(root, split, question, seed, strict)
        self._sizes.clear()

    def _size(self, path: Path, what: str = "image") -> tuple[int, int]:
        if path not in self._sizes:
            try:
                self._sizes[path] = image_size(path, what)
            except DatasetError as exc:
                self._sizes[path] = exc
        size = self._sizes[path]
        if isinstance(size, DatasetError):
            raise size
        return size

    def _require_dir(self, folder: Path, what: str) -> None:
        require_folder(folder, what, self.layout_hint)

    def _require_file(self, path: Path, what: str) -> None:
        try:
            os.lstat(path)
        except FileNotFoundError:
            raise DatasetError(f"missing {what} {path}; expected {self.layout_hint} (see docs/datasets.md)") from None
        except OSError as exc:  # e.g. a parent folder without permission: not "missing"
            raise DatasetError(f"cannot access {what} {path}: {exc.strerror or exc}; make it readable") from None


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
        pickle_path = self.root / "rrsisd" / REFS_PICKLE
        json_path = self.root / "rrsisd" / REFS_JSON
        inst_path = self.root / "rrsisd" / "instances.json"
        image_dir = self.root / "images" / "rrsisd" / "JPEGImages"
        if not _exists(pickle_path) and not _exists(json_path) and (self.root / REFS_PICKLE).is_file():
            raise DatasetError(
                f"missing {pickle_path}, but {self.root / REFS_PICKLE} exists: --root must be the folder "
                f"above rrsisd/ (holding rrsisd/ and images/rrsisd/JPEGImages/), not rrsisd/ itself"
            )
        # The JSON written by `t2s data convert rrsisd` is preferred: reading it runs no unpickler.
        refs_path = json_path if _exists(json_path) else pickle_path
        self._require_file(refs_path, "RRSIS-D refs file")
        self._require_file(inst_path, "RRSIS-D annotation file")
        self._require_dir(image_dir, "RRSIS-D images")
        refs = _read_refs(refs_path)
        instances = _read_json(inst_path)
        anns_list = instances.get("annotations") if isinstance(instances, dict) else None
        if not isinstance(anns_list, list):
            raise DatasetError(f"{inst_path} must be a COCO-style JSON object with an 'annotations' list")
        # Entries whose id is not a string or whole number cannot be referred to: left out.
        anns = {a["id"]: a for a in anns_list if isinstance(a, dict) and _is_id(a.get("id"))}
        images_list = instances.get("images") or []
        images_meta = {
            im["id"]: im for im in (images_list if isinstance(images_list, list) else [])
            if isinstance(im, dict) and _is_id(im.get("id"))
        }
        files = _DirIndex(image_dir, "RRSIS-D images")

        split_refs = [r for r in refs if isinstance(r, dict) and r.get("split") == self.split]
        if not split_refs:
            present = sorted({
                v if isinstance(v, str) else short_repr(v, 40)
                for v in (r.get("split") for r in refs if isinstance(r, dict))
            })
            raise DatasetError(
                f"{refs_path} has no refs with split {self.split!r}; splits present: {', '.join(present) or 'none'}"
            )
        samples: list[Sample] = []
        seen: set[str] = set()
        for ref in split_refs:
            missing_keys = [k for k in ("ref_id", "ann_id", "image_id", "sentences") if k not in ref]
            if missing_keys:
                self._problem(f"{refs_path}: a ref lacks {', '.join(missing_keys)}: {short_repr(ref)}", "bad ref")
                continue
            bad_ids = [k for k in ("ref_id", "ann_id", "image_id") if not _is_id(ref[k])]
            if bad_ids:
                self._problem(
                    f"{refs_path}: a ref's {', '.join(bad_ids)} must be a string or a whole number: {short_repr(ref)}",
                    "bad ref",
                )
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
            try:
                width, height = self._size(image_path)
            except DatasetError as exc:
                self._problem(f"{exc} (ref {ref_id})", "unreadable image")
                continue
            try:
                rle = segmentation_to_rle(ann.get("segmentation"), height, width)
            except (ValueError, TypeError, OverflowError) as exc:
                self._problem(f"{inst_path}: annotation id {ref['ann_id']!r} (ref {ref_id}) has an unusable segmentation: {exc}", "bad annotation")
                continue
            mask = CocoMask(source=str(inst_path), ann_id=ref["ann_id"], rle=rle)
            if mask.size != (width, height):
                self._problem(
                    f"image {image_path} is {width}x{height} but the mask of {mask} is {mask.size[0]}x{mask.size[1]}; they must match",
                    "size mismatch",
                )
                continue
            questions = tuple(referring_question("rrsisd", s) for s in sentences)
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


def _exists(path: Path) -> bool:
    """True when anything is at ``path`` (a broken link or FIFO too: reading it says what
    is wrong, rather than calling the file missing)."""
    return os.path.lexists(path)


#: where ``t2s data convert rrsisd`` writes the refs as JSON; read instead of the pickle
REFS_JSON = "refs(unc).json"
REFS_PICKLE = "refs(unc).p"


def read_refs_json(path: Path) -> list:
    """The refs of a JSON refs file written by ``t2s data convert rrsisd``."""
    return refs_list(_read_json(path, "refs file"), path)


def _read_refs(path: Path) -> list:
    return read_refs_json(path) if path.suffix == ".json" else read_refs_pickle(path)


def refs_to_json_text(refs: list, source: Path, max_values: int | None = None) -> str:
    """The refs as JSON text: tuples and sets become lists, bytes become text (UTF-8, else
    Latin-1), as the refer tools wrote them. Floats that are not finite are refused.

    ``max_values`` bounds the values written (default: the pickle's size in bytes, since
    every value takes at least one opcode byte unless it is shared): a pickle can describe
    2**40 values in a few hundred bytes by sharing parts, which must not be expanded."""
    if max_values is None:
        max_values = (source.stat().st_size if source.exists() else 0) + 1000
    budget = [max_values]

    def plain(v: Any, depth: int = 0) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise DatasetError(
                f"{source} expands to more than {max_values:,} values (more than its bytes: its parts are shared); "
                f"it is not RRSIS-D's refs"
            )
        if depth > 64:
            raise DatasetError(f"{source}: a ref is nested more than 64 levels deep; it is not RRSIS-D's refs")
        if isinstance(v, dict):
            return {str(k) if not isinstance(k, str) else k: plain(x, depth + 1) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x, depth + 1) for x in v]
        if isinstance(v, (set, frozenset)):
            return sorted((plain(x, depth + 1) for x in v), key=repr)
        if isinstance(v, bytes):
            try:
                return v.decode("utf-8")
            except UnicodeDecodeError:
                return v.decode("latin-1")
        if isinstance(v, float) and not math.isfinite(v):
            raise DatasetError(f"{source}: a ref holds the number {v}, which JSON cannot store; download the file again")
        if v is None or isinstance(v, (str, bool, int, float)):
            return v
        raise DatasetError(f"{source}: a ref holds a {type(v).__name__}; it is not RRSIS-D's refs")

    return json.dumps([plain(r) for r in refs], ensure_ascii=False)


def convert_rrsisd_refs(root: str | Path, overwrite: bool = False) -> tuple[Path, int]:
    """Write ``<root>/rrsisd/refs(unc).json`` from the pickle (read with the restricted
    unpickler); the loader prefers the JSON from then on. Returns (path, number of refs).

    The file appears whole or not at all (written to a temporary name, then renamed).
    """
    root = Path(root)
    require_folder(root, "dataset root", RRSISDDataset.layout_hint)
    source = root / "rrsisd" / REFS_PICKLE
    target = root / "rrsisd" / REFS_JSON
    if not _exists(source):
        hint = " (--root is the folder above rrsisd/)" if (root / REFS_PICKLE).is_file() else ""
        raise DatasetError(f"missing RRSIS-D refs file {source}{hint}; expected {RRSISDDataset.layout_hint}")
    if _exists(target) and not overwrite:
        raise DatasetError(f"{target} already exists; pass --overwrite to write it again")
    refs = read_refs_pickle(source)
    text = refs_to_json_text(refs, source)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        raise DatasetError(f"cannot write {target}: {exc.strerror or exc}; check the folder's permissions and free space") from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return target, len(refs)


def _read_json(path: Path, what: str = "annotation file") -> Any:
    with open_data_file(path, what) as f:
        try:
            return json.load(f)
        except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DatasetError(f"cannot read {path}: {reason}; download it again") from None


def _is_id(v: Any) -> bool:
    """An id usable as a key: a string or a whole number (JSON and pickles hold both)."""
    return isinstance(v, str) or (isinstance(v, numbers.Integral) and not isinstance(v, bool))


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
    if isinstance(image_id, numbers.Integral) or (isinstance(image_id, str) and image_id.isascii() and image_id.isdigit()):
        if len(str(image_id)) <= 32:  # (int() refuses thousands of digits)
            stems.append(f"{int(image_id):05d}")
    stems.append(str(image_id))
    return list(dict.fromkeys(names)), list(dict.fromkeys(stems))


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
        images, masks = _DirIndex(image_dir, f"{self.dataset} images"), _DirIndex(mask_dir, f"{self.dataset} masks")

        entries: list[tuple[int, str, str, list[str], list[str]]] = []  # line, image id, expr, names, stems
        for line_no, line in _read_lines(phrase_path):
            m = _LINE.match(line)
            if m is None:
                self._problem(f"{phrase_path}:{line_no}: expected '<{self._key_name}> <expression>', got {line.strip()!r}", "bad line")
                continue
            key, expression = m.group(1), referring_question(self.dataset, m.group(2))
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
            try:
                size, msize = self._size(image_path), self._size(mask_path, "mask")
            except DatasetError as exc:
                self._problem(f"{exc} ({where})", "unreadable file")
                continue
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
    with open_data_file(path, "phrase file") as f:
        try:
            text = f.read().decode("utf-8-sig")
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
    "RISBenchDataset",
    "RRSISDDataset",
    "RefSegRSDataset",
    "ReferringDataset",
    "convert_rrsisd_refs",
    "read_refs_json",
    "refs_to_json_text",
]
