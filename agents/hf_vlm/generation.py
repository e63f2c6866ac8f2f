"""Batched, left-padded generation for every VLM family: chat messages + images in, new text out.

Shared by :class:`think2seg.agents.hf_vlm.HFVLMPrompter` and the training script's validation
pass, so that evaluation during training sees exactly what the benchmark sees.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def to_pil(image: Any):
    """(H, W, 3) uint8 array or PIL image -> RGB PIL image."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(arr).convert("RGB")


def conversation_images(images: Any) -> list[Any]:
    """One conversation's images as RGB PIL images: a single image, or a list/tuple of them
    in the order of the conversation's image parts (a multi-turn one shows one per turn)."""
    return [to_pil(im) for im in images] if isinstance(images, (list, tuple)) else [to_pil(images)]


def count_image_parts(messages: Sequence[Mapping[str, Any]]) -> int:
    """How many ``{"type": "image"}`` parts the messages hold (each takes one image)."""
    return sum(1 for m in messages if not isinstance(m["content"], str)
               for part in m["content"] if part.get("type") == "image")


def fill_image_placeholders(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copy of ``messages`` with plain-string content wrapped as text parts (what the Qwen
    chat templates expect); ``{"type": "image"}`` placeholders are left as they are."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        out.append({**m, "content": [dict(p) for p in content]})
    return out


def generation_kwargs(
    tokenizer: Any,
    model: Any,
    max_new_tokens: int,
    do_sample: bool,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
) -> dict[str, Any]:
    """Arguments for ``model.generate``: greedy unless ``do_sample``; stops at the
    tokenizer's and the model's eos ids; never emits the image pad token."""
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.insert(0, tokenizer.eos_token_id)
    kw: dict[str, Any] = {
        "max_new_tokens": int(max_new_tokens),
        "do_sample": bool(do_sample),
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": eos,
    }
    image_token = getattr(model.config, "image_token_id", None)
    if image_token is not None:
        kw["suppress_tokens"] = [image_token]
    if do_sample:
        kw["temperature"] = 1.0 if temperature is None else float(temperature)
        kw["top_p"] = 1.0 if top_p is None else float(top_p)
        kw["top_k"] = 0 if top_k is None else int(top_k)
    else:  # silence "temperature is set but do_sample=False" from the checkpoint's config
        kw.update(temperature=None, top_p=None, top_k=None)
    return kw


def generate_completions(
    model: Any,
    processor: Any,
    images: Sequence[Any],
    messages: Sequence[Sequence[Mapping[str, Any]]],
    max_new_tokens: int = 2048,
    do_sample: bool = False,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    batch_size: int = 8,
    device: Any = None,
) -> tuple[list[str], dict[str, float]]:
    """Generate one completion per (images, messages), ``batch_size`` at a time.

    ``images[i]`` is conversation i's image, or a list of its images, one per image part
    of ``messages[i]`` in order (checked for every conversation before generating).
    Returns the decoded new text (special tokens skipped) and counters:
    ``new_tokens`` (non-pad tokens generated), ``prompt_tokens`` and ``seconds``.
    """
    import time

    import torch

    if len(images) != len(messages):
        raise ValueError(f"{len(images)} images but {len(messages)} message lists")
    for i, (given, msgs) in enumerate(zip(images, messages)):
        n = len(given) if isinstance(given, (list, tuple)) else 1
        if n != count_image_parts(msgs):
            raise ValueError(f"conversation {i} has {count_image_parts(msgs)} image parts but {n} images; "
                             "give one image per {'type': 'image'} part, in order")
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    device = device if device is not None else next(model.parameters()).device
    gen_kw = generation_kwargs(tokenizer, model, max_new_tokens, do_sample, temperature, top_p, top_k)
    texts: list[str] = []
    stats = {"new_tokens": 0.0, "prompt_tokens": 0.0, "seconds": 0.0}
    eos = set(gen_kw["eos_token_id"]) | {tokenizer.pad_token_id}
    for start in range(0, len(images), max(1, int(batch_size))):
        chunk_msgs = messages[start : start + batch_size]
        chunk_imgs = [im for given in images[start : start + batch_size] for im in conversation_images(given)]
        prompts = [
            processor.apply_chat_template(fill_image_placeholders(m), add_generation_prompt=True, tokenize=False)
            for m in chunk_msgs
        ]
        inputs = processor(text=prompts, images=chunk_imgs or None, padding=True, return_tensors="pt")
        inputs = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in inputs.items()}
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**inputs, **gen_kw)
        if device is not None and str(device).startswith("cuda"):
            torch.cuda.synchronize(device)
        stats["seconds"] += time.perf_counter() - t0
        new = out[:, inputs["input_ids"].shape[1] :].cpu()
        stats["prompt_tokens"] += float(inputs["attention_mask"].sum())
        for row in new.tolist():
            n = 0
            for tok in row:
                n += 1
                if tok in eos:
                    break
            stats["new_tokens"] += n
        texts.extend(tokenizer.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False))
    return texts, stats
