"""`sam2`: the frozen SAM2.1 segmenter of Think2Seg-RS, with the image encoded once.

Upstream (SPEC §4) scores each completion with ``SAM2ImagePredictor``: ``set_image`` (the
image encoder, ~95% of the cost) once **per completion**, then one ``predict`` per
instance with ``box``, ``point_coords``, ``point_labels`` (1 positive, 0 negative) and
``multimask_output=False``, keeping ``masks[0]`` and OR-ing the instances. This class
gives the same masks with

- :meth:`SAM2Segmenter.encode_batch`: one batched image-encoder forward for a list of
  images (as ``SAM2ImagePredictor.set_image_batch``), one :class:`SAM2Embedding` each;
- :meth:`SAM2Segmenter.decode`: every instance of every prompt set of one image in as few
  prompt-encoder / mask-decoder calls as possible. Instances are grouped by
  :attr:`GeometricPrompt.signature` (a batch needs equal point counts), large groups are
  chunked, the low-resolution logits are upsampled to the image size and thresholded
  exactly as ``SAM2ImagePredictor._predict`` does, and the instance masks are OR-ed per
  prompt set on the device.

Refinement (:meth:`SAM2Segmenter.decode_with_state`): an instance whose anchor matches one
of the last turn's gets that instance's low-resolution logits as the prompt encoder's mask
input — exactly ``SAM2ImagePredictor.predict(mask_input=low_res)`` with the third value
the previous ``predict`` returned ((1, S/4, S/4), clamped to ±32), ``multimask_output=False``;
the logits are kept in :attr:`InstanceState.data`. A turn costs one decoder call.

The model is frozen: eval mode, ``requires_grad=False``, every call under
``torch.inference_mode()``; bf16 autocast on CUDA (as upstream), fp32 on CPU.

Checkpoints are the official ``.pt`` files (``{"model": state_dict}``):
``checkpoint=PATH`` (a file, or a directory holding ``sam2.1_hiera_<size>.pt``), else the
directory in the ``T2S_SAM2_CHECKPOINTS`` environment variable. Random weights only with
``allow_random_weights=True`` (tests and timing runs: compute does not depend on values).
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError
from ..hashing import file_sha256
from ..prompt import GeometricPrompt
from .base import MaskState, PromptSet, Segmenter, empty_masks, instances_by_signature, previous_logits, states_from_instances
from .options import MAX_SEED, check_device, check_flag, check_int, check_real

log = logging.getLogger(__name__)

#: size name -> (hydra config name inside the sam2 package, official checkpoint file name)
SIZES: dict[str, tuple[str, str]] = {
    "tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"),
    "small": ("configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt"),
    "base_plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt"),
    "large": ("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
}
_ALIASES = {"t": "tiny", "s": "small", "b+": "base_plus", "base+": "base_plus", "base-plus": "base_plus",
            "b": "base_plus", "l": "large"}
#: where the official SAM2.1 checkpoints are published
CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/{file}"
CHECKPOINT_ENV = "T2S_SAM2_CHECKPOINTS"
DEFAULT_SIZE = "small"  # upstream's choice in every script
#: the largest model input side accepted (4x SAM2's 1024; encoder memory grows with its square)
MAX_IMAGE_SIZE = 4096
#: elements of upsampled float32 logits per step of decode (2**26: 256 MB)
_UPSAMPLE_BUDGET = 1 << 26
#: ``max_decode_batch`` when none is given, per device type. CPU: 1, measured -- one prompt
#: per decoder call gives upstream's masks bit for bit and was faster than batches (several
#: prompts per call move fp32 logits by ~1e-7, enough to flip a few pixels; see
#: docs/performance.md). CUDA: 64 until scripts/gpu_check_segmenters.py's sweep is run.
DEFAULT_DECODE_BATCH = {"cpu": 1, "cuda": 64}


def canonical_size(size: str) -> str:
    """``tiny``/``small``/``base_plus``/``large`` from a size name or alias (``t``, ``b+`` …)."""
    s = str(size).strip().lower()
    s = _ALIASES.get(s, s)
    if s not in SIZES:
        raise ConfigError(f"unknown SAM2.1 size {size!r}; valid: {', '.join(SIZES)}")
    return s


def resolve_checkpoint(size: str, checkpoint: "str | os.PathLike[str] | None") -> Path | None:
    """The checkpoint file for ``size``: ``checkpoint`` (a file, or a directory holding
    the official file name), else ``$T2S_SAM2_CHECKPOINTS/<file>``; None when neither is
    given. Raises :class:`CheckpointError` when the file named that way is missing."""
    file = SIZES[size][1]
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if path.is_dir():
            path = path / file
        where = f"looked for {path}"
    elif os.environ.get(CHECKPOINT_ENV):
        path = Path(os.environ[CHECKPOINT_ENV]).expanduser() / file
        where = f"looked for {path} (from ${CHECKPOINT_ENV})"
    else:
        return None
    if not path.is_file():
        raise CheckpointError(_missing_message(size, where))
    return path


def _missing_message(size: str, where: str) -> str:
    file = SIZES[size][1]
    return (
        f"SAM2.1 {size} checkpoint not found ({where}); download "
        f"{CHECKPOINT_URL.format(file=file)} (or run the sam2 repo's checkpoints/download_ckpts.sh) "
        f"and pass checkpoint=PATH or set {CHECKPOINT_ENV}=DIR"
    )


@dataclass
class SAM2Embedding:
    """One image's SAM2 features, as ``SAM2ImagePredictor._features`` holds them.

    Shapes (S = model image size, C = 256): ``image_embed`` (1, C, S/16, S/16);
    ``high_res_feats`` [(1, 32, S/4, S/4), (1, 64, S/8, S/8)]; ``orig_hw`` the (H, W) of
    the image the masks are returned at.
    """

    image_embed: torch.Tensor
    high_res_feats: list[torch.Tensor]
    orig_hw: tuple[int, int]


class SAM2Segmenter(Segmenter):
    """Frozen SAM2.1 (``sam2`` package) behind the encode-once, decode-batched interface.

    Arguments:
        size: ``tiny``, ``small`` (upstream's), ``base_plus`` or ``large``.
        checkpoint: an official ``sam2.1_hiera_<size>.pt`` file, or a directory holding it;
            default ``$T2S_SAM2_CHECKPOINTS/sam2.1_hiera_<size>.pt``.
        device: ``"cuda"``, ``"cuda:1"``, ``"cpu"`` … (default: cuda if available). Each
            trainer rank passes its own.
        allow_random_weights: build with random weights when no checkpoint is configured
            (tests, timings); otherwise that is a :class:`CheckpointError`.
        image_size: the model's input side (default 1024, SAM2's; tests use 256).
        compile: ``torch.compile`` the image encoder's and mask decoder's forward.
        dtype: ``"auto"`` (bf16 autocast on CUDA as upstream, fp32 on CPU), ``"bfloat16"``
            or ``"float32"``.
        max_decode_batch: instances per mask-decoder call (bounds the decoder's memory;
            upsampling to the image size is further split to ~256 MB steps). Default per
            device: :data:`DEFAULT_DECODE_BATCH` (1 on CPU: exact upstream masks).
        mask_threshold: logit threshold after upsampling (``SAM2ImagePredictor``'s 0.0).
        seed: torch seed for random weights (they are reproducible; the global RNG is
            left untouched).
    """

    name = "sam2"

    def __init__(
        self,
        size: str = DEFAULT_SIZE,
        checkpoint: "str | os.PathLike[str] | None" = None,
        device: "str | torch.device | None" = None,
        allow_random_weights: bool = False,
        image_size: int | None = None,
        compile: bool = False,
        dtype: str = "auto",
        max_decode_batch: int | None = None,
        mask_threshold: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.size = canonical_size(size)
        self.device = check_device(self.name, device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {str(self.device)!r} requested but CUDA is not available")
        if dtype == "auto":
            self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        elif dtype in ("bfloat16", "bf16", torch.bfloat16):
            self.dtype = torch.bfloat16
        elif dtype in ("float32", "fp32", torch.float32):
            self.dtype = torch.float32
        else:
            raise ConfigError(f"dtype must be 'auto', 'bfloat16' or 'float32', got {dtype!r}")
        n = self.name
        if image_size is not None and check_int(n, "image_size", image_size, 64, MAX_IMAGE_SIZE) % 32:
            raise ConfigError(f"sam2 option image_size={image_size} is invalid: give a multiple of 32 in [64, {MAX_IMAGE_SIZE}]")
        if max_decode_batch is None:
            max_decode_batch = DEFAULT_DECODE_BATCH.get(self.device.type, 64)
        self.max_decode_batch = check_int(n, "max_decode_batch", max_decode_batch, 1)
        self.mask_threshold = check_real(n, "mask_threshold", mask_threshold)
        self.compiled = check_flag(n, "compile", compile)
        seed = check_int(n, "seed", seed, 0, MAX_SEED)
        check_flag(n, "allow_random_weights", allow_random_weights)

        self.checkpoint = resolve_checkpoint(self.size, checkpoint)
        if self.checkpoint is None and not allow_random_weights:
            where = f"no checkpoint= given and ${CHECKPOINT_ENV} is not set; random weights need allow_random_weights=True"
            raise CheckpointError(_missing_message(self.size, where))
        self.random_weights = self.checkpoint is None
        # Read the file before building the model: a bad file fails fast.
        state = _read_official(self.checkpoint) if self.checkpoint is not None else None
        self._sha256: str | None = None

        from sam2.build_sam import build_sam2
        from sam2.utils.transforms import SAM2Transforms

        config, _ = SIZES[self.size]
        overrides = [f"++model.image_size={int(image_size)}"] if image_size is not None else []
        # Random weights come from a private, seeded RNG state: reproducible, and the
        # caller's global RNG is not consumed.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_sam2(config, ckpt_path=None, device="cpu", hydra_overrides_extra=overrides)
        if state is not None:
            _load_state(model, state, self.checkpoint, self.size)
            del state
        else:
            log.info("SAM2.1 %s built with random weights (allow_random_weights=True)", self.size)
        model = model.to(self.device).eval()
        model.requires_grad_(False)
        self.model = model
        self.image_size = int(model.image_size)
        s = self.image_size
        # SAM2ImagePredictor hard-codes these for 1024; they follow the stride-4/8/16 maps.
        self._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
        with _quiet_jit():
            self._transforms = SAM2Transforms(resolution=s, mask_threshold=self.mask_threshold)
        if self.compiled:
            # Compile the forward functions (not the modules) so parameter names, and hence
            # checkpoints and state_dicts, stay those of the official layout.
            model.image_encoder.forward = torch.compile(model.image_encoder.forward, dynamic=False)
            model.sam_mask_decoder.forward = torch.compile(model.sam_mask_decoder.forward, dynamic=True)

    # -- helpers --------------------------------------------------------------------------
    def _autocast(self):
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def predictor(self):
        """A ``SAM2ImagePredictor`` on this model (upstream's per-completion path), with
        its feature sizes matched to ``image_size``. Call it under :meth:`context`."""
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        with _quiet_jit():
            pred = SAM2ImagePredictor(self.model, mask_threshold=self.mask_threshold)
        pred._bb_feat_sizes = list(self._bb_feat_sizes)
        return pred

    def context(self):
        """``inference_mode`` + autocast, as every call of this class runs."""
        stack = ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(self._autocast())
        return stack

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, 3, S, S) float32 on the device: each (H, W, 3) uint8 image scaled to [0, 1],
        resized to S×S and normalised with ``SAM2Transforms``' scripted ops.

        The uint8 image is moved to the device first, so on CUDA the resize runs there
        (upstream resizes on the CPU); on CPU the arithmetic is exactly upstream's."""
        out = []
        for image in images:
            arr = np.asarray(image)
            if arr.ndim != 3 or arr.shape[2] != 3:
                raise ValueError(f"sam2 needs (H, W, 3) images, got shape {arr.shape}")
            t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.uint8)).to(self.device, non_blocking=True)
            # = torchvision ToTensor: CHW, contiguous, float / 255
            t = t.permute(2, 0, 1).contiguous().to(torch.float32).div(255)
            out.append(self._transforms.transforms(t))
        return torch.stack(out, dim=0)

    def encode_tensor(self, batch: torch.Tensor, orig_hw: Sequence[tuple[int, int]]) -> list[SAM2Embedding]:
        """Image encoder on a preprocessed (B, 3, S, S) batch -> B embeddings (no grad;
        call under :meth:`context`). Mirrors ``SAM2ImagePredictor.set_image_batch``."""
        b = batch.shape[0]
        backbone_out = self.model.forward_image(batch)
        _, vision_feats, _, _ = self.model._prepare_backbone_features(backbone_out)
        # Added to the lowest-resolution map during training on still images.
        if self.model.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + self.model.no_mem_embed
        # (HW, B, C) -> (B, C, H, W), finest level first
        feats = [
            feat.permute(1, 2, 0).reshape(b, -1, *fs)
            for feat, fs in zip(vision_feats[::-1], self._bb_feat_sizes[::-1])
        ][::-1]
        return [
            SAM2Embedding(
                image_embed=feats[-1][i : i + 1],
                high_res_feats=[f[i : i + 1] for f in feats[:-1]],
                orig_hw=(int(orig_hw[i][0]), int(orig_hw[i][1])),
            )
            for i in range(b)
        ]

    # -- interface ------------------------------------------------------------------------
    def encode_batch(self, images: Sequence[np.ndarray]) -> list[SAM2Embedding]:
        """One batched encoder forward for (H_i, W_i, 3) uint8 images -> one embedding each."""
        if not len(images):
            return []
        with self.context():
            batch = self.preprocess(images)
            return self.encode_tensor(batch, [np.asarray(im).shape[:2] for im in images])

    def decode(self, embedding: SAM2Embedding, prompt_sets: Sequence[PromptSet]) -> torch.Tensor:
        """(K, H, W) bool on the model's device: per prompt set, the OR of its instances'
        masks (an empty set, or one of empty instances, is all-False)."""
        return self._decode(embedding, prompt_sets, None)[0]

    def decode_with_state(
        self, embedding: SAM2Embedding, prompt_sets: Sequence[PromptSet], previous: Sequence[MaskState | None] | None = None
    ) -> tuple[torch.Tensor, list[MaskState]]:
        """:meth:`decode`, refining from the last turn: an instance whose
        :func:`~t2s_env.prompt.anchor` matches one of ``previous[k]``'s instances gets that
        instance's low-resolution logits as ``mask_input`` (as ``SAM2ImagePredictor.predict(
        mask_input=...)`` takes the third value it returned: (1, S/4, S/4), clamped to ±32),
        ``multimask_output=False``. Each instance's state keeps its own logits in ``data``.
        With ``previous`` None (or no match) the masks are exactly :meth:`decode`'s."""
        inputs = previous_logits(prompt_sets, previous, lambda t: tuple(t.shape[-2:]) == self._low_res_hw)
        masks, own = self._decode(embedding, prompt_sets, inputs, keep=True)
        return masks, states_from_instances(prompt_sets, masks, own)

    @property
    def _low_res_hw(self) -> tuple[int, int]:
        return (self.image_size // 4, self.image_size // 4)

    def _decode(self, embedding: SAM2Embedding, prompt_sets: Sequence[PromptSet],
                mask_inputs: "dict[tuple[int, GeometricPrompt], torch.Tensor] | None", keep: bool = False):
        """The OR-ed masks and, with ``keep``, each (set index, prompt)'s own (H, W) bool
        numpy mask and clamped (1, S/4, S/4) logits. Instances with a ``mask_inputs`` entry
        decode with it, in their own groups (the decoder batch needs equal inputs)."""
        h, w = embedding.orig_hw
        k = len(prompt_sets)
        groups = instances_by_signature(prompt_sets)
        own: dict[tuple[int, GeometricPrompt], tuple[np.ndarray, torch.Tensor]] = {}
        if not groups:
            return empty_masks(k, h, w, self.device), own
        if mask_inputs:
            split: dict[Any, list[tuple[int, GeometricPrompt]]] = {}
            for sig, items in groups.items():
                for j, p in items:
                    split.setdefault((sig, (j, p) in mask_inputs), []).append((j, p))
            batches = list(split.items())
        else:
            batches = [((sig, False), items) for sig, items in groups.items()]
        # Count of positive instance masks per pixel; OR = count > 0. (index_put_ with
        # accumulate has a deterministic CUDA implementation.)
        hits = torch.zeros((k, h, w), dtype=torch.int32, device=self.device)
        # Upsampled logits are n × H × W float32: bound them to ~256 MB per step.
        step = max(1, _UPSAMPLE_BUDGET // (h * w))
        with self.context():
            for (_, with_mask), items in batches:
                for start in range(0, len(items), self.max_decode_batch):
                    chunk = items[start : start + self.max_decode_batch]
                    masks_in = None
                    if with_mask:
                        masks_in = torch.stack([mask_inputs[jp].to(self.device, torch.float32) for jp in chunk])  # (n, 1, S/4, S/4)
                    low_res = self.decoder_logits(embedding, [p for _, p in chunk], masks_in)  # (n, 1, S/4, S/4)
                    index = torch.tensor([j for j, _ in chunk], dtype=torch.long, device=self.device)
                    for i in range(0, len(chunk), step):
                        # exactly SAM2ImagePredictor._predict: bilinear to (H, W), > threshold
                        up = self._transforms.postprocess_masks(low_res[i : i + step], (h, w))  # (m, 1, H, W)
                        binary = up[:, 0] > self.mask_threshold
                        hits.index_put_((index[i : i + step],), binary.to(torch.int32), accumulate=True)
                        if keep:
                            for r, jp in enumerate(chunk[i : i + step]):
                                if jp not in own:
                                    # SAM2ImagePredictor returns these (clamped) for the next predict
                                    logits = torch.clamp(low_res[i + r].float(), -32.0, 32.0).clone()
                                    own[jp] = (binary[r].cpu().numpy(), logits)
        return hits > 0, own

    def decoder_logits(self, emb: SAM2Embedding, prompts: Sequence[GeometricPrompt],
                       mask_input: torch.Tensor | None = None) -> torch.Tensor:
        """(n, 1, S/4, S/4) low-resolution mask logits of n instances with one signature, in
        one prompt-encoder + mask-decoder call (call under :meth:`context`); ``mask_input``
        (n, 1, S/4, S/4): the previous logits, as the predictor's ``mask_input``.

        Tokens per instance as ``SAM2ImagePredictor._predict`` builds them: the box's two
        corners (labels 2, 3) first, then positive (1) and negative (0) points; coordinates
        go through the predictor's transforms (normalise by (W, H), scale to S)."""
        h, w = emb.orig_hw
        coords, labels = prompt_tokens(prompts)  # (n, P, 2) float32, (n, P) int32 on CPU
        coords = torch.from_numpy(coords).to(self.device)
        labels = torch.from_numpy(labels).to(self.device)
        coords = self._transforms.transform_coords(coords, normalize=True, orig_hw=(h, w))
        model = self.model
        sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=mask_input)
        low_res, _, _, _ = model.sam_mask_decoder(
            image_embeddings=emb.image_embed,
            image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
            # one image for n prompts: the decoder repeats its embedding (as upstream's
            # predict(box=(N, 4)) does)
            repeat_image=len(prompts) > 1,
            high_res_features=emb.high_res_feats,
        )
        return low_res

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "config": SIZES[self.size][0],
            "checkpoint": str(self.checkpoint) if self.checkpoint is not None else None,
            "checkpoint_sha256": self.checkpoint_sha256(),
            "random_weights": self.random_weights,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "image_size": self.image_size,
            "compiled": self.compiled,
        }

    def checkpoint_sha256(self) -> str | None:
        """sha256 of the checkpoint file, computed once on first use."""
        if self.checkpoint is None:
            return None
        if self._sha256 is None:
            self._sha256 = file_sha256(self.checkpoint)
        return self._sha256


