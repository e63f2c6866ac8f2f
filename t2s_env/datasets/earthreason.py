"""EarthReason loader (SPEC §7); also reads the synthetic set, which uses the same layout.

```
<root>/<split>/images/<id>.{jpg,jpeg,png}
<root>/<split>/labels/<id>.png   single-channel, foreground = pixel > 0
<root>/<split>/QAs/<id>.json     {"questions": [...], "answer": [...], ...}
```
``<id>`` is the file name up to its first ``.``. One mask per image, shared by its
questions; an empty ``answer`` and an all-zero mask mean "no target".
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Sequence

from ..errors import DatasetError
from ..progress import progress_iter
from .base import QUESTION_CHOICES, SPLITS, DatasetWarning, SampleDataset, list_folder, require_folder
from .sample import Sample, decoded_shape, image_size, open_data_file, read_rgb

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
#: a QA file is a few hundred bytes; one this large is not a QA file (and is not read whole)
MAX_QA_BYTES = 16 << 20

__all__ = [
    "DatasetWarning", "EarthReasonDataset", "IMAGE_EXTENSIONS", "QUESTION_CHOICES", "SPLITS",
    "check_dataset", "file_id", "seeded_choice",
]


def file_id(name: str) -> str:
    return name.split(".", 1)[0]


def seeded_choice(n: int, seed: int, key: str) -> int:
    """An index in [0, n) that depends only on (seed, key): stable across runs, platforms
    and directory listing order (Python's hash() is salted per process, so not that)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


class EarthReasonDataset(SampleDataset):
    """The samples of one split, validated at construction.

    Arguments:
        root: dataset root holding ``train/ val/ test/``.
        split: which split.
        question: ``first`` (questions[0]), ``random`` (one per image, seeded per image id,
            so independent of listing order) or ``all`` (one sample per question).
        seed: seed of ``random``.
        strict: a missing image, label or QA file, or an image/mask size mismatch, raises
            :class:`DatasetError` naming the file; with ``strict=False`` the image is
            skipped and one warning counts the skips.

    Images with an empty ``questions`` list are always skipped with a warning.
    """

    dataset = "earthreason"
    unit = "image"
    layout_hint = "the folder holding train/ val/ test/"

    def __init__(self, root: str | Path, split: str = "val", question: str = "first", seed: int = 0,
                 strict: bool = True) -> None:
        super().__init__(root, split, question, seed, strict)

    # -- indexing -------------------------------------------------------------------------
    def _index(self) -> list[Sample]:
        base = self.root / self.split
        self._require_split(base)
        dirs = {k: base / k for k in ("images", "labels", "QAs")}
        for k, d in dirs.items():
            require_folder(d, f"{self.split} {k}", "an EarthReason split holds images/, labels/ and QAs/")
        images = self._files(dirs["images"], IMAGE_EXTENSIONS, "image", unique=True)
        labels = self._files(dirs["labels"], (".png",), "label")
        qas = self._files(dirs["QAs"], (".json",), "QA file")

        samples: list[Sample] = []
        for i in sorted(set(images) | set(labels) | set(qas)):
            missing = [
                str(path)
                for path, present in (
                    (dirs["images"] / f"{i}.<jpg|jpeg|png>", i in images),
                    (dirs["labels"] / f"{i}.png", i in labels),
                    (dirs["QAs"] / f"{i}.json", i in qas),
                )
                if not present
            ]
            if missing:
                self._problem(f"missing file {missing[0]} for id {i!r}", "missing file")
                continue
            try:
                qa = self._read_qa(qas[i])
            except DatasetError as exc:
                self._problem(str(exc), "bad QA file")
                continue
            questions = qa.get("questions") or []
            if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
                self._problem(f"{qas[i]}: 'questions' must be a list of strings", "bad QA file")
                continue
            if not questions:
                self._skip("no questions", f"{qas[i]} has no questions")
                continue
            try:
                size = image_size(images[i], "image")
                msize = image_size(labels[i], "label")
            except DatasetError as exc:
                self._problem(str(exc), "unreadable file")
                continue
            if size != msize:
                self._problem(
                    f"image {images[i]} is {size[0]}x{size[1]} but mask {labels[i]} is {msize[0]}x{msize[1]}; they must match",
                    "size mismatch",
                )
                continue
            answers = qa.get("answer") or []
            answers = tuple(a for a in answers if isinstance(a, str)) if isinstance(answers, list) else ()
            if self.question == "all":
                picks = list(range(len(questions)))
            elif self.question == "random":
                picks = [seeded_choice(len(questions), self.seed, i)]
            else:
                picks = [0]
            for k in picks:
                samples.append(
                    Sample(
                        sample_id=f"{i}#q{k}" if self.question == "all" else i,
                        image_id=i,
                        question=questions[k],
                        image_path=images[i],
                        mask_ref=labels[i],
                        questions=tuple(questions),
                        answers=answers,
                        question_index=k,
                        size=size,
                    )
                )
        return samples

    def _require_split(self, base: Path) -> None:
        """An absent split folder is an error that lists the splits present under the root."""
        try:
            os.stat(base)
            return  # present (or not a folder / unreadable: require_folder says which)
        except FileNotFoundError:
            pass
        except OSError:
            return
        present = sorted(
            name for name, path, is_dir in list_folder(self.root, "dataset root")
            if is_dir and (path / "images").is_dir()
        )
        raise DatasetError(
            f"no split {self.split!r} under {self.root} (missing folder {base}); "
            f"splits present: {', '.join(present) or 'none'}"
        )

    @staticmethod
    def _files(folder: Path, extensions: tuple[str, ...], what: str, unique: bool = False) -> dict[str, Path]:
        """id -> file for the entries of ``folder`` with one of ``extensions`` (any case).

        Non-regular entries (FIFOs, sockets, devices) are kept: reading one is refused with
        a message naming it, rather than hanging or calling its image missing.
        """
        out: dict[str, Path] = {}
        for name, path, is_dir in list_folder(folder, what + "s"):
            if is_dir or Path(name).suffix.lower() not in extensions:
                continue
            i = file_id(name)
            if unique and i in out:
                raise DatasetError(f"two {what}s share the id {i!r}: {out[i]} and {path}; keep one")
            out.setdefault(i, path)
        return out

    @staticmethod
    def _read_qa(path: Path) -> dict:
        try:
            with open_data_file(path, "QA file") as f:
                raw = f.read(MAX_QA_BYTES + 1)
            if len(raw) > MAX_QA_BYTES:
                raise DatasetError(f"QA file {path} is larger than {MAX_QA_BYTES >> 20} MiB; it cannot be a QA file")
            data = json.loads(raw.decode("utf-8"))
        except DatasetError:
            raise
        except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DatasetError(f"cannot read QA file {path}: {reason}; fix or remove it") from None
        if not isinstance(data, dict):
            raise DatasetError(f"QA file {path} must hold a JSON object with a 'questions' list")
        return data


def check_dataset(dataset: Sequence[Sample], strict: bool = True, progress: bool | None = None) -> dict:
    """Decode every image and mask fully and count what a user wants to know before a run
    (with a progress bar on stderr; ``progress`` None: when stderr is a terminal).

    A truncated or corrupt file is found here, not in the middle of a benchmark. With
    ``strict=False`` a target whose image or mask cannot be read is left out of the counts
    and one :class:`DatasetWarning` counts them (``"skipped"`` in the result).
    """
    # One entry per distinct mask: EarthReason shares one mask per image, while RRSIS-D
    # refs on the same image each have their own.
    targets: dict[tuple[str, str], Sample] = {}
    for s in dataset:
        targets.setdefault((s.image_id, str(s.mask_ref)), s)
    empty = 0
    widths, heights = [], []
    image_shapes: dict[Path, tuple[int, int] | DatasetError] = {}  # each image decoded once
    seen_images: set[str] = set()
    kept: list[Sample] = []
    problems: list[str] = []
    for s in progress_iter(targets.values(), len(targets), "checking", "mask", progress):
        try:
            if s.image_path not in image_shapes:
                try:
                    image_shapes[s.image_path] = (
                        decoded_shape(s.image_path) if s.image_reader is read_rgb else s.load_image().shape[:2]
                    )
                except DatasetError as exc:
                    image_shapes[s.image_path] = exc
            shape = image_shapes[s.image_path]
            if isinstance(shape, DatasetError):
                raise shape
            mask = s.load_mask()
            h, w = shape
            if mask.shape != (h, w):
                raise DatasetError(f"mask {s.mask_ref} is {mask.shape[1]}x{mask.shape[0]} but image {s.image_path} is {w}x{h}; they must match")
            if s.size is not None and tuple(s.size) != (w, h):
                raise DatasetError(f"image {s.image_path} decodes to {w}x{h} but its header says {s.size[0]}x{s.size[1]}; replace the file")
        except DatasetError as exc:
            if strict:
                raise DatasetError(f"{exc} (or check with --lenient to skip such entries)") from None
            problems.append(str(exc))
            continue
        kept.append(s)
        empty += int(not mask.any())
        if s.image_id not in seen_images:
            seen_images.add(s.image_id)
            widths.append(w)
            heights.append(h)
    if problems:
        warnings.warn(
            f"check: skipped {len(problems)} unreadable target(s); first: {problems[0]}",
            DatasetWarning,
            stacklevel=2,
        )
    kept_keys = {(s.image_id, str(s.mask_ref)) for s in kept}
    n_questions = sum(len(s.questions) for s in kept)
    return {
        "images": len(seen_images),
        "targets": len(kept),
        "samples": sum(1 for s in dataset if (s.image_id, str(s.mask_ref)) in kept_keys),
        "questions": n_questions,
        "empty_targets": empty,
        "skipped": len(problems),
        "width_range": (min(widths), max(widths)) if widths else None,
        "height_range": (min(heights), max(heights)) if heights else None,
    }
