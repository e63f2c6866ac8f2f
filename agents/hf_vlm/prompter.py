"""`HFVLMPrompter`: any supported Hugging Face VLM (Qwen2.5-VL, Qwen3-VL, InternVL3, LLaVA-1.5)
as a Think2Seg agent (``t2s bench --agents hf-vlm:/path/to/checkpoint``), and `QwenPrompter`,
its Qwen2.5-VL-only alias (``qwen:<path>``, e.g. the Think2Seg-RS-3B/7B checkpoints)."""

from __future__ import annotations

import os
import warnings
from typing import Any, Mapping, Sequence

from t2s_env import ConfigError, build_messages, get_variant
from t2s_env.coords import get_coord_frame
from t2s_env.instructions import coord_variant

from ..base import Agent
from .families import Family, get_family
from .generation import generate_completions, to_pil
from .loading import (
    PROCESSOR_FILES,
    adapter_base,
    check_model_dir,
    family_of_dir,
    family_of_model,
    load_model,
    load_processor,
    prepare_processor,
    processed_size,
    resolve_dtype,
)

DEFAULT_MODEL = "RicardoString/Think2Seg-RS-3B"
#: image_size="auto": the family's own side
AUTO = "auto"


class HFVLMPrompter(Agent):
    """Zero-shot (or fine-tuned) VLM prompter for every supported family.

    The family comes from the checkpoint's ``config.json`` (``model_type``) and picks a
    small adapter (:mod:`.families`): the coordinate frame its answers are written in
    (Qwen2.5-VL pixels, Qwen3-VL and InternVL3 0–1000, LLaVA-1.5 0–1), the image side it
    is given (Qwen2.5-VL keeps the 840 frame unresized, InternVL3 gets 896 as upstream,
    LLaVA its processor's own), generation defaults. The chat template is the checkpoint's.
    Prompts are the env's ``info["messages"]`` (in the env's variant and frame), or
    ``build_messages(question)`` in this family's frame when absent. Generation is batched
    and left-padded.

    Arguments:
        model: a local directory, a hub id, or a loaded model; a PEFT adapter directory
            loads on its base model (merged).
        processor: a directory / hub id / loaded processor when the model path lacks one.
        family: expected family (``qwen2_5_vl``, ``qwen3_vl``, ``internvl``, ``llava``);
            default: read from the checkpoint. A contradiction is an error.
        coord_frame: the frame the model's answers are in; default the family's. Setting
            another one is the override that lets ``t2s bench`` score it in that frame.
        image_size: square side the image is given at (``auto``: the family's); None
            leaves images as observed.
        max_new_tokens, do_sample, temperature, top_p, top_k: greedy, 2048 tokens by default
            (upstream's evaluation).
        batch_size, device, dtype, attn_implementation, seed, prompt_variant: as their names say.
    """

    name = "hf-vlm"
    arg_name = "model"
    #: families this agent accepts (None: all)
    families: tuple[str, ...] | None = None

    def __init__(
        self,
        model: Any = DEFAULT_MODEL,
        processor: Any = None,
        family: str | None = None,
        coord_frame: str | None = None,
        max_new_tokens: int | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int | None = None,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str = "auto",
        attn_implementation: str | None = None,
        image_size: "int | str | None" = AUTO,
        seed: int | None = None,
        prompt_variant: str = "bbox+2pos",
    ) -> None:
        import torch

        if max_new_tokens is not None and int(max_new_tokens) < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        expected = get_family(family) if family is not None else None
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = resolve_dtype(dtype, str(self.device))
        if isinstance(model, str):
            self.model_path = os.path.expanduser(model)
            base = adapter_base(self.model_path) if os.path.isdir(self.model_path) else None
            fam = None
            if base is None:  # a model directory: check family and files before loading
                fam = check_model_dir(self.model_path, need_processor=processor is None, allowed=self.families)
            elif os.path.isdir(os.path.expanduser(base)):
                fam = family_of_dir(os.path.expanduser(base), self.families)
            if processor is None:
                processor = self.model_path if base is None or _has_processor(self.model_path) else base
            model = load_model(self.model_path, dtype=self.dtype, attn_implementation=attn_implementation,
                               allowed=self.families)
        else:
            self.model_path = getattr(getattr(model, "config", None), "_name_or_path", type(model).__name__)
            if processor is None:
                raise ConfigError("pass processor=... together with a loaded model")
        fam = family_of_model(model)
        if self.families is not None and fam.name not in self.families:
            raise ConfigError(f"{self.model_path} is a {fam.label} model; this agent takes {', '.join(self.families)}")
        if expected is not None and expected.name != fam.name:
            raise ConfigError(f"{self.model_path} holds a {fam.label} model, but family={expected.name} was given")
        self.family: Family = fam
        self.coord_frame = get_coord_frame(coord_frame or fam.coord_frame).name
        if isinstance(image_size, str) and image_size.lower() in ("none", "null", ""):
            image_size = None  # from a command line: keep images as observed
        if image_size == AUTO:
            image_size = fam.image_size
        if image_size is not None and (isinstance(image_size, bool) or not str(image_size).isdigit() or int(image_size) < 16):
            raise ConfigError(f"image_size must be an integer >= 16, auto or none, got {image_size!r}")
        self.image_size = None if image_size is None else int(image_size)
        if isinstance(processor, str):
            self.processor = load_processor(os.path.expanduser(processor), fam, self.image_size)
        else:
            self.processor = prepare_processor(processor, fam, self.image_size)
        self.max_new_tokens = int(max_new_tokens or fam.max_new_tokens)
        self.do_sample = bool(do_sample)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.top_k = top_k
        self.batch_size = int(batch_size)
        self.seed = seed
        self.prompt_variant = coord_variant(get_variant(prompt_variant), self.coord_frame).name
        self.model = model.to(self.device).eval()
        self._warned_resize = False
        self.last_stats: dict[str, float] = {}

    # -- Agent ---------------------------------------------------------------------------
    def act(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> str:
        return self.act_batch([observation], [info])[0]

    def _model_image(self, image: Any) -> Any:
        """The observation as the family sees it: pixel-frame families get it unresized
        (warned once when their processor would resize it), the others at their side."""
        h, w = image.shape[:2] if hasattr(image, "shape") else (image.height, image.width)
        if self.family.keep_size:
            if not self._warned_resize and processed_size(self.processor, h, w) != (h, w):
                warnings.warn(
                    f"the processor resizes {w}x{h} images to {processed_size(self.processor, h, w)[::-1]}: "
                    f"{self.family.label} answers in pixels of what it saw, so its prompts will be off; "
                    "use an observation side that is a multiple of 28 within the processor's pixel bounds",
                    stacklevel=3,
                )
                self._warned_resize = True
            return image
        if self.image_size and (h, w) != (self.image_size, self.image_size):
            from PIL import Image

            return to_pil(image).resize((self.image_size, self.image_size), Image.LANCZOS)
        return image

    def act_batch(self, observations: Sequence[Mapping[str, Any]], infos: Sequence[Mapping[str, Any]]) -> list[str]:
        import torch

        if not observations:
            return []
        images, messages = [], []
        for obs, info in zip(observations, infos):
            images.append(self._model_image(obs["image"]))
            messages.append(info.get("messages") or build_messages(obs["question"], self.prompt_variant))
        if self.seed is not None and self.do_sample:
            torch.manual_seed(self.seed)
        texts, stats = generate_completions(
            self.model, self.processor, images, messages, max_new_tokens=self.max_new_tokens,
            do_sample=self.do_sample, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
            batch_size=self.batch_size, device=self.device,
        )
        self.last_stats = stats
        return texts

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model_path,
            "family": self.family.name,
            "coord_frame": self.coord_frame,
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "temperature": self.temperature if self.do_sample else None,
            "top_p": self.top_p if self.do_sample else None,
            "batch_size": self.batch_size,
            "dtype": str(self.dtype).replace("torch.", ""),
            "image_size": self.image_size,
            "prompt_variant": self.prompt_variant,
        }


