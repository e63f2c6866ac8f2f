"""Tiny random models of every supported family, built offline (tests, the CPU recipe).

    from think2seg.agents.hf_vlm.tiny import build_tiny
    path = build_tiny("qwen2_5_vl", "runs/tiny-qwen", image_size=112)

Each writes a Hugging Face directory (config, weights, tokenizer, processor, chat
template) that loads with ``AutoProcessor`` / ``AutoModelForImageTextToText`` exactly like
a real checkpoint of its family, with well under a million parameters, and generates in
milliseconds on a CPU. Nothing is downloaded:

- tokenizer: a byte-level BPE trained with ``tokenizers`` on a few sentences (including
  the protocol's instruction and answer strings) plus the family's special tokens;
- processor: the family's own processor class; Qwen2.5-VL's keeps ``image_size`` squares
  as they are (``min_pixels = max_pixels = image_size²``), like the 840 protocol frame;
- model: the family's ``...ForConditionalGeneration`` from a small config, random weights.

The weights are random, so completions are mostly gibberish. To give GRPO a reward signal
in tests, the vocabulary also holds a few dozen *answer tokens*: each decodes to a complete
protocol answer (``<think> … </think>\\n<answer>```json[…]```</answer>``) with a box on a
grid of the frame, in the family's coordinate frame, or ``[]``. The random model's logits
are nearly uniform, so sampled completions contain one now and then: groups get different
rewards (non-zero advantages), while greedy decoding stays deterministic. These models
test plumbing (shapes, batching, trl integration, scoring), not quality.

Families: ``qwen2_5_vl`` (pixels), ``qwen3_vl`` (0-1000), ``internvl`` (InternVL3 in
transformers' format, 0-1000), ``llava`` (LLaVA-1.5, 0-1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

#: tiny builders' families (a family's coordinate frame is in .families)
TINY_FAMILIES = ("qwen2_5_vl", "qwen3_vl", "internvl", "llava")

#: Qwen's special tokens, in Qwen's order (ids are assigned after the BPE vocab).
QWEN_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
_INTERNVL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>")
_LLAVA_TOKENS = ("<unk>", "<s>", "</s>", "<image>", "<pad>")

#: A Qwen-style chat template: system/user/assistant turns between <|im_start|> and
#: <|im_end|>; an image part becomes <|vision_start|><|image_pad|><|vision_end|>, which the
#: processor expands to one <|image_pad|> per merged visual token.
QWEN_CHAT_TEMPLATE = (
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

#: InternVL's chat template (Qwen2-style turns; an image part is <IMG_CONTEXT>, which the
#: processor expands to <img><IMG_CONTEXT>×N</img> per tile).
_INTERNVL_TEMPLATE = QWEN_CHAT_TEMPLATE.replace(
    "<|vision_start|><|image_pad|><|vision_end|>", "<IMG_CONTEXT>\n"
).replace("<|vision_start|><|video_pad|><|vision_end|>", "<video>\n")

#: LLaVA-1.5's conversation format: "USER: <image>\n... ASSISTANT:"; it has no system
#: turn of its own, so a system message is written before the first USER.
_LLAVA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{% for part in message['content'] %}{% if 'text' in part %}{{ part['text'] }} {% endif %}{% endfor %}"
    "{% elif message['role'] == 'user' %}USER: "
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n{% elif 'text' in part %}{{ part['text'] }}{% endif %}"
    "{% endfor %} "
    "{% else %}ASSISTANT: "
    "{% for part in message['content'] %}{% if 'text' in part %}{{ part['text'] }}{% endif %}{% endfor %}</s>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
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
#: LLaVA's turn words and relative coordinates (in every tokenizer but Qwen2.5-VL's, the first built)
_OTHER_FORMATS = "USER: ASSISTANT: 0.25 0.5 1000"


def training_corpus(other_formats: bool = True) -> list[str]:
    """The sentences the tiny tokenizers are trained on: a few remote-sensing ones, the
    protocol's system prompt, instruction and answer strings (plus ``_OTHER_FORMATS``)."""
    from t2s_env.instructions import SYSTEM_PROMPT, VARIANTS

    texts = list(_CORPUS) + [SYSTEM_PROMPT]
    texts += [v.user_text("where could ships be repaired?") for v in VARIANTS.values()]
    return texts + [_OTHER_FORMATS] if other_formats else texts


