"""The segmenter interface: encode an image once, decode many prompt sets, batched.

A *prompt set* is the list of instances of one answer; its mask is the OR of the instance
masks (upstream's rule). Every segmenter returns masks as a bool tensor on its own
``device`` so that IoU can be computed there without a host round trip.

Two verbs in the style of ``SAM2ImagePredictor`` sit on top: :meth:`set_image` keeps an
embedding, :meth:`predict` decodes prompt sets against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..prompt import GeometricPrompt, anchor

PromptSet = Sequence[GeometricPrompt]


@dataclass(frozen=True)
class InstanceState:
    """One instance as a refinement turn left it: the prompt it was decoded from, its own mask
    (H, W) bool, and what the segmenter keeps to refine it (SAM2/SAM3: its low-res logits)."""

    prompt: GeometricPrompt
    mask: np.ndarray = field(repr=False)
    data: Any = field(default=None, repr=False)


@dataclass(frozen=True)
class MaskState:
    """A prompt set's mask after a turn (``mask``: the OR of its instances) and each instance's
    state by :func:`t2s_env.prompt.anchor`, which the next turn's ``decode_with_state`` reads."""

    mask: np.ndarray = field(repr=False)
    instances: Mapping[tuple, InstanceState] = field(default_factory=dict, repr=False)


def previous_logits(
    prompt_sets: Sequence[PromptSet], previous: Sequence[MaskState | None] | None, fits: Callable[[torch.Tensor], bool]
) -> dict[tuple[int, GeometricPrompt], torch.Tensor]:
    """For SAM-style refinement: per (prompt set index, prompt), the previous turn's logits of
    the instance with the same :func:`~t2s_env.prompt.anchor`, where ``fits`` accepts them."""
    if previous is not None and len(previous) != len(prompt_sets):
        raise ValueError(f"previous has {len(previous)} states for {len(prompt_sets)} prompt sets; give one (or None) per set")
    inputs: dict[tuple[int, GeometricPrompt], torch.Tensor] = {}
    for j, prompts in enumerate(prompt_sets):
        prev = previous[j] if previous is not None else None
        for p in prompts if prev is not None else ():
            inst = prev.instances.get(anchor(p)) if not p.is_empty else None
            if inst is not None and isinstance(inst.data, torch.Tensor) and fits(inst.data):
                inputs[(j, p)] = inst.data
    return inputs


def states_from_instances(
    prompt_sets: Sequence[PromptSet], masks: torch.Tensor, own: Mapping[tuple[int, GeometricPrompt], tuple[np.ndarray, Any]]
) -> list[MaskState]:
    """Each prompt set's :class:`MaskState` from its OR mask and each instance's own
    ``(mask, data)`` (the first instance of an anchor wins)."""
    states = []
    for j, prompts in enumerate(prompt_sets):
        instances: dict[tuple, InstanceState] = {}
        for p in prompts:
            a = anchor(p)
            if not p.is_empty and a not in instances:
                mask, data = own[(j, p)]
                instances[a] = InstanceState(p, mask, data)
        states.append(MaskState(masks[j].cpu().numpy(), instances))
    return states


class Segmenter:
    """Base of all segmenters. Subclasses implement :meth:`encode_batch` and :meth:`decode`.

    Shapes: an image is (H, W, 3) uint8 RGB; ``decode`` returns (K, H, W) torch.bool on
    ``self.device`` for K prompt sets; an empty prompt set gives an all-False mask.
    """

    name: str = "segmenter"
    device: torch.device = torch.device("cpu")

    def encode_batch(self, images: Sequence[np.ndarray]) -> list[Any]:
        """One opaque embedding per image (the expensive part for SAM2)."""
        raise NotImplementedError

    def decode(self, embedding: Any, prompt_sets: Sequence[PromptSet]) -> torch.Tensor:
        """(K, H, W) bool masks, one per prompt set, for the image behind ``embedding``."""
        raise NotImplementedError

    def decode_with_state(
        self, embedding: Any, prompt_sets: Sequence[PromptSet], previous: Sequence[MaskState | None] | None = None
    ) -> tuple[torch.Tensor, list[MaskState]]:
        """Like :meth:`decode`, and each prompt set's :class:`MaskState` for the next turn.

        ``previous`` (one state or None per prompt set) is the last turn's: a segmenter that
        refines reads it (see docs/refine.md); this default ignores it and decodes afresh, one
        instance at a time so that every instance's own mask is kept."""
        masks = self.decode(embedding, prompt_sets)
        states = []
        for k, prompts in enumerate(prompt_sets):
            instances = {}
            for p in prompts:
                if not p.is_empty and anchor(p) not in instances:
                    own = self.decode(embedding, [[p]])[0].cpu().numpy()
                    instances[anchor(p)] = InstanceState(p, own)
            states.append(MaskState(masks[k].cpu().numpy(), instances))
        return masks, states

    def describe(self) -> dict[str, Any]:
        """What a results file records about this segmenter (name, size, checkpoint, sha256)."""
        return {"name": self.name}

    # -- conveniences ---------------------------------------------------------------------
    def encode(self, image: np.ndarray) -> Any:
        return self.encode_batch([image])[0]

    def set_image(self, image: np.ndarray) -> None:
        """Encode ``image`` (H, W, 3) uint8 and keep the embedding for :meth:`predict`."""
        self._embedding = self.encode(image)

    def predict(self, prompt_sets: Sequence[PromptSet]) -> np.ndarray:
        """(K, H, W) bool numpy masks for the image given to :meth:`set_image`."""
        if getattr(self, "_embedding", None) is None:
            raise RuntimeError("call set_image(image) before predict(...)")
        return self.decode(self._embedding, prompt_sets).cpu().numpy()

    def segment(self, image: np.ndarray, prompts: PromptSet) -> np.ndarray:
        """One image, one prompt set -> (H, W) bool numpy."""
        return self.decode(self.encode(image), [prompts])[0].cpu().numpy()


def empty_masks(k: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    return torch.zeros((k, height, width), dtype=torch.bool, device=device)


def instances_by_signature(prompt_sets: Sequence[PromptSet]) -> dict[tuple[bool, int, int], list[tuple[int, GeometricPrompt]]]:
    """The non-empty instances of every prompt set, as (set index, prompt), grouped by
    signature (has box, #pos, #neg): a promptable decoder's token layout, which must be
    equal within one decoder batch."""
    groups: dict[tuple[bool, int, int], list[tuple[int, GeometricPrompt]]] = {}
    for j, prompts in enumerate(prompt_sets):
        for p in prompts:
            if not p.is_empty:
                groups.setdefault(p.signature, []).append((j, p))
    return groups
