"""Per-family adapters: what differs between Hugging Face VLM families for Think2Seg.

An adapter says which ``model_type`` values belong to the family, the coordinate frame
its answers are written in (t2s_env.coords), the square side the model sees, whether the
processor must keep that side unresized (pixel answers need the model to see exactly the
observed frame), generation defaults, and the modules LoRA adapts in training.
The chat template is the checkpoint's own (``processor.apply_chat_template``).
"""

from __future__ import annotations

from dataclasses import dataclass

from t2s_env import ConfigError


@dataclass(frozen=True)
class Family:
    name: str
    label: str
    model_types: tuple[str, ...]
    coord_frame: str
    #: square side the image is given at; None: the processor's own resize (LLaVA's 336)
    image_size: int | None
    #: the processor must not resize that side (answers in pixels of what the model saw)
    keep_size: bool
    #: Qwen-style processors take pixel bounds (min/max pixels) rather than a fixed size
    qwen_processor: bool
    max_new_tokens: int = 2048
    #: LoRA target modules of the language model (regex, PEFT's target_modules)
    lora_target: str = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"
    #: a base checkpoint to name in messages and recipes
    example: str = ""


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        # Qwen2.5-VL answers in absolute pixels of the image it saw: 840 = 30·28 is kept.
        Family("qwen2_5_vl", "Qwen2.5-VL", ("qwen2_5_vl",), "abs", 840, True, True,
               example="Qwen/Qwen2.5-VL-3B-Instruct"),
        # Qwen3-VL answers in 0-1000 whatever the size (16-px patches merged 2×2: 840 -> 832).
        Family("qwen3_vl", "Qwen3-VL", ("qwen3_vl",), "rel1000", 840, False, True,
               example="Qwen/Qwen3-VL-2B-Instruct"),
        # InternVL3 in transformers' format (-hf checkpoints); upstream fed it 896 (2×2 tiles of 448).
        Family("internvl", "InternVL3", ("internvl",), "rel1000", 896, False, False,
               example="OpenGVLab/InternVL3-2B-hf"),
        # LLaVA-1.5 resizes to its own 336 and was trained on boxes as fractions of the image.
        Family("llava", "LLaVA-1.5", ("llava",), "rel1", None, False, False,
               example="llava-hf/llava-1.5-7b-hf"),
    )
}
BY_MODEL_TYPE = {t: f for f in FAMILIES.values() for t in f.model_types}


def get_family(name: str) -> Family:
    """A family by name (``qwen2_5_vl``, ``qwen3_vl``, ``internvl``, ``llava``) or model_type."""
    fam = FAMILIES.get(str(name)) or BY_MODEL_TYPE.get(str(name))
    if fam is None:
        raise ConfigError(f"unknown model family {name!r}; choose one of: {', '.join(FAMILIES)}")
    return fam


def known_families() -> str:
    return ", ".join(f"{f.name} ({f.label})" for f in FAMILIES.values())
