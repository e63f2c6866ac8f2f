"""`Sample`: one (image, question, mask) triple, loaded lazily from disk.

Every image and mask file goes through :func:`open_data_file`, which refuses what is not a
regular file before anything reads it: a FIFO where an image should be would otherwise
block the reader forever, and a device file could stream without end.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..errors import DatasetError

#: Pillow modes of one-channel images wider than 8 bits (remote-sensing TIFFs, DEM-like
#: PNGs). ``convert("RGB")`` clips them at 255, which turns an ``I;16`` image all white, so
#: they are scaled to 8 bits by their own value range instead.
WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_data_file(path: Path, what: str) -> io.BufferedReader:
    """``path`` opened for binary reading, or a one-line :class:`DatasetError`.

    Opens with ``O_NONBLOCK`` and checks the opened descriptor, so a FIFO is refused
    without waiting for a writer and a file swapped between a check and the open cannot
    slip through. Empty files are refused here too: every decoder would fail on them
    with a less helpful message.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise DatasetError(f"missing {what} {path} (or a link to nowhere); restore the file") from None
    except PermissionError:
        raise DatasetError(f"cannot read {what} {path}: permission denied; make it readable") from None
    except IsADirectoryError:
        raise DatasetError(f"{what} {path} is a folder, not a file; replace it with the {what} file") from None
    except OSError as exc:
        raise DatasetError(f"cannot open {what} {path}: {_first_line(exc)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
            raise DatasetError(f"{what} {path} is {kind}, not a regular file; replace it with the {what} file")
        if st.st_size == 0:
            raise DatasetError(f"{what} {path} is empty (0 bytes); replace or remove the file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _decode(path: Path, what: str, convert: Callable[[Image.Image], Any] | None) -> Any:
    """Open ``path`` with Pillow and pass the image to ``convert`` after a full decode (or
    return its (width, height) from the header when ``convert`` is None)."""
    with open_data_file(path, what) as f:
        try:
            with Image.open(f) as im:
                if convert is None:
                    return im.size
                im.load()
                return convert(im)
        except Image.DecompressionBombError as exc:
            raise DatasetError(
                f"{what} {path} is too large to decode safely ({_first_line(exc)}); "
                f"if you trust it, raise PIL.Image.MAX_IMAGE_PIXELS or downscale the file"
            ) from None
        except DatasetError:
            raise
        except Exception as exc:  # Pillow's plugins raise OSError, SyntaxError, struct.error ... on bad files
            raise DatasetError(
                f"cannot read {what} {path}: {type(exc).__name__}: {_first_line(exc)}; replace or remove the file"
            ) from None


def image_size(path: Path, what: str = "image") -> tuple[int, int]:
    """(width, height) from the file header only."""
    return _decode(path, what, None)


def _wide_gray_to_uint8(im: Image.Image) -> np.ndarray:
    """A >8-bit one-channel image as (H, W) uint8, stretched linearly from its own
    min..max (non-finite values become 0); a constant image becomes all 0."""
    arr = np.asarray(im).astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        return np.zeros(arr.shape, dtype=np.uint8)
    lo, hi = float(arr[finite].min()), float(arr[finite].max())
    out = np.zeros(arr.shape, dtype=np.float64)
    if hi > lo:
        out[finite] = (arr[finite] - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in WIDE_GRAY_MODES:
        gray = _wide_gray_to_uint8(im)
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def _to_mask(im: Image.Image) -> np.ndarray:
    arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr[..., 0]
    return np.asarray(arr > 0)


def read_rgb(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, fully decoded (a truncated file raises).

    One-channel images of more than 8 bits are scaled to 8 bits by their value range.
    """
    return _decode(path, "image", _to_rgb)


def decoded_shape(path: Path) -> tuple[int, int]:
    """(height, width) of an image after a full decode, without converting its pixels: what
    ``data check`` needs to prove :func:`read_rgb` will succeed."""
    return _decode(path, "image", lambda im: (im.height, im.width))


def read_binary_mask(path: Path) -> np.ndarray:
    """A single-channel mask file as (H, W) bool, foreground = pixel > 0 (channel 0 if RGB)."""
    return _decode(path, "mask", _to_mask)


@dataclass(frozen=True)
class Sample:
    """One scored question about one image.

    ``sample_id`` is unique within a dataset split: the image id, or ``<image_id>#q<k>``
    when every question of an image is a sample. ``mask_ref`` is whatever the dataset's
    ``mask_reader`` needs (a path for EarthReason; an annotation for COCO-style data).
    """

    sample_id: str
    image_id: str
    question: str
    image_path: Path
    mask_ref: Any
    questions: tuple[str, ...] = ()
    answers: tuple[str, ...] = ()
    question_index: int = 0
    size: tuple[int, int] | None = None  # (width, height), when known without decoding
    mask_reader: Callable[[Any], np.ndarray] = field(default=read_binary_mask, repr=False, compare=False)
    image_reader: Callable[[Path], np.ndarray] = field(default=read_rgb, repr=False, compare=False)

    def load_image(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB at the file's own resolution."""
        return self.image_reader(self.image_path)

    def load_mask(self) -> np.ndarray:
        """(H, W) bool at the file's own resolution."""
        return self.mask_reader(self.mask_ref)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Image and mask, checked to have the same size."""
        image, mask = self.load_image(), self.load_mask()
        if image.shape[:2] != mask.shape:
            raise DatasetError(
                f"image {self.image_path} is {image.shape[1]}x{image.shape[0]} but its mask "
                f"{self.mask_ref} is {mask.shape[1]}x{mask.shape[0]}; they must match"
            )
        return image, mask