def answer_tokens(extent: float, decimals: int = 0, pixels: bool = False) -> list[str]:
    """Protocol answers on a grid of a frame ``extent`` units wide (pixels of the image
    for ``abs``, 1000 for ``rel1000``, 1 for ``rel1``), one token each: boxes on a 4×4,
    2×2 and 1×1 grid with two points inside, and the empty answer. ``pixels``: integer
    cells (floor division) with the second point one pixel off the centre (Qwen2.5-VL's)."""
    def fmt(v: float) -> Any:
        return round(v, decimals) if decimals else int(round(v))

    out = []
    for cells in (4, 2, 1):
        step = int(extent) // cells if pixels else extent / cells
        for gy in range(cells):
            for gx in range(cells):
                x1, y1, x2, y2 = gx * step, gy * step, (gx + 1) * step, (gy + 1) * step
                if pixels:
                    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
                    points = [[cx, cy], [cx + 1, cy + 1]]
                    box = [x1, y1, x2, y2]
                else:
                    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                    d = step / 50
                    points = [[fmt(cx), fmt(cy)], [fmt(cx + d), fmt(cy + d)]]
                    box = [fmt(x1), fmt(y1), fmt(x2), fmt(y2)]
                body = json.dumps([{"bbox_2d": box, "positive_points": points}])
                out.append(f"<think> cell {cells}:{gx},{gy} </think>\n<answer>```json{body}```</answer>")
    out.append("<think> nothing here </think>\n<answer>```json[]```</answer>")
    return out


