"""SHA-256 of a file, streamed in 1 MB blocks: the fingerprint of checkpoints, policies and
data files recorded in run provenance."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: "str | Path") -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
