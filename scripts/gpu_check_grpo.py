"""GPU check: trl GRPOTrainer's own training step, Qwen2.5-VL-3B / Qwen3-VL-2B shapes + SAM2.1-small.

What it times (random weights: compute and memory do not depend on the values). For each
policy -- a 3B-shaped Qwen2.5-VL and a 2B-shaped Qwen3-VL, architecture configs written
below, no download; the tokenizer and processor are built offline as
``think2seg.agents.hf_vlm.tiny`` builds them -- one ``trl.GRPOTrainer`` runs
``1 + 2 × --steps`` optimizer steps of one 840×840 image, G = ``--num-generations``
(third, ``qwen2_5_vl_lora``: the 3B shape with grpo_3b_lora_1gpu.yaml's LoRA r16 through
trl's ``peft_config``, for its peak memory):

* step 0: warm-up (kernels, allocator), group scoring, not reported;
* steps 1..n: **group scoring**, the env's rewards (``t2s_env.make_reward_functions`` over
  one ``Scorer``: the image encoded once, the G answers decoded together);
* steps n+1..2n: **per-completion scoring** (upstream's path): the same iou reward called
  once per completion, so SAM2 re-encodes the image for every completion.

Each step is trl's own: ``_generate`` (HF ``generate``, sampling at temperature 1), the
reward functions, the GRPO loss with gradient checkpointing, backward and the AdamW step
(``GRPOTrainer.training_step`` + the Trainer's optimizer step). Timings come from wrapping
the trainer's ``_generate`` and reward functions and a ``TrainerCallback`` around each
step (``on_step_begin`` .. ``on_step_end``, with ``torch.cuda.synchronize``); peak memory
is ``torch.cuda.max_memory_allocated`` over the step.

A random policy never writes a parseable answer, so the reward functions see, in place of
the decoded completions, synthetic protocol answers (1-3 instances, a box and two points
each; the same answers on both paths). Generation, the tokens trained on and the loss are
the real ones. ``beta`` defaults to 0 (trl's default: no reference model; trl would
otherwise reload the reference from a saved directory).

GPU machine (H100/H200): ``scripts/gpu_check.sh`` runs this with the carried wheels.
CPU smoke run of the same code path (tiny models, 2 steps, box segmenter)::

    .venv/bin/python scripts/gpu_check_grpo.py --tiny --out /tmp/grpo
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

if __package__ in (None, ""):  # run as a file: import the checkout as think2seg.*
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _checkout  # noqa: F401

#: Qwen/Qwen2.5-VL-3B-Instruct's config.json (architecture only).
QWEN25_VL_3B_TEXT = dict(
    vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
    num_key_value_heads=2, max_position_embeddings=128000, rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
    tie_word_embeddings=True,
)
QWEN25_VL_3B_VISION = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048, patch_size=14,
    spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
    tokens_per_second=2,
)
#: Qwen/Qwen3-VL-2B-Instruct's config.json (architecture only).
QWEN3_VL_2B_TEXT = dict(
    vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
    num_key_value_heads=8, head_dim=128, max_position_embeddings=262144, rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20],
                     "mrope_interleaved": True},
    tie_word_embeddings=True,
)
QWEN3_VL_2B_VISION = dict(
    depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048, patch_size=16,
    spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304, deepstack_visual_indexes=[5, 11, 17],
    hidden_act="gelu_pytorch_tanh",
)
POLICIES = ("qwen2_5_vl", "qwen3_vl", "qwen2_5_vl_lora")
#: grpo_3b_lora_1gpu.yaml's adapters: r16 on the language model's projections (the vision
#: tower stays frozen, no reference copy): its peak memory checks docs/training.md's
#: single-24-GB-GPU estimate.
LORA_MODULES = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
try:  # a sibling module: run as a file, imported by the tests, or installed as think2seg.scripts
    from ._doc_block import replace_marked_block
except ImportError:
    from _doc_block import replace_marked_block

DOC_BEGIN = "<!-- gpu_check_grpo: begin -->"
DOC_END = "<!-- gpu_check_grpo: end -->"
SHAPE_NAMES = {"qwen2_5_vl": "Qwen2.5-VL-3B shape", "qwen3_vl": "Qwen3-VL-2B shape",
               "qwen2_5_vl_lora": "Qwen2.5-VL-3B shape, LoRA r16"}
TINY_NAMES = {"qwen2_5_vl": "tiny Qwen2.5-VL", "qwen3_vl": "tiny Qwen3-VL", "qwen2_5_vl_lora": "tiny Qwen2.5-VL, LoRA r16"}


def log(msg: str) -> None:
    print(f"[gpu_check_grpo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- policies: the tiny builders' tokenizer/processor, a full-size config when not --tiny ------------

def build_policy(family: str, tiny: bool, image_size: int, dtype, device):
    """(model, processor). ``tiny``: the family's tiny random model as tests build it.
    Otherwise the same offline tokenizer/processor (ids beyond its vocabulary decode to
    nothing) with the full-size architecture, random weights built on ``device``."""
    import torch

    from think2seg.agents.hf_vlm import tiny as hf_tiny

    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig as Config
        from transformers import Qwen2_5_VLForConditionalGeneration as Model

        _, processor = hf_tiny.build_qwen2_5_vl(image_size, seed=0)
        text, vision = QWEN25_VL_3B_TEXT, QWEN25_VL_3B_VISION
        tiny_text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                                 "mrope_section": [2, 3, 3]})
        tiny_vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           window_size=56, fullatt_block_indexes=[1])
    elif family == "qwen3_vl":
        from transformers import Qwen3VLConfig as Config
        from transformers import Qwen3VLForConditionalGeneration as Model

        tiny_model, processor = hf_tiny.build_qwen3_vl(image_size, seed=0)
        if tiny:
            return tiny_model.to(device=device, dtype=dtype), processor
        text, vision = QWEN3_VL_2B_TEXT, QWEN3_VL_2B_VISION
    else:
        raise ValueError(f"unknown policy family {family!r}; known: {', '.join(POLICIES)}")
    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in
           ("<|endoftext|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    text = dict(tiny_text if tiny else text)
    if tiny:
        text["vocab_size"] = len(tok)
    text.update(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    config = Config(
        text_config=text, vision_config=dict(tiny_vision if tiny else vision),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=text.get("tie_word_embeddings", False),
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = Model._from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model, processor


def make_scene(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    gt = np.zeros((size, size), bool)
    gt[size // 5 : size // 2, size // 4 : 3 * size // 5] = True
    return image, gt


def synthetic_answers(n: int, size: int, seed: int) -> list[str]:
    """Parseable protocol answers with 1-3 instances (a box and two points inside each)."""
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


# -- rewards: the env's functions, group or per completion, timed -----------------------------------

class Probe:
    """Shared state of the wrapped trainer parts: the scoring mode of the current step and
    the times of its parts (seconds, synchronised)."""

    def __init__(self, device) -> None:
        self.device = device
        self.mode = "group"
        self.current: dict[str, float] = {}

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def add(self, key: str, value: float) -> None:
        self.current[key] = self.current.get(key, 0.0) + value


def reward_functions(scorer, gt_lookup: Callable[[str], np.ndarray], image_size: int, seed: int,
                     probe: Probe) -> list[Callable[..., list[float]]]:
    """``make_reward_functions(scorer)`` with (1) the completions replaced by synthetic
    answers and (2) the iou function called once per completion on the per-completion
    path (no state is kept between calls: each call encodes its image again)."""
    from t2s_env import make_reward_functions

    funcs = make_reward_functions(scorer, gt_mask_lookup=gt_lookup)

    def wrap(fn, is_iou: bool):
        def wrapped(prompts=None, completions=(), **columns):
            n = len(completions)
            answers = [[{"role": "assistant", "content": a}] for a in synthetic_answers(n, image_size, seed)]
            probe.sync()
            t0 = time.perf_counter()
            if is_iou and probe.mode == "per_completion":
                out = []
                for i in range(n):
                    one = {k: ([v[i]] if isinstance(v, list) and len(v) == n else v) for k, v in columns.items()}
                    out += fn(prompts=[prompts[i]] if prompts else None, completions=[answers[i]], **one)
            else:
                out = fn(prompts=prompts, completions=answers, **columns)
            probe.sync()
            probe.add("scoring_s", time.perf_counter() - t0)
            return out

        wrapped.__name__ = fn.__name__
        return wrapped

    return [wrap(f, i == 0) for i, f in enumerate(funcs)]


# -- one trainer per policy ------------------------------------------------------------------------

def run_policy(family: str, args, device, dtype, scorer) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from PIL import Image
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from t2s_env import build_messages

    cuda = device.type == "cuda"
    t_build = time.perf_counter()
    lora = family.endswith("_lora")
    model, processor = build_policy(family.removesuffix("_lora"), args.tiny, args.image_size, dtype, device)
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=LORA_MODULES,
                                 task_type="CAUSAL_LM")
    n_params = sum(p.numel() for p in model.parameters())
    image, gt = make_scene(args.image_size, args.seed)
    n_steps = 1 + 2 * args.steps
    prompt = build_messages("where could ships be repaired?")
    data = Dataset.from_dict({
        "prompt": [prompt] * n_steps, "image": [Image.fromarray(image)] * n_steps,
        "image_id": ["scene-0"] * n_steps, "sample_id": ["scene-0"] * n_steps,
    })
    probe = Probe(device)
    funcs = reward_functions(scorer, lambda _sid: gt, args.image_size, args.seed, probe)
    out_dir = tempfile.mkdtemp(prefix=f"gpu-check-grpo-{family}-")
    config = GRPOConfig(
        output_dir=out_dir, max_steps=n_steps, per_device_train_batch_size=args.num_generations,
        num_generations=args.num_generations, gradient_accumulation_steps=1,
        max_completion_length=args.max_new_tokens, temperature=1.0, beta=args.beta, learning_rate=args.lr,
        reward_weights=scorer.weights.as_list(), gradient_checkpointing=not args.tiny,
        bf16=cuda, use_cpu=not cuda, logging_steps=1, report_to=[], save_strategy="no",
        dataloader_num_workers=0, seed=args.seed, shuffle_dataset=False,
    )
    steps: list[dict[str, float]] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, targs, state, control, **kw):
            # global_step counts finished steps: 0 warm-up, 1..n group, n+1..2n per completion
            probe.mode = "group" if state.global_step <= args.steps else "per_completion"
            probe.current = {}
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            probe.sync()
            probe.current["t0"] = time.perf_counter()

        def on_step_end(self, targs, state, control, **kw):
            probe.sync()
            c = dict(probe.current)
            c["step_s"] = time.perf_counter() - c.pop("t0")
            c["mode"] = probe.mode
            if cuda:
                c["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            steps.append(c)
            log(f"{family} step {state.global_step} ({probe.mode}): "
                + ", ".join(f"{k} {v:.3f}" for k, v in c.items() if isinstance(v, float)))

    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=config, train_dataset=data,
                          processing_class=processor, callbacks=[StepTimer()], peft_config=peft_config)
    generate = trainer._generate

    def timed_generate(prompts):
        probe.sync()
        t0 = time.perf_counter()
        out = generate(prompts)
        probe.sync()
        probe.add("generation_s", time.perf_counter() - t0)
        probe.add("new_tokens", float(sum(len(ids) for ids in out[1])))
        return out

    trainer._generate = timed_generate
    log(f"{family}: built {n_params / 1e9:.3f} B params + trainer in {time.perf_counter() - t_build:.1f} s")
    trainer.train()
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    res: dict[str, Any] = {"family": family, "model": TINY_NAMES[family] if args.tiny else SHAPE_NAMES[family],
                           "params": n_params, "trainable_params": trainable, "steps": steps}
    for mode in ("group", "per_completion"):
        measured = [s for s in steps[1:] if s["mode"] == mode]
        if not measured:
            raise RuntimeError(f"{family}: no {mode} step was recorded ({len(steps)} steps)")
        res[mode] = {k: float(np.mean([s.get(k, 0.0) for s in measured]))
                     for k in ("step_s", "generation_s", "scoring_s", "new_tokens", "peak_gib") if k in measured[0]}
        r = res[mode]
        r["rest_s"] = r["step_s"] - r.get("generation_s", 0.0) - r.get("scoring_s", 0.0)
        r["tokens_per_s"] = r.get("new_tokens", 0.0) / max(r.get("generation_s", 0.0), 1e-9)
    del trainer, model
    if cuda:
        torch.cuda.empty_cache()
    return res


# -- report ----------------------------------------------------------------------------------------

def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"### GRPO step (trl GRPOTrainer) + {res['segmenter']} on {res['device_name']}",
        "",
        f"`scripts/gpu_check_grpo.py`, {res['date']}: trl {res['trl']}, transformers {res['transformers']}, torch "
        f"{res['torch']}; random weights; one {res['image_size']}² image, G = {res['G']}, up to "
        f"{res['max_new_tokens']} new tokens (temperature 1), {res['dtype']}, beta {res['beta']}, AdamW; mean of "
        f"{res['steps']} step(s) per scoring path after one warm-up step. Step = trl's training step + optimizer "
        "step; rest = loss, backward, optimizer and trl's bookkeeping.",
        "",
        "| policy (trainable) | scoring | step s | generation s | gen tokens/s | reward scoring s | rest s | peak GiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in res["policies"]:
        if "skipped" in p:
            lines.append(f"| {SHAPE_NAMES.get(p['family'], p['family'])} | skipped: {p['skipped']} | | | | | | |")
            continue
        for mode, label in (("group", "group (env Scorer)"), ("per_completion", "per completion (upstream)")):
            r = p[mode]
            peak = f"{r['peak_gib']:.1f}" if "peak_gib" in r else "-"
            size = ", ".join(f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"
                             for n in (p["params"], p.get("trainable_params", p["params"])))
            lines.append(f"| {p['model']} ({size}) | {label} | {r['step_s']:.2f} | "
                         f"{r.get('generation_s', 0.0):.2f} | {r['tokens_per_s']:.0f} | {r.get('scoring_s', 0.0):.3f} | "
                         f"{r['rest_s']:.2f} | {peak} |")
    lines.append("")
    return "\n".join(lines)


def write_outputs(res: dict[str, Any], args) -> None:
    md = markdown(res)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        Path(args.out, "gpu_check_grpo.md").write_text(md)
        Path(args.out, "gpu_check_grpo.json").write_text(json.dumps(res, indent=2))
    if args.doc:
        write_doc(args.doc, md)


def write_doc(doc: str, md: str) -> None:
    """Replace this check's table in ``doc`` (between DOC_BEGIN and DOC_END) with ``md``."""
    replace_marked_block(doc, DOC_BEGIN, DOC_END, md)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="CPU smoke run: tiny models, 112 px, 8 tokens, 1 step per path")
    p.add_argument("--policies", default=",".join(POLICIES), help=f"comma-separated, of {', '.join(POLICIES)}")
    p.add_argument("--num-generations", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--image-size", type=int, default=840)
    p.add_argument("--steps", type=int, default=1, help="measured steps per scoring path (default 1)")
    p.add_argument("--segmenter", default=None, help="default sam2:small (box for --tiny on a CPU)")
    p.add_argument("--sam-image-size", type=int, default=None, help="SAM2 input side (default 1024; CPU tests 256)")
    p.add_argument("--beta", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds; policies not started by then are skipped (the report says so)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_check_grpo.{md,json} (default $OUT)")
    p.add_argument("--doc", default=None, help="write the table into this file between the markers " + DOC_BEGIN
                   + " and " + DOC_END + ", replacing the previous one (docs/performance.md)")
    p.add_argument("--doc-from", default=None, metavar="JSON",
                   help="only write --doc from a gpu_check_grpo.json a GPU run brought back, then exit")
    args = p.parse_args(argv)
    if args.doc_from:
        if not args.doc:
            p.error("--doc-from needs --doc")
        try:
            write_doc(args.doc, markdown(json.loads(Path(args.doc_from).read_text())))
        except (OSError, ValueError, KeyError) as e:
            p.error(f"--doc-from {args.doc_from}: not a gpu_check_grpo.json report ({e})")
        return 0
    if args.beta != 0:
        # trl rebuilds the reference from model.config's hub id or directory; these
        # policies are built from a config in memory and have neither
        p.error(f"--beta {args.beta}: only 0 is supported (trl reloads the reference model from a saved directory)")
    policies = [s.strip() for s in args.policies.split(",") if s.strip()]
    bad = [s for s in policies if s not in POLICIES]
    if bad or not policies:
        p.error(f"--policies: unknown {bad or policies!r}; known: {', '.join(POLICIES)}")
    if args.tiny:
        args.image_size, args.max_new_tokens, args.num_generations = 112, min(args.max_new_tokens, 8), 2
    t_start = time.perf_counter()

    import torch
    import transformers
    import trl

    from t2s_env import Scorer, make_segmenter

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if args.segmenter is None:
        args.segmenter = "box" if args.tiny and device.type == "cpu" else "sam2:small"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    log(f"device {name}, torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")
    seg_opts: dict[str, Any] = {}
    if args.segmenter.startswith("sam2"):
        seg_opts = {"allow_random_weights": True, "device": str(device)}
        if args.sam_image_size:
            seg_opts["image_size"] = args.sam_image_size
    scorer = Scorer(make_segmenter(args.segmenter, **seg_opts))
    res: dict[str, Any] = {
        "device_name": name, "G": args.num_generations, "max_new_tokens": args.max_new_tokens,
        "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
        "segmenter": f"SAM2.1-{args.segmenter.partition(':')[2]}" if args.segmenter.startswith("sam2") else args.segmenter,
        "date": time.strftime("%Y-%m-%d"), "image_size": args.image_size, "beta": args.beta,
        "dtype": str(dtype).replace("torch.", ""), "steps": args.steps, "policies": [],
    }
    for family in policies:
        if args.time_budget is not None and time.perf_counter() - t_start > args.time_budget:
            log(f"{family}: skipped, time budget of {args.time_budget:.0f} s spent")
            res["policies"].append({"family": family, "skipped": "time budget"})
            continue
        res["policies"].append(run_policy(family, args, device, dtype, scorer))
        write_outputs(res, args)  # after each policy: a run cut short keeps what it measured
    print(markdown(res))
    log(f"done in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
