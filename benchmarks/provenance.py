"""Provenance of a run: fingerprints of its model, segmenter weights and data, and its
*identity* (the hash of everything that changes its numbers).

run.yaml records all of it; the leaderboard keys its rows by the identity, so two runs
share a row only when they would compute the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from t2s_env.hashing import file_sha256

#: weight files hashed in a model folder
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")
#: a dataset whose referenced files total more than this is fingerprinted by names and
#: sizes only (hashing every image of a large split would cost more than the run)
MAX_HASHED_DATA_BYTES = 512 * 1024 * 1024
#: agent config keys that may name a model
MODEL_KEYS = ("model", "model_path", "checkpoint", "policy", "path", "model_name_or_path")

_SHA_CACHE: dict[tuple[str, int, int], str] = {}

#: libraries whose version can change a run's numbers: OpenCV (GrabCut), Pillow (JPEG
#: decoding, LANCZOS resizing to the view frame), numpy and torch (the segmenters' and
#: agents' arithmetic)
RESULT_LIBRARIES = ("numpy", "opencv", "pillow", "torch")


def library_versions() -> dict[str, str | None]:
    """The versions of :data:`RESULT_LIBRARIES` this process uses (None: not installed),
    as the modules report them."""
    import importlib

    out: dict[str, str | None] = {}
    for name, module in zip(RESULT_LIBRARIES, ("numpy", "cv2", "PIL", "torch")):
        try:
            out[name] = str(importlib.import_module(module).__version__)
        except ImportError:
            out[name] = None
    return out


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, streamed; memoised per (path, size, mtime) within a process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_sha256(path)
    return _SHA_CACHE[key]


def digest_of(obj: Any) -> str:
    """SHA-256 of a JSON-able object (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def path_fingerprint(path: Path) -> dict[str, Any]:
    """A weight file or a model folder: resolved path, config hash, sha256 of each weight
    file, and one sha256 over all of them."""
    path = path.expanduser().resolve()
    if path.is_file():
        sha = sha256_file(path)
        return {"path": str(path), "weights": {path.name: sha}, "sha256": sha}
    weights = {p.name: sha256_file(p) for p in sorted(path.iterdir()) if p.is_file() and p.suffix in WEIGHT_SUFFIXES}
    config = path / "config.json"
    out: dict[str, Any] = {"path": str(path), "weights": weights}
    if config.is_file():
        out["config_sha256"] = sha256_file(config)
    out["sha256"] = digest_of({"weights": weights, "config": out.get("config_sha256")})
    return out


def model_fingerprint(agent_config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The model behind an agent, if its config names one: a local path is hashed; any
    other name is recorded as a hub id with its revision (None when not pinned)."""
    for key in MODEL_KEYS:
        value = agent_config.get(key)
        if not isinstance(value, str) or not value:
            continue
        local = Path(os.path.expanduser(value))
        if local.exists():
            return {"source": "local", **path_fingerprint(local)}
        revision = agent_config.get("revision")
        return {"source": "hub", "id": value, "revision": revision,
                "resolved_commit": hub_cache_commit(value, revision or "main")}
    return None


def hub_cache_commit(repo_id: str, ref: str = "main") -> str | None:
    """The commit a hub id's ``ref`` points to in the local Hugging Face cache (what an
    offline load uses), or None when it is not cached."""
    if os.environ.get("HF_HUB_CACHE"):
        cache = Path(os.environ["HF_HUB_CACHE"])
    elif os.environ.get("HF_HOME"):
        cache = Path(os.environ["HF_HOME"]) / "hub"
    else:
        cache = Path.home() / ".cache" / "huggingface" / "hub"
    refs = cache / f"models--{repo_id.replace('/', '--')}" / "refs" / ref
    try:
        return refs.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def segmenter_fingerprint(describe: Mapping[str, Any]) -> dict[str, Any] | None:
    """The segmenter's weights (its checkpoint's sha256), when it has any."""
    for key in ("checkpoint", "checkpoint_path", "weights"):
        value = describe.get(key)
        if isinstance(value, str) and value and Path(value).expanduser().is_file():
            return {"path": str(Path(value).expanduser().resolve()), "sha256": sha256_file(Path(value).expanduser())}
    return None


def _sample_files(sample: Any) -> Iterable[Path]:
    for value in (getattr(sample, "image_path", None), getattr(sample, "mask_ref", None)):
        if isinstance(value, (str, Path)) and Path(value).is_file():
            yield Path(value)


def _synthetic_manifest(samples: Sequence[Any]) -> Path | None:
    """The synthetic set's manifest (``synthetic.json`` at its root), if these samples
    come from one."""
    image = getattr(samples[0], "image_path", None) if samples else None
    if image is None:
        return None
    for parent in Path(image).parents[:4]:
        if (parent / "synthetic.json").is_file():
            return parent / "synthetic.json"
    return None


def dataset_fingerprint(samples: Sequence[Any]) -> dict[str, Any]:
    """What the run was scored on: every sample's id and question, and each referenced
    file's name, size and (for sets up to :data:`MAX_HASHED_DATA_BYTES`) sha256. For the
    synthetic set, its manifest's hash too (it pins the generator version and source)."""
    files: dict[str, Path] = {}
    for s in samples:
        for f in _sample_files(s):
            files.setdefault(str(f), f)
    total = sum(f.stat().st_size for f in files.values())
    hashed = total <= MAX_HASHED_DATA_BYTES
    common = os.path.commonpath(list(files)) if files else ""
    entries = []
    for name in sorted(files):
        f = files[name]
        rel = os.path.relpath(name, common) if common else name
        entries.append([rel, f.stat().st_size, sha256_file(f) if hashed else None])
    questions = [[s.sample_id, getattr(s, "question", None)] for s in samples]
    out: dict[str, Any] = {
        "method": "sha256 of files" if hashed else "names and sizes (too large to hash)",
        "n_files": len(entries),
        "bytes": total,
        "files_sha256": digest_of(entries),
        "questions_sha256": digest_of(questions),
    }
    manifest = _synthetic_manifest(samples)
    if manifest is not None:
        out["synthetic_manifest_sha256"] = sha256_file(manifest)
        try:
            m = json.loads(manifest.read_text(encoding="utf-8"))
            out["synthetic_version"] = m.get("version")
        except (OSError, ValueError):
            pass
    out["sha256"] = digest_of({k: v for k, v in out.items() if k != "bytes"})
    return out


