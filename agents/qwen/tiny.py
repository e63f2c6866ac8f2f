"""A tiny random Qwen2.5-VL, built offline, for tests and the CPU recipe.

    from think2seg.agents.qwen.tiny import build_tiny_qwen
    path = build_tiny_qwen("runs/tiny-qwen", image_size=112)

writes a Hugging Face directory (``config.json``, weights, tokenizer, processor, chat
template) that loads with ``AutoProcessor`` / ``AutoModelForImageTextToText`` exactly like a
real Qwen2.5-VL checkpoint, but has about 0.2 M parameters and generates in milliseconds
on a CPU. Nothing is downloaded:

- tokenizer: a byte-level BPE trained with ``tokenizers`` on a few sentences (including
  the protocol's instruction and answer strings) plus Qwen's special tokens;
- processor: ``Qwen2_5_VLProcessor`` whose image processor keeps ``image_size`` squares
  as they are (``min_pixels = max_pixels = image_size²``), like the 840 protocol frame;
- model: ``Qwen2_5_VLForConditionalGeneration`` from a small config, random weights.

The weights are random, so completions are mostly gibberish. To give GRPO a reward signal
in tests, the vocabulary also holds a few dozen *answer tokens*: each decodes to a complete
protocol answer (``<think> … </think>\n<answer>```json[…]```</answer>``) with a box on a
grid of the frame, or ``[]``. The random model's logits are nearly uniform, so sampled
completions contain one now and then: groups get different rewards (non-zero advantages),
while greedy decoding stays deterministic. This model tests plumbing (shapes, batching,
trl integration, scoring), not quality.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Qwen2.5-VL's special tokens, in Qwen's order (ids are assigned after the BPE vocab).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

#: A Qwen-style chat template: system/user/assistant turns between <|im_start|> and
#: <|im_end|>; an image part becomes <|vision_start|><|image_pad|><|vision_end|>, which the
#: processor expands to one <|image_pad|> per merged visual token.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = (
    "The harbour has two piers and a dry dock where ships could be repaired.",
    "Where could aircraft be parked? Find the apron next to the runway.",
    "A stadium, a storage tank, a bridge over the river, farmland and a dense residential block.",
    "<think> The target is the large rectangular basin on the left. </think>",
    '<answer>```json[{"bbox_2d": [310,360,567,586], "positive_points": [[434, 474], [450, 460]]}]```</answer>',
    "<answer>```json[]```</answer>",
    "0 1 2 3 4 5 6 7 8 9 10 25 50 100 250 500 840 [ ] { } , : \" ' ` ( ) . ? !",
)


def _corpus() -> list[str]:
    from t2s_env.instructions import SYSTEM_PROMPT, VARIANTS

    texts = list(_CORPUS) + [SYSTEM_PROMPT]
    texts += [v.user_text("where could ships be repaired?") for v in VARIANTS.values()]
    return texts


def answer_tokens(image_size: int = 112) -> list[str]:
    """Complete protocol answers, one token each: boxes on a 4×4 grid of the frame (plus
    2×2 and full-frame boxes) with two points inside, and the empty answer."""
    out = []
    for cells in (4, 2, 1):
        step = image_size // cells
        for gy in range(cells):
            for gx in range(cells):
                x1, y1 = gx * step, gy * step
                x2, y2 = x1 + step, y1 + step
                cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
                body = json.dumps([{"bbox_2d": [x1, y1, x2, y2], "positive_points": [[cx, cy], [cx + 1, cy + 1]]}])
                out.append(f"<think> cell {cells}:{gx},{gy} </think>\n<answer>```json{body}```</answer>")
    out.append("<think> nothing here </think>\n<answer>```json[]```</answer>")
    return out


def build_tiny_tokenizer(vocab_size: int = 512, image_size: int = 112):
    """A ``PreTrainedTokenizerFast`` with Qwen's special tokens, the answer tokens and the
    chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        extra_special_tokens={},
    )
    fast.add_tokens(answer_tokens(image_size))
    return fast


def build_tiny_processor(tokenizer, image_size: int = 112):
    """``Qwen2_5_VLProcessor`` that keeps ``image_size``-square images unresized."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    if image_size % 28:
        raise ValueError(f"image_size must be a multiple of 28 (14-px patches merged 2×2), got {image_size}")
    pixels = image_size * image_size
    image_processor = Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels)
    video_processor = Qwen2VLVideoProcessor()
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_model(tokenizer, seed: int = 0):
    """A ~0.2 M-parameter ``Qwen2_5_VLForConditionalGeneration`` with random weights."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=64,
            window_size=56,
            fullatt_block_indexes=[1],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    gc = model.generation_config
    gc.eos_token_id = ids["<|im_end|>"]
    gc.pad_token_id = ids["<|endoftext|>"]
    gc.bos_token_id = ids["<|endoftext|>"]
    gc.do_sample = False
    return model


def build_tiny_qwen(path: str | Path, image_size: int = 112, seed: int = 0, overwrite: bool = False) -> Path:
    """Write a tiny random Qwen2.5-VL (model, tokenizer, processor) to ``path``.

    An existing complete directory built with the same ``image_size`` is reused unless
    ``overwrite``. Returns the path.
    """
    path = Path(path)
    marker = path / "tiny_qwen.json"
    if not overwrite and marker.is_file():
        try:
            if json.loads(marker.read_text()).get("image_size") == image_size:
                return path
        except ValueError:
            pass
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(image_size=image_size)
    processor = build_tiny_processor(tokenizer, image_size)
    model = build_tiny_model(tokenizer, seed)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    marker.write_text(json.dumps({"image_size": image_size, "seed": seed, "params": model.num_parameters()}))
    return path


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Write a tiny random Qwen2.5-VL directory (offline).")
    p.add_argument("path", help="output directory")
    p.add_argument("--image-size", type=int, default=112, help="square image side kept by the processor (multiple of 28)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    out = build_tiny_qwen(args.path, args.image_size, args.seed, args.overwrite)
    print(f"wrote {out}")
    return 0
