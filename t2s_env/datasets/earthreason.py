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
from pathlib import Path
from typing import Sequence

from ..errors import DatasetError
from .base import QUESTION_CHOICES, SPLITS, DatasetWarning, SampleDataset, image_size
from .sample import Sample

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

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
        dirs = {k: base / k for k in ("images", "labels", "QAs")}
        for k, d in dirs.items():
            if not d.is_dir():
                raise DatasetError(f"missing folder {d}; an EarthReason split needs images/, labels/ and QAs/")
        images: dict[str, Path] = {}
        for p in sorted(dirs["images"].iterdir()):
            if p.suffix.lower() not in IMAGE_EXTENSIONS or not p.is_file():
                continue
            i = file_id(p.name)
            if i in images:
                raise DatasetError(f"two images share the id {i!r}: {images[i]} and {p}; keep one")
            images[i] = p
        labels = {file_id(p.name): p for p in dirs["labels"].glob("*.png")}
        qas = {file_id(p.name): p for p in dirs["QAs"].glob("*.json")}

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
            qa = self._read_qa(qas[i])
            questions = qa.get("questions") or []
            if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
                self._problem(f"{qas[i]}: 'questions' must be a list of strings", "bad QA file")
                continue
            if not questions:
                self._skip("no questions", f"{qas[i]} has no questions")
                continue
            size = image_size(images[i])
            msize = image_size(labels[i])
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

    @staticmethod
    def _read_qa(path: Path) -> dict:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read QA file {path}: {exc}; fix or remove it") from None
        if not isinstance(data, dict):
            raise DatasetError(f"QA file {path} must hold a JSON object with a 'questions' list")
        return data


def check_dataset(dataset: Sequence[Sample]) -> dict:
    """Read every image's mask and count what a user wants to know before a run."""
    # One entry per distinct mask: EarthReason shares one mask per image, while RRSIS-D
    # refs on the same image each have their own.
    targets: dict[tuple[str, str], Sample] = {}
    for s in dataset:
        targets.setdefault((s.image_id, str(s.mask_ref)), s)
    empty = 0
    widths, heights = [], []
    seen_images: set[str] = set()
    for s in targets.values():
        mask = s.load_mask()
        w, h = s.size or (mask.shape[1], mask.shape[0])
        if (mask.shape[1], mask.shape[0]) != (w, h):
            raise DatasetError(f"mask {s.mask_ref} is {mask.shape[1]}x{mask.shape[0]} but image {s.image_path} is {w}x{h}")
        empty += int(not mask.any())
        if s.image_id not in seen_images:
            seen_images.add(s.image_id)
            widths.append(w)
            heights.append(h)
    n_questions = sum(len(s.questions) for s in targets.values())
    return {
        "images": len(seen_images),
        "targets": len(targets),
        "samples": len(dataset),
        "questions": n_questions,
        "empty_targets": empty,
        "width_range": (min(widths), max(widths)) if widths else None,
        "height_range": (min(heights), max(heights)) if heights else None,
    }
