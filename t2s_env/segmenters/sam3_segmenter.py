"""`sam3`: SAM3's promptable tracker (transformers' ``Sam3TrackerModel``) as a segmenter.

The same geometric prompts as ``sam2`` (a box and/or positive/negative points per
instance, OR-ed per answer) and the same contract: :meth:`SAM3Segmenter.encode_batch`
runs the image encoder once per image, batched; :meth:`SAM3Segmenter.decode` decodes every
instance of every prompt set of one image in as few prompt-encoder / mask-decoder calls as
possible (instances grouped by signature, as a batch needs equal point counts), with
``multimask_output=False``; the low-resolution logits go through the processor's own
``post_process_masks`` (upsampled to the image size, thresholded at 0).

Weights load from a local directory written by ``save_pretrained`` (``config.json``,
weights, ``preprocessor_config.json``), e.g. a download of ``facebook/sam3``:
``checkpoint=DIR`` or the ``T2S_SAM3_CHECKPOINT`` environment variable. SAM3's weights
are under Meta's SAM License, not Apache-2.0 like SAM2's (README). Random weights only
with ``config=`` (a ``Sam3TrackerConfig``) and ``allow_random_weights=True`` (tests).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError
from ..prompt import GeometricPrompt
from .base import MaskState, PromptSet, Segmenter, empty_masks, instances_by_signature, previous_logits, states_from_instances
from .options import check_device, check_flag, check_int

CHECKPOINT_ENV = "T2S_SAM3_CHECKPOINT"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
#: config model_type values a tracker loads from (the tracker's own, or the full SAM3)
MODEL_TYPES = ("sam3_tracker", "sam3", "sam3_video", "sam3_tracker_video")


@dataclass
class SAM3Embedding:
    """One image's tracker features (the list ``get_image_embeddings`` returns, batch 1)
    and the (H, W) its masks are returned at."""

    features: list[torch.Tensor]
    orig_hw: tuple[int, int]


def check_checkpoint_dir(path: "str | os.PathLike[str]") -> Path:
    """A local SAM3 directory (config, weights, image processor), or a one-line
    CheckpointError naming the path and the fix."""
    p = Path(path).expanduser()
    hint = "download facebook/sam3 (hf download facebook/sam3 --local-dir DIR, after accepting its licence) and pass checkpoint=DIR"
    if not p.is_dir():
        raise CheckpointError(f"SAM3 checkpoint {path} is not a directory; {hint}")
    cfg = p / "config.json"
    if not cfg.is_file():
        raise CheckpointError(f"{path} has no config.json; it is not a SAM3 model directory ({hint})")
    try:
        model_type = json.loads(cfg.read_text()).get("model_type")
    except (ValueError, AttributeError) as exc:
        raise CheckpointError(f"{cfg} is not valid JSON ({exc})") from None
    if model_type not in MODEL_TYPES:
        raise CheckpointError(f"{path} holds a {model_type!r} model, not SAM3 (model_type {' or '.join(MODEL_TYPES[:2])})")
    if not any((p / f).is_file() for f in WEIGHT_FILES) and not any(p.glob("model-*.safetensors")):
        raise CheckpointError(f"{path} has no weights (model.safetensors); {hint}")
    if not (p / "preprocessor_config.json").is_file() and not (p / "processor_config.json").is_file():
        raise CheckpointError(f"{path} has no image processor (preprocessor_config.json); save the processor with the model")
    return p


class SAM3Segmenter(Segmenter):
    """Frozen SAM3 tracker behind the encode-once, decode-batched interface.

    Arguments:
        checkpoint: a local directory (``save_pretrained`` layout); default ``$T2S_SAM3_CHECKPOINT``.
        device: ``cuda``/``cpu``; default the first GPU when there is one.
        dtype: ``auto`` (bf16 on GPU, fp32 on CPU), ``bfloat16``, ``float32``.
        max_decode_batch: instances per mask-decoder call.
        config, allow_random_weights: a ``Sam3TrackerConfig`` with random weights (tests).
    """

    name = "sam3"

    def __init__(
        self,
        checkpoint: "str | os.PathLike[str] | None" = None,
        device: str | None = None,
        dtype: str = "auto",
        max_decode_batch: int = 64,
        config: Any = None,
        allow_random_weights: bool = False,
    ) -> None:
        self.max_decode_batch = check_int(self.name, "max_decode_batch", max_decode_batch, 1)
        check_flag(self.name, "allow_random_weights", allow_random_weights)
        from transformers import Sam3TrackerModel

        self.device = check_device(self.name, device or None)
        if dtype in (None, "auto"):
            self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        elif dtype in ("bfloat16", "float32", "float16"):
            self.dtype = getattr(torch, dtype)
        else:
            raise ConfigError(f"dtype must be auto, bfloat16, float16 or float32, got {dtype!r}")
        checkpoint = checkpoint if checkpoint is not None else os.environ.get(CHECKPOINT_ENV) or None
        self.random_weights = checkpoint is None
        if checkpoint is None:
            if config is None or not allow_random_weights:
                raise CheckpointError(
                    f"no SAM3 checkpoint: pass checkpoint=DIR (a local download of facebook/sam3) or set {CHECKPOINT_ENV}=DIR"
                )
            self.checkpoint = None
            self.model = Sam3TrackerModel(config)
            self.processor = _processor_for(config)
        else:
            self.checkpoint = check_checkpoint_dir(checkpoint)
            try:
                self.model = Sam3TrackerModel.from_pretrained(self.checkpoint)
                self.processor = _load_processor(self.checkpoint)
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise CheckpointError(f"cannot load SAM3 from {self.checkpoint}: {first}") from None
        self.model = self.model.to(self.device, self.dtype).eval().requires_grad_(False)
        size = self.processor.image_processor.size
        self.input_size = (int(size["height"]), int(size["width"]))

    # -- encode ---------------------------------------------------------------------------
    def encode_batch(self, images: Sequence[np.ndarray]) -> list[SAM3Embedding]:
        if not images:
            return []
        inputs = self.processor(images=[np.asarray(im) for im in images], return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.dtype)
        with torch.inference_mode():
            feats = self.model.get_image_embeddings(pixels)
        return [
            SAM3Embedding([f[i : i + 1] for f in feats], (int(im.shape[0]), int(im.shape[1])))
            for i, im in enumerate(images)
        ]

    # -- decode ---------------------------------------------------------------------------
    def decode(self, embedding: SAM3Embedding, prompt_sets: Sequence[PromptSet]) -> torch.Tensor:
        return self._decode(embedding, prompt_sets, None)[0]

    def decode_with_state(
        self, embedding: SAM3Embedding, prompt_sets: Sequence[PromptSet], previous: Sequence[MaskState | None] | None = None
    ) -> tuple[torch.Tensor, list[MaskState]]:
        """:meth:`decode`, refining from the last turn: an instance whose anchor matches one of
        ``previous[k]``'s gets that instance's low-resolution logits (``pred_masks``, kept in
        ``InstanceState.data``) as ``input_masks``, one instance per decoder call
        (transformers' tracker adds a mask embedding per image, not per object). With
        ``previous`` None (or no match) the masks are exactly :meth:`decode`'s."""
        inputs = previous_logits(prompt_sets, previous, lambda t: t.dim() == 3)
        masks, own = self._decode(embedding, prompt_sets, inputs, keep=True)
        return masks, states_from_instances(prompt_sets, masks, own)

    def _decode(self, embedding: SAM3Embedding, prompt_sets: Sequence[PromptSet], mask_inputs, keep: bool = False):
        h, w = embedding.orig_hw
        k = len(prompt_sets)
        groups = instances_by_signature(prompt_sets)
        own: dict[tuple[int, GeometricPrompt], tuple[np.ndarray, torch.Tensor]] = {}
        if not groups:
            return empty_masks(k, h, w, self.device), own
        hits = torch.zeros((k, h, w), dtype=torch.int32, device=self.device)
        chunks: list[tuple[list, torch.Tensor | None]] = []
        for items in groups.values():
            plain = [jp for jp in items if not mask_inputs or jp not in mask_inputs]
            chunks += [(plain[s : s + self.max_decode_batch], None) for s in range(0, len(plain), self.max_decode_batch)]
            chunks += [([jp], mask_inputs[jp]) for jp in items if mask_inputs and jp in mask_inputs]
        with torch.inference_mode():
            for chunk, mask_in in chunks:
                masks, low = self.instance_masks(embedding, [p for _, p in chunk], mask_in, return_logits=True)
                index = torch.tensor([j for j, _ in chunk], dtype=torch.long, device=self.device)
                hits.index_put_((index,), masks.to(self.device, torch.int32), accumulate=True)
                if keep:
                    for r, jp in enumerate(chunk):
                        own.setdefault(jp, (masks[r].cpu().numpy(), low[r].clone()))
        return hits > 0, own

    def instance_masks(self, emb: SAM3Embedding, prompts: Sequence[GeometricPrompt], mask_input: torch.Tensor | None = None,
                       return_logits: bool = False):
        """(n, H, W) bool masks of n same-signature instances in one decoder call (and with
        ``return_logits`` their (n, 1, h', w') float32 low-resolution logits); ``mask_input``
        (1, h', w'): one instance's previous logits, as ``input_masks``."""
        h, w = emb.orig_hw
        sy, sx = self.input_size[0] / h, self.input_size[1] / w  # image pixels -> model input pixels
        first = prompts[0]
        kw: dict[str, Any] = {}
        if first.box is not None:
            boxes = [[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for b in (p.box for p in prompts)]
            kw["input_boxes"] = torch.tensor([boxes], dtype=self.dtype, device=self.device)  # (1, n, 4)
        if first.positive_points or first.negative_points:
            pts = [[(x * sx, y * sy) for x, y in (*p.positive_points, *p.negative_points)] for p in prompts]
            labels = [[1] * len(p.positive_points) + [0] * len(p.negative_points) for p in prompts]
            kw["input_points"] = torch.tensor([pts], dtype=self.dtype, device=self.device)  # (1, n, P, 2)
            kw["input_labels"] = torch.tensor([labels], dtype=torch.int32, device=self.device)  # (1, n, P)
        if mask_input is not None:
            if len(prompts) != 1:
                raise ValueError("a mask input refines one instance per decoder call")
            kw["input_masks"] = mask_input[None].to(self.device, self.dtype)  # (1, 1, h', w')
        out = self.model(image_embeddings=emb.features, multimask_output=False, **kw)
        low = out.pred_masks[0].float()  # (n, 1, h', w')
        masks = self.processor.post_process_masks([low], [[h, w]], binarize=True)[0][:, 0].bool()  # (n, H, W)
        return (masks, low) if return_logits else masks

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "checkpoint": str(self.checkpoint) if self.checkpoint is not None else None,
            "random_weights": self.random_weights,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "input_size": list(self.input_size),
            "license": "SAM License (Meta)",
        }


def _load_processor(path: Path) -> Any:
    from transformers import Sam3ImageProcessor, Sam3TrackerProcessor

    try:
        return Sam3TrackerProcessor.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError):
        # facebook/sam3 ships the full model's processor: the tracker needs its image part
        return Sam3TrackerProcessor(image_processor=Sam3ImageProcessor.from_pretrained(path))