class QwenPrompter(HFVLMPrompter):
    """Zero-shot (or fine-tuned) Qwen2.5-VL prompter.

    It sends the exact upstream messages (the env's ``info["messages"]``, or
    ``build_messages(question)`` when absent) with the observation's image, which the
    processor keeps at its size (840×840 → 60×60 patches → 900 visual tokens), generates
    left-padded batches and returns only the new text. Answers are pixels (``abs``).

    Arguments: as :class:`HFVLMPrompter`; ``image_size`` is the square side the processor
    must keep (the protocol frame, 840).
    """

    name = "qwen"
    arg_name = "model"
    families = ("qwen2_5_vl",)

    def __init__(
        self,
        model: Any = DEFAULT_MODEL,
        processor: Any = None,
        max_new_tokens: int = 2048,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int | None = None,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str = "auto",
        attn_implementation: str | None = None,
        image_size: int = 840,
        seed: int | None = None,
        prompt_variant: str = "bbox+2pos",
        coord_frame: str | None = None,
    ) -> None:
        super().__init__(
            model, processor, family=None, coord_frame=coord_frame, max_new_tokens=max_new_tokens,
            do_sample=do_sample, temperature=temperature, top_p=top_p, top_k=top_k, batch_size=batch_size,
            device=device, dtype=dtype, attn_implementation=attn_implementation, image_size=image_size, seed=seed,
            prompt_variant=prompt_variant,
        )


def _has_processor(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, f)) for f in PROCESSOR_FILES)
