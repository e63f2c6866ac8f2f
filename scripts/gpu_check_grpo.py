"""GPU check: one GRPO step of a 3B-shaped Qwen2.5-VL with SAM2.1-small scoring.

What it measures (random weights: compute and memory do not depend on the values):

1. One GRPO step at G=8 for one 840×840 image, as ``t2s train grpo`` runs it with trl:
   sampled generation (temperature 1, up to ``--max-new-tokens``), reward scoring, the
   reference model's log-probs (beta > 0), the policy forward/backward with gradient
   checkpointing, and an AdamW step. Once with **group scoring** (the environment's
   Scorer: the image is encoded once, all 8 answers decoded in one batch) and once with
   **per-completion scoring** (upstream: ``set_image`` for every completion), same run.
2. Peak GPU memory of each step and generation tokens/s.
3. The same step with LoRA r16 + frozen vision tower (no reference copy), the recipe of
   ``grpo_3b_lora_1gpu.yaml``, to check the single-24-GB-GPU estimate of docs/training.md.

A random model never writes a parseable answer, so the completions that are *scored* are
replaced by synthetic protocol answers (1–3 instances with a box and two points each);
generation itself is real (and runs to ``--max-new-tokens``, the worst case). The policy
is trained on the generated tokens. Single GPU, plain PyTorch AdamW (bf16 states) — the
recipes' ZeRO-3 shards weights, gradients and fp32 states over 2–4 GPUs instead.

Runs without trl or datasets (the GPU machine lacks them): it needs torch, transformers,
peft, numpy, pillow, opencv and, carried from here as wheels installed with
``pip install --no-index --no-deps --target .gpu_deps``: gymnasium, farama-notifications,
cloudpickle (if absent), json-repair, sam2 (built with ``SAM2_BUILD_CUDA=0``), hydra-core,
omegaconf, antlr4-python3-runtime==4.9.3, iopath, portalocker. Then::

    PYTHONPATH=.gpu_deps:. python scripts/gpu_check_grpo.py --out $OUT --doc docs/performance.md

About 3–5 minutes on an H100 (three generations of 8×1024 tokens dominate). A CPU smoke
run of the same code path: ``python scripts/gpu_check_grpo.py --tiny``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):  # run as a file: import the checkout as think2seg.*
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _checkout  # noqa: F401

#: Qwen/Qwen2.5-VL-3B-Instruct's config.json (architecture only; no download).
QWEN25_VL_3B_TEXT = dict(
    vocab_size=151936,
    hidden_size=2048,
    intermediate_size=11008,
    num_hidden_layers=36,
    num_attention_heads=16,
    num_key_value_heads=2,
    max_position_embeddings=128000,
    rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
    tie_word_embeddings=True,
)
QWEN25_VL_3B_VISION = dict(
    depth=32,
    hidden_size=1280,
    intermediate_size=3420,
    num_heads=16,
    out_hidden_size=2048,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    window_size=112,
    fullatt_block_indexes=[7, 15, 23, 31],
    tokens_per_second=2,
)
TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                         "mrope_section": [2, 3, 3]})
TINY_VISION = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, window_size=56,
                   fullatt_block_indexes=[1])
LORA_MODULES = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def log(msg: str) -> None:
    print(f"[gpu_check_grpo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- model, processor, data ---------------------------------------------------------------------

def build_processor(image_size: int):
    """The tiny builder's tokenizer (Qwen special tokens + chat template) and a Qwen2.5-VL
    processor pinned to ``image_size``; ids beyond its vocabulary are never decoded."""
    from think2seg.agents.qwen.tiny import build_tiny_processor, build_tiny_tokenizer

    return build_tiny_processor(build_tiny_tokenizer(image_size=image_size), image_size)


def build_policy(processor, tiny: bool, dtype: torch.dtype, device: torch.device):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in
           ("<|endoftext|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    text = dict(TINY_TEXT if tiny else QWEN25_VL_3B_TEXT)
    if tiny:
        text["vocab_size"] = len(tok)
    text.update(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(TINY_VISION if tiny else QWEN25_VL_3B_VISION),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=text.get("tie_word_embeddings", False),
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def make_scene(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    gt = np.zeros((size, size), bool)
    gt[size // 5 : size // 2, size // 4 : 3 * size // 5] = True
    return image, gt


def synthetic_answers(n: int, size: int, seed: int) -> list[str]:
    """Parseable protocol answers with 1–3 instances (a box and two points inside each)."""
    from t2s_env import GeometricPrompt, format_completion

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        prompts = []
        for _ in range(int(rng.integers(1, 4))):
            x1, y1 = (int(v) for v in rng.integers(0, size // 2, 2))
            w, h = (int(v) for v in rng.integers(size // 10, size // 2, 2))
            x2, y2 = min(size, x1 + w), min(size, y1 + h)
            pts = tuple((int(rng.integers(x1, x2)), int(rng.integers(y1, y2))) for _ in range(2))
            prompts.append(GeometricPrompt(box=(x1, y1, x2, y2), positive_points=pts))
        out.append(format_completion(prompts, think="synthetic"))
    return out


# -- one GRPO step -------------------------------------------------------------------------------

def _token_logps(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = (h @ weight.T).float()
    return torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1)


def completion_logps(model, inputs: dict[str, Any], n_completion: int) -> torch.Tensor:
    """(B, C) log-probs of the completion tokens; the LM head runs per sample under
    checkpointing so the (C, vocab) logits are never all alive (trl fuses it likewise)."""
    from torch.utils.checkpoint import checkpoint

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.model(**inputs, use_cache=False).last_hidden_state
    h = hidden[:, -n_completion - 1 : -1]
    targets = inputs["input_ids"][:, -n_completion:]
    weight = base.lm_head.weight
    rows = [checkpoint(_token_logps, h[i], weight, targets[i], use_reentrant=False) for i in range(h.size(0))]
    return torch.stack(rows)


def grpo_step(model, ref, optimizer, processor, scorer, image, gt, args, scoring: str, device) -> dict[str, float]:
    from t2s_env import build_messages

    from think2seg.agents.qwen.generation import generation_kwargs, to_pil

    t: dict[str, float] = {}
    G = args.num_generations
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()

    # 1. generation: G samples of one prompt (trl feeds the image G times too)
    text = processor.apply_chat_template(build_messages("where could ships be repaired?"), add_generation_prompt=True,
                                         tokenize=False)
    prompt = processor(text=[text] * G, images=[to_pil(image)] * G, padding=True, return_tensors="pt").to(device)
    gen_kw = generation_kwargs(processor.tokenizer, model, args.max_new_tokens, True, temperature=1.0, top_p=1.0)
    model.gradient_checkpointing_disable()
    model.eval()
    with torch.no_grad():
        out = model.generate(**prompt, **gen_kw)
    sync(device)
    t1 = time.perf_counter()
    P = prompt["input_ids"].shape[1]
    completion = out[:, P:]
    C = completion.shape[1]
    eos = torch.tensor(gen_kw["eos_token_id"], device=device)
    is_eos = torch.isin(completion, eos)
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full_like(is_eos[:, 0], C, dtype=torch.long))
    cmask = (torch.arange(C, device=device)[None, :] <= first[:, None]).long()
    t["generation_s"] = t1 - t0
    t["new_tokens"] = float(cmask.sum())
    t["prompt_tokens"] = float(P)

    # 2. reward: the scored texts are synthetic answers (a random model never parses)
    answers = synthetic_answers(G, image.shape[0], seed=int(args.seed))
    if scoring == "group":
        results = scorer.score(image, gt, answers)
    else:  # upstream: one encoder pass per completion
        results = [scorer.score(image, gt, [a])[0] for a in answers]
    sync(device)
    t2 = time.perf_counter()
    t["scoring_s"] = t2 - t1
    rewards = torch.tensor([r.reward for r in results], device=device, dtype=torch.float32)
    adv = (rewards - rewards.mean()) / (rewards.std() + 1e-4)

    # 3. reference log-probs, policy forward/backward, optimizer step
    full = {
        "input_ids": torch.cat([prompt["input_ids"], completion], 1),
        "attention_mask": torch.cat([prompt["attention_mask"], cmask], 1),
        "pixel_values": prompt["pixel_values"],
        "image_grid_thw": prompt["image_grid_thw"],
    }
    if "mm_token_type_ids" in prompt:
        full["mm_token_type_ids"] = torch.cat([prompt["mm_token_type_ids"], torch.zeros_like(completion)], 1)
    with torch.no_grad():
        if ref is None:  # LoRA: the reference is the base model, adapters off
            with model.disable_adapter():
                ref_logps = completion_logps(model, full, C)
        else:
            ref_logps = completion_logps(ref, full, C)
    sync(device)
    t3 = time.perf_counter()
    t["reference_s"] = t3 - t2
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "enable_input_require_grads") and ref is None:
        model.enable_input_require_grads()
    logps = completion_logps(model, full, C)
    d = ref_logps - logps
    per_token = -(torch.exp(logps - logps.detach()) * adv[:, None]) + args.beta * (torch.exp(d) - d - 1)
    m = cmask.to(per_token.dtype)
    loss = ((per_token * m).sum(1) / m.sum(1).clamp(min=1)).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sync(device)
    t4 = time.perf_counter()
    t["policy_update_s"] = t4 - t3
    t["step_s"] = t4 - t0
    t["loss"] = float(loss.detach())
    t["reward_mean"] = float(rewards.mean())
    if device.type == "cuda":
        t["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return t


def scoring_only(scorer, image, gt, n: int, seed: int, repeats: int, device) -> dict[str, float]:
    """Mean seconds to score one group both ways (steadier than one step's figure)."""
    answers = synthetic_answers(n, image.shape[0], seed)
    out = {}
    for mode in ("group", "per_completion"):
        times = []
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            if mode == "group":
                scorer.score(image, gt, answers)
            else:
                [scorer.score(image, gt, [a]) for a in answers]
            sync(device)
            times.append(time.perf_counter() - t0)
        out[mode] = float(np.mean(times))
    return out


# -- report --------------------------------------------------------------------------------------

def markdown(res: dict[str, Any]) -> str:
    g, p = res["group"], res["per_completion"]
    lines = [
        f"## GRPO step, {res['model']} + {res['segmenter']} (random weights) on {res['device_name']}",
        "",
        f"`scripts/gpu_check_grpo.py`, {res['date']}: one prompt, G = {res['G']}, {res['image_size']}² image "
        f"({res['prompt_tokens']:.0f} prompt tokens incl. {res['visual_tokens']} visual), up to "
        f"{res['max_new_tokens']} new tokens, {res['dtype']}, gradient checkpointing, beta {res['beta']} "
        "(reference model), AdamW; torch "
        f"{res['torch']}, transformers {res['transformers']}.",
        "",
        "| | group scoring (env Scorer) | per-completion scoring (upstream) |",
        "|---|---|---|",
        f"| **GRPO step** | **{g['step_s']:.2f} s** | **{p['step_s']:.2f} s** |",
        f"| generation | {g['generation_s']:.2f} s | {p['generation_s']:.2f} s |",
        f"| reward scoring (SAM2) | {g['scoring_s'] * 1000:.0f} ms | {p['scoring_s'] * 1000:.0f} ms |",
        f"| reference log-probs | {g['reference_s']:.2f} s | {p['reference_s']:.2f} s |",
        f"| policy forward/backward + AdamW | {g['policy_update_s']:.2f} s | {p['policy_update_s']:.2f} s |",
        f"| peak GPU memory | {g.get('peak_gib', float('nan')):.1f} GiB | {p.get('peak_gib', float('nan')):.1f} GiB |",
        "",
        f"- Scoring one group of {res['G']} alone (mean of {res['scoring_repeats']}): group "
        f"{res['scoring_only']['group'] * 1000:.0f} ms vs per-completion "
        f"{res['scoring_only']['per_completion'] * 1000:.0f} ms "
        f"({res['scoring_only']['per_completion'] / max(res['scoring_only']['group'], 1e-9):.1f}×).",
        f"- Generation: {g['new_tokens'] / g['generation_s']:.0f} tokens/s "
        f"({g['new_tokens']:.0f} new tokens in {g['generation_s']:.1f} s, HF `generate`, batch {res['G']}).",
    ]
    if "lora" in res:
        lo = res["lora"]
        lines.append(
            f"- LoRA r16 + frozen vision (grpo_3b_lora_1gpu recipe, no reference copy): step {lo['step_s']:.2f} s, "
            f"peak {lo.get('peak_gib', float('nan')):.1f} GiB (budget: one 24 GB GPU)."
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="CPU smoke run: tiny model, 112 px, 16 tokens, box segmenter")
    p.add_argument("--num-generations", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p.add_argument("--image-size", type=int, default=840)
    p.add_argument("--segmenter", default=None, help="default sam2:small (box for --tiny on a CPU)")
    p.add_argument("--sam-image-size", type=int, default=None, help="SAM2 input size (default 1024)")
    p.add_argument("--beta", type=float, default=0.001)
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--no-lora", action="store_true", help="skip the LoRA step")
    p.add_argument("--scoring-repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_check_grpo.{md,json} (default $OUT)")
    p.add_argument("--doc", default=None, help="append the markdown section to this file (docs/performance.md)")
    args = p.parse_args(argv)
    if args.tiny:
        args.image_size, args.max_new_tokens = 112, min(args.max_new_tokens, 16)
    if args.segmenter is None:
        args.segmenter = "box" if args.tiny and not torch.cuda.is_available() else "sam2:small"

    import transformers

    from t2s_env import Scorer, make_segmenter

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    log(f"device {name}, torch {torch.__version__}, transformers {transformers.__version__}")

    t0 = time.perf_counter()
    processor = build_processor(args.image_size)
    model = build_policy(processor, args.tiny, dtype, device)
    n_params = sum(p.numel() for p in model.parameters())
    ref = copy.deepcopy(model).eval().requires_grad_(False) if args.beta > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, fused=device.type == "cuda")
    seg_opts: dict[str, Any] = {}
    if args.segmenter.startswith("sam2"):
        seg_opts = {"allow_random_weights": True, "device": str(device)}
        if args.sam_image_size:
            seg_opts["image_size"] = args.sam_image_size
    scorer = Scorer(make_segmenter(args.segmenter, **seg_opts))
    image, gt = make_scene(args.image_size, args.seed)
    log(f"built policy ({n_params / 1e9:.2f} B params), reference, {args.segmenter} in {time.perf_counter() - t0:.1f} s")

    # warm-up: kernels, allocator, SAM2 compile paths (short generation)
    warm = argparse.Namespace(**{**vars(args), "max_new_tokens": 4})
    grpo_step(model, ref, opt, processor, scorer, image, gt, warm, "group", device)
    log("warm-up step done")

    res: dict[str, Any] = {
        "device_name": name, "G": args.num_generations, "max_new_tokens": args.max_new_tokens,
        "torch": torch.__version__, "transformers": transformers.__version__, "params": n_params,
        "model": "tiny Qwen2.5-VL" if args.tiny else "Qwen2.5-VL-3B shape",
        "segmenter": f"SAM2.1-{args.segmenter.partition(':')[2]}" if args.segmenter.startswith("sam2") else args.segmenter,
        "date": time.strftime("%Y-%m-%d"), "image_size": args.image_size, "beta": args.beta,
        "visual_tokens": (args.image_size // 28) ** 2, "dtype": str(dtype).replace("torch.", ""),
        "scoring_repeats": args.scoring_repeats,
    }
    for scoring in ("group", "per_completion"):
        res[scoring] = grpo_step(model, ref, opt, processor, scorer, image, gt, args, scoring, device)
        log(f"{scoring}: " + ", ".join(f"{k} {v:.3f}" for k, v in res[scoring].items()))
    res["prompt_tokens"] = res["group"]["prompt_tokens"]
    res["scoring_only"] = scoring_only(scorer, image, gt, args.num_generations, args.seed, args.scoring_repeats, device)
    log(f"scoring only: {res['scoring_only']}")

    if not args.no_lora:
        from peft import LoraConfig, get_peft_model

        del ref, opt
        if device.type == "cuda":  # a fresh base model; the full fine-tune's memory is freed first
            del model
            torch.cuda.empty_cache()
            base = build_policy(processor, args.tiny, dtype, device)
        else:
            base = model
        visual = base.model.visual
        visual.requires_grad_(False)
        lora = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=LORA_MODULES,
                                               task_type="CAUSAL_LM"), autocast_adapter_dtype=True)
        opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-5)
        grpo_step(lora, None, opt, processor, scorer, image, gt, warm, "group", device)
        res["lora"] = grpo_step(lora, None, opt, processor, scorer, image, gt, args, "group", device)
        log("lora: " + ", ".join(f"{k} {v:.3f}" for k, v in res["lora"].items()))

    md = markdown(res)
    print(md)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        Path(args.out, "gpu_check_grpo.md").write_text(md)
        Path(args.out, "gpu_check_grpo.json").write_text(json.dumps(res, indent=2))
    if args.doc:
        doc = Path(args.doc)
        doc.parent.mkdir(parents=True, exist_ok=True)
        with doc.open("a", encoding="utf-8") as f:
            f.write(("\n" if doc.exists() and doc.stat().st_size else "") + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