def run_identity(config: Mapping[str, Any]) -> str:
    """Hash of everything in a run.yaml that changes the run's numbers."""
    agent = config.get("agent") or {}
    segmenter = dict(config.get("segmenter") or {})
    fingerprints = config.get("fingerprints") or {}
    key = {
        "agent": {"spec": agent.get("spec"), "options": agent.get("options"), "config": agent.get("config")},
        "model": (fingerprints.get("model") or {}).get("sha256") or fingerprints.get("model"),
        "segmenter": segmenter,
        "segmenter_weights": (fingerprints.get("segmenter") or {}).get("sha256"),
        "dataset": config.get("dataset"),
        "data": (fingerprints.get("data") or {}).get("sha256"),
        "protocol": config.get("protocol"),
        "prompt_variant": config.get("prompt_variant"),
        "parser_mode": config.get("parser_mode"),
        "seed": config.get("seed"),
        "n": config.get("n_samples"),
        "libraries": config.get("libraries"),
    }
    if config.get("refine"):  # absent from one-shot runs: their identity is unchanged
        key["refine"] = config["refine"]
    return digest_of(key)[:16]


__all__ = ["RESULT_LIBRARIES", "dataset_fingerprint", "library_versions", "model_fingerprint", "path_fingerprint", "run_identity",
           "segmenter_fingerprint", "sha256_file"]
