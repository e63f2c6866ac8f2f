"""``t2s data export {verl,easyr1}``: a dataset split as the RL parquet rows those trainers read.

verl (``verl.utils.dataset.rl_dataset.RLHFDataset``) reads::

    data_source   "think2seg/<dataset>"
    prompt        the upstream messages (SPEC §2): system turn, then the user turn with the
                  image placeholder first; verl's convention is string content with
                  ``<image>`` where the image goes
    images        [{"bytes": PNG}] — the image in the protocol frame (840² LANCZOS by default),
                  so the policy sees exactly the pixels the reward is computed on
    ability       "reasoning_segmentation"
    reward_model  {"style": "rule", "ground_truth": <reference JSON, see refs.py>}
    extra_info    {"index", "split", "sample_id", "image_id", "question", "question_index"}

EasyR1 (``verl.utils.dataset.RLHFDataset`` of hiyouga/EasyR1) reads ``prompt`` (one string:
the user turn, ``<image>`` first), ``answer`` (the reference) and ``images``. EasyR1 builds
a single user turn, so the upstream system text cannot travel in its rows (see
docs/scale-out.md).

Rows are written to ``<out>.partial`` in row groups and renamed at the end: an interrupted
export leaves no half-written ``<out>``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Iterator

from t2s_env.errors import ConfigError, DatasetError
from t2s_env.instructions import SYSTEM_PROMPT, get_variant
from t2s_env.integrations.refs import GroundTruthRef
from t2s_env.framing import DEFAULT_IMAGE_SIZE, load_framed

FORMATS = ("verl", "easyr1")
ABILITY = "reasoning_segmentation"


def _png(image) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def reference(sample: Any, spec: str, root: str | None, image_size: int | None) -> GroundTruthRef:
    mask = sample.mask_ref
    mask_path = str(Path(mask).resolve()) if isinstance(mask, (str, os.PathLike)) else None
    return GroundTruthRef(
        dataset=spec, root=None if root is None else str(Path(root).resolve()), sample_id=sample.sample_id,
        image=str(Path(sample.image_path).resolve()) if mask_path else None, mask=mask_path, image_size=image_size,
    )


def verl_messages(question: str, variant: str = "bbox+2pos") -> list[dict[str, str]]:
    """The upstream messages in verl's string-content convention (``<image>`` placeholder)."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "<image>" + get_variant(variant).user_text(question)},
    ]


def iter_rows(fmt: str, spec: str, root: str | None, image_size: int | None = DEFAULT_IMAGE_SIZE,
              question: str = "random", seed: int = 0, variant: str = "bbox+2pos", limit: int | None = None) -> Iterator[dict[str, Any]]:
    from t2s_env.datasets import make_dataset, parse_dataset_spec

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    name, split = parse_dataset_spec(spec)
    spec = f"{name}:{split}"
    samples = make_dataset(spec, root=root, question=question, seed=seed)
    for index, sample in enumerate(samples):
        if limit is not None and index >= limit:
            return
        framed = load_framed(sample, image_size)  # names the image or mask file when unreadable
        ref = reference(sample, spec, root, image_size).to_json()
        images = [{"bytes": _png(framed.image)}]
        if fmt == "easyr1":
            yield {"prompt": "<image>" + get_variant(variant).user_text(sample.question), "answer": ref, "images": images}
            continue
        yield {
            "data_source": f"think2seg/{name}",
            "prompt": verl_messages(sample.question, variant),
            "images": images,
            "ability": ABILITY,
            "reward_model": {"style": "rule", "ground_truth": ref},
            "extra_info": {"index": index, "split": split, "sample_id": sample.sample_id, "image_id": sample.image_id,
                           "question": sample.question, "question_index": int(sample.question_index)},
        }


def _schema(fmt: str):
    import pyarrow as pa

    images = pa.list_(pa.struct([("bytes", pa.binary())]))
    if fmt == "easyr1":
        return pa.schema([("prompt", pa.string()), ("answer", pa.string()), ("images", images)])
    return pa.schema([
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("images", images),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", pa.struct([("index", pa.int64()), ("split", pa.string()), ("sample_id", pa.string()),
                                  ("image_id", pa.string()), ("question", pa.string()), ("question_index", pa.int64())])),
    ])


def export(fmt: str, spec: str, root: str | None, out: str | Path, row_group: int = 64, **kw: Any) -> int:
    """Write the rows to ``out`` (parquet); returns the row count."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("`t2s data export` needs pyarrow: pip install 'think2seg[export]'") from None
    out = Path(out)
    if not out.parent.is_dir():
        raise ConfigError(f"output folder {out.parent} does not exist; create it or choose another --out")
    if out.suffix != ".parquet":
        raise ConfigError(f"--out {out} must end in .parquet")
    schema = _schema(fmt)
    partial = out.with_name(out.name + ".partial")
    n = 0
    try:
        with pq.ParquetWriter(partial, schema) as writer:
            batch: list[dict[str, Any]] = []
            for row in iter_rows(fmt, spec, root, **kw):
                batch.append(row)
                n += 1
                if len(batch) >= row_group:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    batch = []
            if batch:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
        if n == 0:
            raise DatasetError(f"{spec} under {root} has no samples; nothing written to {out}")
        os.replace(partial, out)
    finally:
        if partial.exists():
            partial.unlink()
    return n


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of an exported parquet file (for checks and tests)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"parquet file {path} does not exist; write it with `t2s data export`")
    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise DatasetError(f"cannot read parquet file {path}: {exc}") from None