def _processor_for(config: Any) -> Any:
    """A processor for a model built from ``config``: input side from the vision config,
    low-resolution mask side 4× the coarsest feature map."""
    from transformers import Sam3ImageProcessor, Sam3TrackerProcessor

    side = int(config.vision_config.backbone_config.image_size)
    mask = int(config.vision_config.backbone_feature_sizes[0][0])
    ip = Sam3ImageProcessor(size={"height": side, "width": side}, mask_size={"height": mask, "width": mask})
    return Sam3TrackerProcessor(image_processor=ip)


def tiny_config(image_size: int = 112, patch_size: int = 14) -> Any:
    """A ~0.1 M-parameter ``Sam3TrackerConfig`` (random-weight tests)."""
    from transformers import Sam3TrackerConfig

    g = image_size // patch_size
    return Sam3TrackerConfig(
        vision_config=dict(
            model_type="sam3_vision_model",
            backbone_config=dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, image_size=image_size, patch_size=patch_size, window_size=4,
                                 global_attn_indexes=[1], pretrain_image_size=image_size),
            fpn_hidden_size=32, backbone_feature_sizes=[[4 * g, 4 * g], [2 * g, 2 * g], [g, g]]),
        prompt_encoder_config=dict(hidden_size=32, image_size=image_size, patch_size=patch_size),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
    )
