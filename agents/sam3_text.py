"""`sam3-text`: SAM3 given the question itself, with no LVLM (a baseline row).

SAM3 (``Sam3Model``) segments every instance of a *text* concept. This agent hands it the
dataset's question as that text, keeps the instances scoring at least ``threshold``, and
answers in the protocol format: per instance the box around its mask and positive points
at the mask's most interior pixels (negative points, when the variant asks for them, just
outside the box). No instance gives ``[]``. Scored with ``--segmenter sam3`` the row
stays within SAM3 end to end; compared with an LVLM prompter under the same segmenter, it
tells how much the reasoning adds (questions such as "where could ships be repaired?"
name no object, which is what a text-prompted segmenter cannot resolve).

    t2s bench --agents sam3-text:/models/sam3 --segmenter sam3:/models/sam3 ...

Loads from a local directory (a download of ``facebook/sam3``, Meta's SAM License).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from t2s_env import CheckpointError, ConfigError, GeometricPrompt, format_completion, get_variant
from t2s_env.coords import from_pixels, get_coord_frame

from .base import Agent


def interior_points(mask: np.ndarray, n: int) -> list[tuple[float, float]]:
    """``n`` pixel centres deep inside ``mask``: the distance-transform maximum, then the
    maximum outside a disk around the points taken so far."""
    import cv2

    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    points: list[tuple[float, float]] = []
    for _ in range(n):
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        if dist[y, x] <= 0 and points:  # nothing left: repeat the last point
            points.append(points[-1])
            continue
        points.append((float(x) + 0.5, float(y) + 0.5))
        radius = max(1, int(dist[y, x]))
        cv2.circle(dist, (int(x), int(y)), radius, 0.0, -1)
    return points


def prompt_for_mask(mask: np.ndarray, n_positive: int, n_negative: int, use_box: bool) -> GeometricPrompt | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    h, w = mask.shape
    x1, y1, x2, y2 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
    negatives = [(max(x1 - 1.0, 0.0), max(y1 - 1.0, 0.0)), (min(x2 + 1.0, float(w)), min(y2 + 1.0, float(h)))]
    return GeometricPrompt(
        box=(x1, y1, x2, y2) if use_box else None,
        positive_points=tuple(interior_points(mask, n_positive)),
        negative_points=tuple(negatives[:n_negative]),
    )


class SAM3TextAgent(Agent):
    """The question as SAM3's text prompt; instances become protocol prompts.

    Arguments:
        model: a local SAM3 directory (``save_pretrained`` layout), or a loaded ``Sam3Model``.
        processor: a loaded ``Sam3Processor`` when ``model`` is a loaded model.
        threshold: instance score to keep (SAM3's default 0.5); mask_threshold: mask logit cut.
        max_instances: at most this many instances, best first.
        coord_frame: the frame the answers are written in (``abs`` pixels by default).
        prompt_variant: which prompts each instance carries (box, points).
        device, dtype: as the other agents.
    """

    name = "sam3-text"
    arg_name = "model"

    def __init__(
        self,
        model: Any = None,
        processor: Any = None,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        max_instances: int = 8,
        coord_frame: str = "abs",
        prompt_variant: str = "bbox+2pos",
        device: str | None = None,
        dtype: str = "auto",
    ) -> None:
        import torch

        if not 0.0 <= float(threshold) <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {threshold}")
        if int(max_instances) < 1:
            raise ConfigError(f"max_instances must be >= 1, got {max_instances}")
        self.threshold, self.mask_threshold, self.max_instances = float(threshold), float(mask_threshold), int(max_instances)
        self.coord_frame = get_coord_frame(coord_frame).name
        self.variant = get_variant(prompt_variant)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = (torch.bfloat16 if self.device.type == "cuda" else torch.float32) if dtype in (None, "auto") else getattr(torch, str(dtype))
        if model is None:
            model = os.environ.get("T2S_SAM3_CHECKPOINT")
            if not model:
                raise CheckpointError("sam3-text needs a SAM3 directory: sam3-text:/path/to/sam3 (a local download of "
                                      "facebook/sam3) or T2S_SAM3_CHECKPOINT=DIR")
        if isinstance(model, (str, os.PathLike)):
            self.model_path = str(model)
            model, processor = _load(Path(model).expanduser())
        else:
            self.model_path = getattr(getattr(model, "config", None), "_name_or_path", type(model).__name__)
            if processor is None:
                raise ConfigError("pass processor=... together with a loaded Sam3Model")
        self.model = model.to(self.device, self.dtype).eval().requires_grad_(False)
        self.processor = processor

    def act(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> str:
        return self.act_batch([observation], [info])[0]

    def act_batch(self, observations: Sequence[Mapping[str, Any]], infos: Sequence[Mapping[str, Any]]) -> list[str]:
        import torch

        out = []
        for obs in observations:
            image = np.asarray(obs["image"])
            question = str(obs["question"])
            inputs = self.processor(images=image, text=question, return_tensors="pt")
            sizes = inputs["original_sizes"].tolist()
            inputs = {k: (v.to(self.device, self.dtype) if torch.is_floating_point(v) else v.to(self.device))
                      for k, v in inputs.items() if hasattr(v, "to")}
            with torch.inference_mode():
                result = self.model(**inputs)
            found = self.processor.post_process_instance_segmentation(
                result, threshold=self.threshold, mask_threshold=self.mask_threshold, target_sizes=sizes)[0]
            order = torch.argsort(found["scores"].float(), descending=True)[: self.max_instances].tolist()
            prompts = []
            for i in order:
                p = prompt_for_mask(found["masks"][i].cpu().numpy().astype(bool), self.variant.n_positive,
                                    self.variant.n_negative, self.variant.use_box)
                if p is not None:
                    prompts.append(p)
            h, w = image.shape[:2]
            prompts = from_pixels(prompts, self.coord_frame, w, h)
            out.append(format_completion(prompts, think=f"SAM3 text prompt: {question}"))
        return out

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model_path, "threshold": self.threshold,
                "mask_threshold": self.mask_threshold, "max_instances": self.max_instances,
                "coord_frame": self.coord_frame, "prompt_variant": self.variant.name}


def _load(path: Path) -> tuple[Any, Any]:
    from transformers import Sam3Model, Sam3Processor

    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} is not a SAM3 model directory (no config.json); pass a local download of facebook/sam3")
    try:
        return Sam3Model.from_pretrained(path), Sam3Processor.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot load SAM3 (model and processor with tokenizer) from {path}: {first}") from None


def tiny_sam3(image_size: int = 112, patch_size: int = 14) -> tuple[Any, Any]:
    """A ~0.3 M-parameter random ``Sam3Model`` and its processor, offline (tests)."""
    from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

    from .hf_vlm.tiny import bpe_tokenizer

    tok = bpe_tokenizer(("<|endoftext|>", "<|startoftext|>"), "", "<|endoftext|>", "<|endoftext|>", [])
    g = image_size // patch_size
    small = dict(num_attention_heads=2, intermediate_size=64)
    config = Sam3Config(
        vision_config=dict(
            backbone_config=dict(model_type="sam3_vit_model", hidden_size=32, num_hidden_layers=2, image_size=image_size,
                                 patch_size=patch_size, window_size=4, global_attn_indexes=[1],
                                 pretrain_image_size=image_size, **small),
            fpn_hidden_size=32, backbone_feature_sizes=[[4 * g, 4 * g], [2 * g, 2 * g], [g, g]]),
        text_config=dict(model_type="clip_text_model", vocab_size=len(tok), hidden_size=32, projection_dim=32,
                         num_hidden_layers=2, max_position_embeddings=32, bos_token_id=tok.convert_tokens_to_ids("<|startoftext|>"),
                         eos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"), pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"), **small),
        geometry_encoder_config=dict(hidden_size=32, num_layers=1, **small),
        detr_encoder_config=dict(hidden_size=32, num_layers=1, **small),
        detr_decoder_config=dict(hidden_size=32, num_layers=1, num_queries=8, **small),
        mask_decoder_config=dict(hidden_size=32, num_attention_heads=2),
    )
    ip = Sam3ImageProcessor(size={"height": image_size, "width": image_size}, mask_size={"height": 4 * g, "width": 4 * g})
    return Sam3Model(config), Sam3Processor(image_processor=ip, tokenizer=tok)
