"""Writers of small EarthReason-layout datasets for tests (no generator involved)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image


def write_sample(
    root: Path,
    split: str,
    sample_id: str,
    image: np.ndarray,
    mask: np.ndarray,
    questions: Sequence[str],
    answer: Sequence[str] = ("target",),
    image_ext: str = ".png",
) -> None:
    base = Path(root) / split
    for d in ("images", "labels", "QAs"):
        (base / d).mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(base / "images" / f"{sample_id}{image_ext}")
    Image.fromarray(mask.astype(np.uint8) * 255).save(base / "labels" / f"{sample_id}.png")
    (base / "QAs" / f"{sample_id}.json").write_text(
        json.dumps({"questions": list(questions), "answer": list(answer)})
    )


def rectangle_mask(height: int, width: int, rects: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """Union of integer boxes [x1, y1, x2, y2) (x2/y2 exclusive, the box convention)."""
    m = np.zeros((height, width), dtype=bool)
    for x1, y1, x2, y2 in rects:
        m[y1:y2, x1:x2] = True
    return m


def write_rectangle_dataset(root: Path, split: str = "val", n: int = 6, n_empty: int = 1, seed: int = 0,
                            size: int = 840) -> list[dict]:
    """``n`` square images of side ``size`` with 1–2 rectangle targets each; the first
    ``n_empty`` have no target. Returns the rectangles per id."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        rects = []
        if k >= n_empty:
            for _ in range(int(rng.integers(1, 3))):
                x1, y1 = (int(v) for v in rng.integers(0, size // 2, 2))
                w, h = (int(v) for v in rng.integers(size // 16, size // 3, 2))
                rects.append((x1, y1, x1 + w, y1 + h))
        mask = rectangle_mask(size, size, rects)
        sid = f"img{k:03d}"
        write_sample(root, split, sid, image, mask,
                     questions=[f"question {j} about image {k}" for j in range(3)],
                     answer=["target"] if rects else [])
        out.append({"id": sid, "rects": rects})
    return out


def coco_rle_string(counts: Sequence[int]) -> str:
    """Run lengths written in COCO's compressed RLE string format, with no validation, so
    tests can write what pycocotools would never produce (negative counts, wrong sums).

    Each count (from the fourth on, as the difference from the count two places before)
    is written as little-endian 5-bit groups, ``chr(48 + group)``, 0x20 = more groups
    follow, 0x10 of the last group = negative."""
    out = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            group = x & 0x1F
            x >>= 5
            more = not ((x == 0 and not group & 0x10) or (x == -1 and group & 0x10))
            out.append(chr(48 + (group | (0x20 if more else 0))))
    return "".join(out)
