"""`QwenPrompter`: a Qwen2.5-VL checkpoint (e.g. Think2Seg-RS-3B/7B) as a Think2Seg agent.

``qwen:<path>`` is ``hf-vlm:<path>`` (:class:`think2seg.agents.hf_vlm.HFVLMPrompter`)
restricted to Qwen2.5-VL, with upstream's evaluation defaults spelled out.
"""

from __future__ import annotations

from typing import Any

from ..hf_vlm.prompter import DEFAULT_MODEL, HFVLMPrompter


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