@contextmanager
def _quiet_jit():
    """SAM2Transforms calls ``torch.jit.script``, deprecated in recent torch: a warning
    about sam2's code that users cannot act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        yield


def prompt_tokens(prompts: Sequence[GeometricPrompt]) -> tuple[np.ndarray, np.ndarray]:
    """Point tokens of n same-signature instances: coords (n, P, 2) float32 in image
    pixels and labels (n, P) int32, box corners (2, 3) first, then positive (1) and
    negative (0) points -- the order ``SAM2ImagePredictor`` concatenates them in."""
    rows, labs = [], []
    for p in prompts:
        pts: list[tuple[float, float]] = []
        lab: list[int] = []
        if p.box is not None:
            x1, y1, x2, y2 = p.box
            pts += [(x1, y1), (x2, y2)]
            lab += [2, 3]
        pts += list(p.positive_points) + list(p.negative_points)
        lab += [1] * len(p.positive_points) + [0] * len(p.negative_points)
        rows.append(pts)
        labs.append(lab)
    return np.asarray(rows, dtype=np.float32).reshape(len(prompts), -1, 2), np.asarray(labs, dtype=np.int32).reshape(len(prompts), -1)


def upstream_predict(predictor, prompts: Sequence[GeometricPrompt], orig_hw: tuple[int, int]) -> np.ndarray:
    """Upstream's scoring of one completion on a predictor whose image is set: one
    ``predict`` per instance (box, points with labels 1/0, ``multimask_output=False``),
    ``masks[0]``, OR-ed -> (H, W) bool numpy. Reference for tests and timings."""
    out = np.zeros(orig_hw, dtype=bool)
    for p in prompts:
        if p.is_empty:
            continue
        pts = list(p.positive_points) + list(p.negative_points)
        labels = [1] * len(p.positive_points) + [0] * len(p.negative_points)
        masks, _, _ = predictor.predict(
            point_coords=np.asarray(pts, dtype=np.float32) if pts else None,
            point_labels=np.asarray(labels, dtype=np.int32) if pts else None,
            box=np.asarray(p.box, dtype=np.float32) if p.box is not None else None,
            multimask_output=False,
        )
        out |= masks[0] > 0
    return out


def _read_official(path: Path) -> dict[str, torch.Tensor]:
    """The state_dict of an official ``{"model": state_dict}`` file (``weights_only``, as
    ``build_sam2`` reads it); unreadable or foreign files are a :class:`CheckpointError`."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, pickle refused, truncated download ...
        raise CheckpointError(
            f"cannot read SAM2 checkpoint {path}: {_load_failure(e)}; download it again "
            f"(official files: {CHECKPOINT_URL.format(file='')})"
        ) from e
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise CheckpointError(f"{path} is not an official SAM2 checkpoint (expected a dict with a 'model' state_dict)")
    return obj["model"]


def _load_failure(e: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in one line, without torch's advice to
    retry with ``weights_only=False``: for a file that is not a plain state dict that
    advice means running whatever code the file holds."""
    text = str(e)
    if "Weights only load failed" in text:
        # torch's message: a paragraph of advice, then "WeightsUnpickler error: <cause>"
        cause = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else ""
        cause = next((line.strip() for line in cause.splitlines() if line.strip()), "")
        return f"not a plain tensor checkpoint, or corrupt ({cause or 'refused by the safe loader'})"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if "weights_only" in first:
        first = "refused by the safe loader"
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, size: str) -> None:
    """Strict load, as ``build_sam2`` does, with one-line :class:`CheckpointError` messages."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # equal keys, different shapes: another size's weights
        raise CheckpointError(
            f"{path} does not match SAM2.1 {size} (tensor shapes differ); is it the checkpoint of another size?"
        ) from e
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match SAM2.1 {size}: {len(missing)} missing keys (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}); is it the checkpoint of another size?"
        )