def bpe_tokenizer(special: tuple[str, ...], template: str, eos: str, pad: str, answers: list[str],
                  extra: dict[str, str] | None = None, vocab_size: int = 512, corpus: Sequence[str] | None = None):
    """A left-padding ``PreTrainedTokenizerFast``: byte-level BPE trained on ``corpus``
    (default :func:`training_corpus`) with ``special`` tokens, then ``answers`` added."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(training_corpus() if corpus is None else corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=pad, padding_side="left",
                                   chat_template=template, extra_special_tokens=dict(extra or {}))
    fast.add_tokens(answers)
    return fast


def _text_config(tok, eos: str, pad: str, **extra: Any) -> dict[str, Any]:
    return dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                eos_token_id=tok.convert_tokens_to_ids(eos), pad_token_id=tok.convert_tokens_to_ids(pad), **extra)


def _finish(model, tok, eos: str, pad: str, bos: str | None = None):
    gc = model.generation_config
    gc.eos_token_id = tok.convert_tokens_to_ids(eos)
    gc.pad_token_id = tok.convert_tokens_to_ids(pad)
    if bos is not None:
        gc.bos_token_id = tok.convert_tokens_to_ids(bos)
    gc.do_sample = False
    return model


def build_qwen2_5_vl(image_size: int, seed: int):
    """(model, processor): ~0.2 M parameters; the processor keeps ``image_size`` squares."""
    import torch
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    if image_size % 28:
        raise ValueError(f"image_size must be a multiple of 28 (14-px patches merged 2×2), got {image_size}")
    tok = bpe_tokenizer(QWEN_TOKENS, QWEN_CHAT_TEMPLATE, "<|im_end|>", "<|endoftext|>",
                        answer_tokens(image_size, pixels=True), corpus=training_corpus(other_formats=False))
    pixels = image_size * image_size
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels),
                                    tokenizer=tok, video_processor=Qwen2VLVideoProcessor(),
                                    chat_template=QWEN_CHAT_TEMPLATE)
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config=_text_config(tok, "<|im_end|>", "<|endoftext|>", bos_token_id=ids["<|endoftext|>"],
                                 rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           window_size=56, fullatt_block_indexes=[1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    return _finish(model, tok, "<|im_end|>", "<|endoftext|>", bos="<|endoftext|>"), processor


def build_qwen3_vl(image_size: int, seed: int):
    import torch
    from transformers import (Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration,
                              Qwen3VLProcessor, Qwen3VLVideoProcessor)

    tok = bpe_tokenizer(QWEN_TOKENS, QWEN_CHAT_TEMPLATE, "<|im_end|>", "<|endoftext|>", answer_tokens(1000))
    # 16-px patches merged 2x2: a side is rounded to a multiple of 32 (rel1000 does not care)
    pixels = image_size * image_size
    ip = Qwen2VLImageProcessor(patch_size=16, merge_size=2, min_pixels=pixels // 2, max_pixels=pixels * 2)
    processor = Qwen3VLProcessor(image_processor=ip, tokenizer=tok, video_processor=Qwen3VLVideoProcessor(),
                                 chat_template=QWEN_CHAT_TEMPLATE)
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_TOKENS}
    config = Qwen3VLConfig(
        text_config=_text_config(tok, "<|im_end|>", "<|endoftext|>", head_dim=16,
                                 rope_parameters={"rope_type": "default", "rope_theta": 5e6,
                                                  "mrope_section": [2, 3, 3], "mrope_interleaved": True}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           patch_size=16, spatial_merge_size=2, num_position_embeddings=64,
                           deepstack_visual_indexes=[1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    return _finish(Qwen3VLForConditionalGeneration(config), tok, "<|im_end|>", "<|endoftext|>"), processor


def build_internvl(image_size: int, seed: int):
    import torch
    from transformers import (GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration,
                              InternVLProcessor, InternVLVideoProcessor)

    extra = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
             "video_token": "<video>"}
    tok = bpe_tokenizer(_INTERNVL_TOKENS, _INTERNVL_TEMPLATE, "<|im_end|>", "<|endoftext|>", answer_tokens(1000), extra)
    tile, patch = 32, 8  # tiles of 32 px, 8-px patches, pixel shuffle 0.5 -> 4 tokens per tile
    ip = GotOcr2ImageProcessor(size={"height": tile, "width": tile}, crop_to_patches=True, min_patches=1,
                               max_patches=4)
    seq = (tile // patch) ** 2 // 4
    processor = InternVLProcessor(image_processor=ip, tokenizer=tok, video_processor=InternVLVideoProcessor(),
                                  image_seq_length=seq, chat_template=_INTERNVL_TEMPLATE)
    config = InternVLConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=[tile, tile], patch_size=[patch, patch]),
        text_config=dict(model_type="qwen2", **_text_config(tok, "<|im_end|>", "<|endoftext|>")),
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=seq,
    )
    torch.manual_seed(seed)
    return _finish(InternVLForConditionalGeneration(config), tok, "<|im_end|>", "<|endoftext|>"), processor


def build_llava(image_size: int, seed: int):
    import torch
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tok = bpe_tokenizer(_LLAVA_TOKENS, _LLAVA_TEMPLATE, "</s>", "<pad>", answer_tokens(1, decimals=3),
                        {"image_token": "<image>"})
    side, patch = 32, 8  # LLaVA-1.5 resizes to its own 336; the tiny one to 32 -> 16 patches
    ip = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    processor = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=patch,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=_LLAVA_TEMPLATE)
    config = LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=side, patch_size=patch, projection_dim=32),
        text_config=dict(model_type="llama", **_text_config(tok, "</s>", "<pad>")),
        image_token_index=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    return _finish(LlavaForConditionalGeneration(config), tok, "</s>", "<pad>"), processor


#: build_tiny's record in a directory (family, image_size, seed, params): reused only when all but params match
MARKER = "tiny_model.json"
BUILDERS = {"qwen2_5_vl": build_qwen2_5_vl, "qwen3_vl": build_qwen3_vl, "internvl": build_internvl,
            "llava": build_llava}


def build_tiny(family: str, path: str | Path, image_size: int = 112, seed: int = 0, overwrite: bool = False) -> Path:
    """Write a tiny random model of ``family`` to ``path`` (reused when already built with
    the same family, ``image_size`` and ``seed``, unless ``overwrite``). Returns the path."""
    if family not in TINY_FAMILIES:
        raise ValueError(f"no tiny builder for family {family!r}; known: {', '.join(TINY_FAMILIES)}")
    path = Path(path)
    marker = path / MARKER
    wanted = {"family": family, "image_size": image_size, "seed": seed}
    if not overwrite and marker.is_file():
        try:
            built = json.loads(marker.read_text())
        except ValueError:
            built = None
        if isinstance(built, dict) and all(built.get(k) == v for k, v in wanted.items()):
            return path
    model, processor = BUILDERS[family](image_size, seed)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    marker.write_text(json.dumps({**wanted, "params": model.num_parameters()}))
    return path


def tiny_dir_for(family: str, path: str | Path) -> Path:
    """Where ``tiny:DIR`` builds ``family``: DIR itself when it is new or already holds
    that family, else ``DIR-<family>`` (so one recipe path serves every family)."""
    path = Path(path)
    cfg = path / "config.json"
    if not cfg.is_file():
        return path
    try:
        model_type = json.loads(cfg.read_text()).get("model_type")
    except (ValueError, AttributeError):
        model_type = None
    return path if model_type == family else path.with_name(f"{path.name}-{family}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Write a tiny random VLM directory of any family (offline).")
    p.add_argument("path", help="output directory")
    p.add_argument("--family", choices=TINY_FAMILIES, default="qwen2_5_vl")
    p.add_argument("--image-size", type=int, default=112,
                   help="square image side (Qwen2.5-VL keeps it unresized: a multiple of 28)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    try:
        out = build_tiny(args.family, args.path, args.image_size, args.seed, args.overwrite)
    except ValueError as exc:
        p.error(f"--image-size {args.image_size}: {exc}")
    print(f"wrote {out}")
    return 0
