"""One marked block of a markdown doc, replaced in place: the GPU checks write their tables
into docs/performance.md between their own marker comments, so that rerunning a check
replaces its table instead of appending another."""

from __future__ import annotations

from pathlib import Path


def replace_marked_block(doc: str, begin: str, end: str, body: str) -> None:
    """Replace the text between the markers ``begin`` and ``end`` in ``doc`` with ``body``
    (the markers and body are appended when the file has none); written to a temporary
    file, then renamed, so the doc is never half-written."""
    path = Path(doc)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = begin + "\n" + body.rstrip("\n") + "\n" + end
    i, j = text.find(begin), text.find(end)
    if i >= 0 and j > i:
        text = text[:i] + block + text[j + len(end):]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
