"""`SampleDataset`: what every loader shares — a validated, indexed list of samples.

A loader subclasses it and implements :meth:`SampleDataset._index`; problems found while
indexing go through :meth:`_problem` (an error naming the file with ``strict=True``, a
counted skip otherwise) and end in one warning that counts the skips.
"""

from __future__ import annotations

import os
import reprlib
import stat
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import ConfigError, DatasetError
from .sample import Sample, image_size  # noqa: F401  (re-exported: loaders import it from here)

QUESTION_CHOICES = ("first", "random", "all")
SPLITS = ("train", "val", "test")


class DatasetWarning(UserWarning):
    """Samples were skipped while loading a dataset."""


def require_folder(folder: Path, what: str, hint: str = "") -> None:
    """A one-line :class:`DatasetError` unless ``folder`` is a folder this process can list.

    ``Path.is_dir()`` answers False for a folder it may not look into, which would report
    an unreadable folder as missing; stat tells the two apart.
    """
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        raise DatasetError(f"missing folder {folder} ({what}){'; expected ' + hint if hint else ''}") from None
    except PermissionError:
        raise DatasetError(f"cannot access folder {folder} ({what}): permission denied on it or a folder above it; make it readable") from None
    except OSError as exc:
        raise DatasetError(f"cannot access folder {folder} ({what}): {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise DatasetError(f"{folder} ({what}) is not a folder{'; expected ' + hint if hint else ''}")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise DatasetError(f"cannot list folder {folder} ({what}): permission denied; make it readable (chmod +rx)")


def list_folder(folder: Path, what: str) -> list[tuple[str, Path, bool]]:
    """(name, path, is a folder) of each entry of ``folder``, sorted by name; an unreadable
    folder is a :class:`DatasetError` that says so (never an empty listing)."""
    require_folder(folder, what)
    try:
        with os.scandir(folder) as it:
            entries = [(e.name, folder / e.name, _is_dir(e)) for e in it]
    except PermissionError:
        raise DatasetError(f"cannot list folder {folder} ({what}): permission denied; make it readable (chmod +rx)") from None
    except OSError as exc:
        raise DatasetError(f"cannot list folder {folder} ({what}): {exc.strerror or exc}") from None
    return sorted(entries)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


class SampleDataset(Sequence[Sample]):
    """The samples of one split, indexed and validated at construction.

    Subclasses set ``dataset`` (the registry name), ``unit`` (what a skip counts: image,
    ref, entry) and ``layout_hint`` (what ``--root`` must point at), and implement
    ``_index() -> list[Sample]``.
    """

    dataset = "dataset"
    unit = "image"
    layout_hint = "the dataset folder"

    def __init__(self, root: str | Path, split: str, question: str = "first", seed: int = 0,
                 strict: bool = True) -> None:
        if question not in QUESTION_CHOICES:
            raise ConfigError(f"question must be one of {', '.join(QUESTION_CHOICES)}, got {question!r}")
        self.root = Path(root)
        self.split = split
        self.question = question
        self.seed = seed
        self.strict = strict
        self.skipped: Counter[str] = Counter()
        self._notes: list[str] = []
        try:
            os.stat(self.root)
        except FileNotFoundError:
            raise DatasetError(f"dataset root {self.root} does not exist; pass --root DIR pointing at {self.layout_hint}") from None
        except OSError:
            pass  # not "missing": require_folder names the real cause
        require_folder(self.root, "dataset root", self.layout_hint)
        self.samples: list[Sample] = self._index()
        self._warn_skips()

    # -- Sequence -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):  # type: ignore[override]
        return self.samples[i]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @property
    def name(self) -> str:
        return f"{self.dataset}:{self.split}"

    def image_ids(self) -> list[str]:
        return sorted({s.image_id for s in self.samples})

    # -- for subclasses -------------------------------------------------------------------
    def _index(self) -> list[Sample]:
        raise NotImplementedError

    def _problem(self, message: str, kind: str) -> None:
        """A broken entry: raise (strict) or count it as a skip of ``kind``."""
        if self.strict:
            raise DatasetError(f"{message} (or load with strict=False to skip such {self.unit}s)")
        self._skip(kind, message)

    def _skip(self, kind: str, note: str) -> None:
        """An entry that is skipped whatever ``strict`` says (e.g. no questions)."""
        self.skipped[kind] += 1
        self._notes.append(note)

    def _warn_skips(self) -> None:
        if self.skipped:
            summary = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
            warnings.warn(
                f"{self.name} ({self.root}): skipped {sum(self.skipped.values())} {self.unit}(s) "
                f"({summary}); first: {self._notes[0]}",
                DatasetWarning,
                stacklevel=4,
            )


def short_repr(obj: Any, n: int = 120) -> str:
    """A bounded repr: a pickle can hold a structure that shares its parts (2**40 nodes
    in a few hundred bytes), whose full repr would never finish."""
    text = _REPR.repr(obj)
    return text if len(text) <= n else text[: n - 3] + "..."


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxstring, _REPR.maxother = 3, 6, 6, 6, 60, 60
