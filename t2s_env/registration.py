"""The environment ids, registered with gymnasium (which does not read entry points).

``import t2s_env`` registers them; a process that builds envs without importing the
package first (a spawned vector-env worker) calls :func:`register_envs`.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry


def register_envs() -> None:
    """Register every Think2Seg env id not yet in gymnasium's registry."""
    if "Think2Seg-EarthReason-v0" not in registry:
        register(
            id="Think2Seg-EarthReason-v0",
            entry_point="t2s_env.env:Think2SegEnv",
            kwargs={"dataset_spec": "earthreason", "segmenter": "sam2:small"},
        )
    if "Think2Seg-Synthetic-v0" not in registry:
        register(
            id="Think2Seg-Synthetic-v0",
            entry_point="t2s_env.env:Think2SegEnv",
            kwargs={"dataset_spec": "synthetic", "segmenter": "grabcut"},
        )
    # The refine form (docs/refine.md): the same envs with up to 3 look-and-refine turns.
    for env_id, spec, segmenter in (
        ("Think2Seg-Refine-Synthetic-v0", "synthetic", "grabcut"),
        ("Think2Seg-Refine-EarthReason-v0", "earthreason", "sam2:small"),
    ):
        if env_id not in registry:
            register(
                id=env_id,
                entry_point="t2s_env.env:Think2SegEnv",
                kwargs={"dataset_spec": spec, "segmenter": segmenter, "max_turns": 3, "refine_mode": "replace"},
            )
    # The referring benchmarks, evaluated as upstream does (test split, SAM2.1 small, the
    # bbox+2pos instruction; each dataset's {Question} per instructions.QUESTION_TEMPLATES).
    for env_id, spec in (
        ("Think2Seg-RRSISD-v0", "rrsisd"),
        ("Think2Seg-RefSegRS-v0", "refsegrs"),
        ("Think2Seg-RISBench-v0", "risbench"),
    ):
        if env_id not in registry:
            register(
                id=env_id,
                entry_point="t2s_env.env:Think2SegEnv",
                kwargs={"dataset_spec": spec, "split": "test", "segmenter": "sam2:small", "prompt_variant": "bbox+2pos"},
            )


__all__ = ["register_envs"]
