"""GRPO training of a Qwen2.5-VL prompter on the Think2Seg environment's reward, with trl.

    t2s train grpo --config scripts/configs/grpo_3b_lora_1gpu.yaml root=/data/EarthReason
    t2s train grpo --config scripts/configs/grpo_tiny_cpu.yaml max_steps=3
    t2s train grpo --config F --resume auto            # latest checkpoint in output_dir
    accelerate launch --config_file scripts/configs/accelerate_zero3.yaml \\
        scripts/train_grpo.py --config scripts/configs/grpo_3b.yaml root=/data/EarthReason

The file reads top to bottom: the one configuration dataclass, how it is loaded (YAML +
``key=value`` overrides, type-checked), the training rows, the model, the rewards, the
TensorBoard extras, then ``main``. See docs/training.md for the recipes and memory figures.

Data. One row per (image, question), materialised for every epoch in a seeded order, and
trl reads the rows once in that order (``shuffle_dataset=False``, one trl epoch):

- ``question_mode: redraw`` (default): each epoch every image appears once with a question
  re-drawn by ``seeded_choice(n, data_seed, image_id@epoch)`` (epoch 0 equals the
  environment's ``question=random``), so the model meets other questions of an image in
  later epochs. Upstream drew one question per image once, unseeded.
- ``all``: every question of every image, each epoch.
- ``first`` / ``random``: one fixed question per image (questions[0] / seeded once).

Re-drawing applies to the EarthReason layout (one mask per image, shared by its questions);
in referring datasets every expression keeps its own question and mask.

Materialising the epochs (rather than re-drawing inside a transform on a trl epoch hook)
keeps the order a pure function of the config, so ``--resume`` continues on exactly the
rows that an uninterrupted run would have seen, on every rank. Images are never stored in
Arrow: a transform loads each row's image (840×840 LANCZOS, SPEC §5) through a small LRU
cache; ground-truth masks reach the reward through ``sample_id`` and a lookup.

Reward. ``t2s_env.make_reward_functions`` (iou, json, think; trl weights 2, 1, 1) groups
the completions of a batch by image, encodes each image once and decodes the group
batched. SAM2 is built on this rank's own device (``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import types
import typing
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

if __package__ in (None, ""):  # run as a file: import the checkout as think2seg.*
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _checkout  # noqa: F401

from t2s_env import (
    ConfigError,
    RewardWeights,
    Scorer,
    T2SError,
    build_messages,
    get_variant,
    load_framed,
    make_dataset,
    make_reward_functions,
)
from t2s_env.datasets import EarthReasonDataset, seeded_choice
from t2s_env.errors import CheckpointError

QUESTION_MODES = ("redraw", "all", "first", "random")
DEFAULT_LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# ---------------------------------------------------------------------------------------
# 1. Configuration: one dataclass; YAML keys and command-line overrides are its fields.
# ---------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    # -- model -----------------------------------------------------------------------
    model: str = "Qwen/Qwen2.5-VL-3B-Instruct"  # dir, hub id, or "tiny:DIR" (built offline if missing)
    processor: str | None = None  # when the model dir lacks one
    attn_implementation: str | None = None  # e.g. flash_attention_2 (GPU), sdpa
    # -- data ------------------------------------------------------------------------
    dataset: str = "earthreason:train"  # any make_dataset spec name:split
    root: str | None = None
    question_mode: str = "redraw"  # redraw | all | first | random
    data_seed: int = 0
    image_size: int = 840  # protocol frame; a multiple of 28
    max_images: int | None = None  # use only the first N images (smoke runs)
    # -- validation during training (0 steps = off) -----------------------------------
    val_dataset: str | None = "earthreason:val"
    val_root: str | None = None  # default: root
    val_samples: int = 16
    eval_steps: int = 100
    val_max_new_tokens: int | None = None  # default: max_completion_length
    val_batch_size: int = 8
    # -- environment / reward ------------------------------------------------------------
    segmenter: str = "sam2:small"
    segmenter_options: dict[str, Any] = field(default_factory=dict)
    prompt_variant: str = "bbox+2pos"
    reward_weights: dict[str, float] = field(default_factory=lambda: {"iou": 2.0, "json": 1.0, "think": 1.0})
    # -- GRPO ------------------------------------------------------------------------
    num_generations: int = 16
    per_device_train_batch_size: int = 16  # completions per device step
    gradient_accumulation_steps: int = 2
    num_train_epochs: int = 5
    max_steps: int = -1
    learning_rate: float = 1e-6
    lr_scheduler_type: str = "linear"
    warmup_steps: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    beta: float = 0.001
    epsilon: float = 0.2
    loss_type: str = "grpo"
    scale_rewards: str = "group"
    num_iterations: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_completion_length: int = 1024
    bf16: bool = True
    gradient_checkpointing: bool = True
    use_cpu: bool = False
    seed: int = 42
    # -- parameter-efficient training ------------------------------------------------------
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_MODULES))
    freeze_vision: bool = False
    # -- generation backend -------------------------------------------------------------
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    vllm_gpu_memory_utilization: float = 0.3
    # -- output, logging, checkpoints ------------------------------------------------------
    output_dir: str = "runs/grpo"
    logging_steps: int = 1
    save_steps: int = 100
    save_total_limit: int | None = 3
    sample_log_steps: int = 10  # completions as TensorBoard text every N steps (0 = off)
    samples_to_log: int = 4
    debug_dump: bool = False  # per-completion JSONL under output_dir/debug (off: upstream's logs were huge)
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    dataloader_num_workers: int = 0
    resume: str | None = None  # checkpoint dir, or "auto" (latest in output_dir, if any)
    grpo_extra: dict[str, Any] = field(default_factory=dict)  # more GRPOConfig fields, passed through


def config_fields() -> dict[str, Any]:
    """Field name -> resolved type annotation."""
    return typing.get_type_hints(TrainConfig)


def _check_type(name: str, value: Any, tp: Any) -> Any:
    """``value`` converted to the annotation ``tp`` or ConfigError naming ``name``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arm in args:
            if arm is type(None):
                continue
            try:
                return _check_type(name, value, arm)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{name}: bad value {value!r}")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return str(value)
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        return [_check_type(f"{name}[{i}]", v, args[0] if args else Any) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _check_type(f"{name}.{k}", v, vt) for k, v in value.items()}
    return value


def _unknown(key: str) -> ConfigError:
    valid = ", ".join(sorted(config_fields()))
    return ConfigError(f"unknown config key {key!r}; valid keys: {valid}")


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with a YAML value (``lora=true``, ``lora_target_modules=[q_proj,v_proj]``)."""
    key, sep, raw = text.partition("=")
    key = key.strip().lstrip("-")
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, (raw, value)


def load_config(path: str | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """A TrainConfig from a YAML file plus ``key=value`` overrides (``a.b=v`` sets a key of
    a mapping field). Unknown keys and ill-typed values raise ConfigError."""
    field_types = config_fields()
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {path} not found; recipes live in scripts/configs/")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of config keys")
        for k, v in data.items():
            if k not in field_types:
                raise _unknown(k)
            values[k] = _check_type(k, v, field_types[k])
    for text in overrides:
        key, (raw, value) = parse_override(text)
        top, _, sub = key.partition(".")
        if top not in field_types:
            raise _unknown(top)
        tp = field_types[top]
        if sub:
            if typing.get_origin(tp) is not dict:
                raise ConfigError(f"{top} is not a mapping; use {top}=value")
            current = dict(values.get(top, getattr(TrainConfig(), top)) or {})
            vt = typing.get_args(tp)[1]
            current[sub] = _check_type(key, value, vt)
            values[top] = current
            continue
        arms = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
        if str in arms and all(a in (str, type(None)) for a in arms) and value is not None and not isinstance(value, str):
            value = raw.strip()  # a path or name that YAML read as a number / bool
        values[top] = _check_type(top, value, tp)
    cfg = TrainConfig(**values)
    validate_config(cfg)
    return cfg


def validate_config(cfg: TrainConfig) -> None:
    if cfg.question_mode not in QUESTION_MODES:
        raise ConfigError(f"question_mode must be one of {', '.join(QUESTION_MODES)}, got {cfg.question_mode!r}")
    if cfg.image_size < 28 or cfg.image_size % 28:
        raise ConfigError(f"image_size must be a positive multiple of 28 (so the processor keeps it), got {cfg.image_size}")
    if cfg.num_generations < 2:
        raise ConfigError(f"num_generations must be >= 2 (GRPO compares completions of a group), got {cfg.num_generations}")
    per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    if per_step % cfg.num_generations:
        raise ConfigError(
            f"per_device_train_batch_size × gradient_accumulation_steps ({per_step}) must be a multiple of "
            f"num_generations ({cfg.num_generations})"
        )
    if cfg.num_train_epochs < 1:
        raise ConfigError(f"num_train_epochs must be >= 1, got {cfg.num_train_epochs}")
    if cfg.use_vllm:
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise ConfigError("use_vllm=true needs vllm (pip install vllm); or set use_vllm=false")
    if cfg.bf16 and cfg.use_cpu:
        raise ConfigError("bf16=true with use_cpu=true is slow and unsupported here; set bf16=false for CPU runs")
    get_variant(cfg.prompt_variant)
    RewardWeights.from_any(cfg.reward_weights)


# ---------------------------------------------------------------------------------------
# 2. Training rows: (image, question) per epoch, images loaded on access.
# ---------------------------------------------------------------------------------------
class FrameCache:
    """LRU of framed samples (image as PIL + numpy, mask) keyed by base index. trl asks for
    each row ``num_generations`` times in a row, and the reward asks for its mask."""

    def __init__(self, samples: Sequence[Any], image_size: int, capacity: int = 64) -> None:
        self.samples = samples
        self.image_size = image_size
        self.capacity = max(1, capacity)
        self._items: OrderedDict[int, tuple[Any, Any]] = OrderedDict()

    def get(self, index: int) -> tuple[Any, Any]:
        """(framed sample, PIL image) of base sample ``index``."""
        from PIL import Image

        if index in self._items:
            self._items.move_to_end(index)
            return self._items[index]
        framed = load_framed(self.samples[index], self.image_size)
        item = (framed, Image.fromarray(framed.image))
        self._items[index] = item
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return item


@dataclass
class TrainData:
    dataset: Any  # datasets.Dataset with a transform adding `prompt` and `image`
    cache: FrameCache
    sample_index: dict[str, int]  # sample_id -> base index
    rows_per_epoch: int

    def gt_mask(self, sample_id: str) -> np.ndarray:
        return self.cache.get(self.sample_index[sample_id])[0].gt_mask


def _question_choice(sample: Any, mode: str, seed: int, epoch: int) -> tuple[str, int]:
    qs = tuple(sample.questions) or (sample.question,)
    if mode != "redraw":
        return sample.question, sample.question_index
    key = sample.image_id if epoch == 0 else f"{sample.image_id}@{epoch}"
    k = seeded_choice(len(qs), seed, key)
    return qs[k], k


def build_train_data(cfg: TrainConfig) -> TrainData:
    """Rows for ``num_train_epochs`` epochs; each epoch a seeded permutation of the units
    (images, or questions in ``all`` mode)."""
    from datasets import Dataset

    load_mode = {"redraw": "first", "all": "all", "first": "first", "random": "random"}[cfg.question_mode]
    base = make_dataset(cfg.dataset, root=cfg.root, question=load_mode, seed=cfg.data_seed)
    samples = list(base)
    if cfg.max_images is not None:
        keep = sorted({s.image_id for s in samples})[: cfg.max_images]
        keep_set = set(keep)
        samples = [s for s in samples if s.image_id in keep_set]
    if not samples:
        raise ConfigError(f"dataset {cfg.dataset} has no samples")
    # EarthReason-layout data has one mask per image, so any question of an image can be
    # re-drawn; referring datasets keep each expression with its own mask. (The reward
    # encodes each image once either way: it groups by image_id, then by sample_id.)
    one_mask_per_image = isinstance(base, EarthReasonDataset)
    rows: dict[str, list[Any]] = defaultdict(list)
    sample_index: dict[str, int] = {}
    for epoch in range(cfg.num_train_epochs):
        order = np.random.default_rng([cfg.data_seed, epoch]).permutation(len(samples))
        for u in order.tolist():
            s = samples[u]
            # Re-drawing needs questions that share the sample's mask: true of EarthReason's
            # per-image questions; referring datasets keep each expression with its own mask.
            mode = cfg.question_mode if one_mask_per_image else "first"
            question, k = _question_choice(s, mode, cfg.data_seed, epoch)
            sid = f"{s.image_id}#q{k}" if cfg.question_mode in ("redraw", "all") and one_mask_per_image else s.sample_id
            sample_index[sid] = u
            rows["row_id"].append(len(rows["row_id"]))
            rows["epoch"].append(epoch)
            rows["sample_id"].append(sid)
            rows["image_id"].append(s.image_id)
            rows["question"].append(question)
            rows["unit"].append(u)
    ds = Dataset.from_dict(dict(rows))
    cache = FrameCache(samples, cfg.image_size, capacity=max(64, 2 * cfg.per_device_train_batch_size))
    variant = get_variant(cfg.prompt_variant)

    def add_prompt_and_image(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out = dict(batch)
        out["prompt"] = [build_messages(q, variant) for q in batch["question"]]
        out["image"] = [cache.get(u)[1] for u in batch["unit"]]
        return out

    ds.set_transform(add_prompt_and_image)
    return TrainData(ds, cache, sample_index, len(samples))


@dataclass
class ValData:
    images: list[np.ndarray]
    masks: list[np.ndarray]
    questions: list[str]
    messages: list[list[dict[str, Any]]]


def build_val_data(cfg: TrainConfig) -> ValData | None:
    """A few validation samples (one seeded question per image), loaded once."""
    if not cfg.val_dataset or cfg.eval_steps <= 0 or cfg.val_samples <= 0:
        return None
    ds = make_dataset(cfg.val_dataset, root=cfg.val_root or cfg.root, question="random", seed=cfg.data_seed)
    samples = list(ds)[: cfg.val_samples]
    if not samples:
        raise ConfigError(f"validation dataset {cfg.val_dataset} has no samples; set val_dataset=null to skip validation")
    framed = [load_framed(s, cfg.image_size) for s in samples]
    return ValData(
        images=[f.image for f in framed],
        masks=[f.gt_mask for f in framed],
        questions=[s.question for s in samples],
        messages=[build_messages(s.question, cfg.prompt_variant) for s in samples],
    )


# ---------------------------------------------------------------------------------------
# 3. Model and processor.
# ---------------------------------------------------------------------------------------
def resolve_model_path(cfg: TrainConfig) -> str:
    """``tiny:DIR`` builds a tiny random Qwen2.5-VL into DIR (once, on the main process)."""
    if cfg.model.startswith("tiny:"):
        from accelerate import PartialState

        from think2seg.agents.qwen.tiny import build_tiny_qwen

        path = os.path.expanduser(cfg.model[len("tiny:") :] or os.path.join(cfg.output_dir, "tiny-qwen"))
        with PartialState().main_process_first():
            build_tiny_qwen(path, image_size=cfg.image_size)
        return path
    return os.path.expanduser(cfg.model)


def load_policy(path: str, cfg: TrainConfig) -> Any:
    import torch

    from think2seg.agents.qwen.loading import load_model

    dtype = torch.bfloat16 if cfg.bf16 else torch.float32
    model = load_model(path, dtype=dtype, attn_implementation=cfg.attn_implementation)
    if cfg.freeze_vision:
        visual = getattr(getattr(model, "model", model), "visual", None) or getattr(model, "visual", None)
        if visual is None:
            raise CheckpointError(f"{path}: cannot find the vision tower to freeze")
        for p in visual.parameters():
            p.requires_grad_(False)
    return model


def lora_config(cfg: TrainConfig) -> Any:
    """LoRA on the language model only (the vision tower's MLP uses the same module names,
    hence the regex)."""
    if not cfg.lora:
        return None
    from peft import LoraConfig

    mods = "|".join(sorted(set(cfg.lora_target_modules)))
    target = rf".*language_model.*\.({mods})" if cfg.freeze_vision else rf".*\.({mods})"
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=target,
        task_type="CAUSAL_LM",
    )


# ---------------------------------------------------------------------------------------
# 4. Rewards and what they log.
# ---------------------------------------------------------------------------------------
class RewardMonitor:
    """The Scorer's ``on_scores`` hook: per-batch statistics into trl's metrics (averaged
    over ranks and logging steps), the latest completions for TensorBoard, and the optional
    per-completion debug dump.

    Logged (as ``train/t2s/...``): ``mean_iou``, ``parse_failure_rate`` (strict parse),
    ``empty_answer_rate``, ``group_reward_std`` (mean std of the total reward within a
    group) and ``zero_std_group_frac`` (groups with no learning signal).
    """

    def __init__(self, keep: int = 4, dump_dir: str | None = None, rank: int = 0) -> None:
        self.keep = keep
        self.dump_path = os.path.join(dump_dir, f"rank{rank}.jsonl") if dump_dir else None
        self.samples: list[dict[str, Any]] = []
        self.last: dict[str, float] = {}
        self._completions: list[Any] = []

    def wrap(self, fn: Callable[..., list[float]]) -> Callable[..., list[float]]:
        """Wrap the iou reward to remember the completions it scores (same name for trl)."""

        def wrapped(prompts=None, completions=(), **kwargs):
            self._completions = list(completions)
            return fn(prompts=prompts, completions=completions, **kwargs)

        wrapped.__name__ = fn.__name__
        wrapped.__wrapped__ = fn  # type: ignore[attr-defined]
        return wrapped

    def __call__(self, results: list[Any], columns: dict[str, Any]) -> None:
        from t2s_env.scoring import completion_text

        n = len(results)
        if n == 0:
            return
        keys = columns.get("row_id") or columns.get("sample_id") or list(range(n))
        groups: dict[Any, list[float]] = defaultdict(list)
        for key, r in zip(keys, results):
            groups[key].append(r.reward)
        stds = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in groups.values()]
        stats = {
            "t2s/mean_iou": float(np.mean([r.iou for r in results])),
            "t2s/parse_failure_rate": float(np.mean([not r.parsed_ok for r in results])),
            "t2s/empty_answer_rate": float(np.mean([r.answer_empty for r in results])),
            "t2s/group_reward_std": float(np.mean(stds)),
            "t2s/zero_std_group_frac": float(np.mean([s < 1e-6 for s in stds])),
        }
        self.last = stats
        log_metric = columns.get("log_metric")
        if callable(log_metric):
            for k, v in stats.items():
                log_metric(k, v)
        texts = [completion_text(c) for c in self._completions] if len(self._completions) == n else [""] * n
        questions = columns.get("question") or [""] * n
        step = getattr(columns.get("trainer_state"), "global_step", None)
        self.samples = [
            {"question": questions[i], "completion": texts[i], "reward": results[i].reward, "iou": results[i].iou,
             "parsed": results[i].parsed_ok}
            for i in range(min(self.keep, n))
        ]
        if self.dump_path:
            os.makedirs(os.path.dirname(self.dump_path), exist_ok=True)
            ids = columns.get("sample_id") or [None] * n
            with open(self.dump_path, "a", encoding="utf-8") as f:
                for i, r in enumerate(results):
                    f.write(json.dumps({"step": step, "sample_id": ids[i], "question": questions[i],
                                        "completion": texts[i], "reward": r.reward,
                                        "components": r.reward_components, "error": r.error}) + "\n")


def build_rewards(cfg: TrainConfig, data: TrainData, monitor: RewardMonitor) -> tuple[list[Callable], Scorer]:
    """The environment's group-scoring reward callables, with the segmenter on this rank's device."""
    from accelerate import PartialState

    options = dict(cfg.segmenter_options)
    if cfg.segmenter.split(":")[0] == "sam2" and "device" not in options:
        options["device"] = str(PartialState().device)  # each rank its own GPU (upstream: all on one)
    from t2s_env import make_segmenter

    segmenter = make_segmenter(cfg.segmenter, **options)
    scorer = Scorer(segmenter, cfg.prompt_variant, parser_mode="strict", reward_weights=cfg.reward_weights)
    funcs = make_reward_functions(scorer, gt_mask_lookup=data.gt_mask, on_scores=monitor)
    funcs[0] = monitor.wrap(funcs[0])
    return funcs, scorer


# ---------------------------------------------------------------------------------------
# 5. TensorBoard extras: sample completions as text, periodic validation with overlays.
# ---------------------------------------------------------------------------------------
def _trainer_callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


class T2SCallback(_trainer_callback_base()):  # type: ignore[misc]
    """Writes sample completions and validation results into trl's TensorBoard run."""

    def __init__(self, cfg: TrainConfig, monitor: RewardMonitor, val: ValData | None, scorer: Scorer) -> None:
        self.cfg = cfg
        self.monitor = monitor
        self.val = val
        self.val_scorer = Scorer(scorer.segmenter, cfg.prompt_variant, parser_mode="lenient",
                                 reward_weights=cfg.reward_weights, keep_masks=True)
        self.trainer: Any = None
        self.val_history: list[dict[str, float]] = []

    def writer(self) -> Any:
        from transformers.integrations import TensorBoardCallback

        if self.trainer is None:
            return None
        for cb in self.trainer.callback_handler.callbacks:
            if isinstance(cb, TensorBoardCallback):
                return cb.tb_writer
        return None

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        if self.cfg.sample_log_steps > 0 and step % self.cfg.sample_log_steps == 0 and state.is_world_process_zero:
            self.log_samples(step)
        if self.val is not None and self.cfg.eval_steps > 0 and step % self.cfg.eval_steps == 0:
            self.validate(step)
        return control

    def log_samples(self, step: int) -> None:
        w = self.writer()
        if w is None or not self.monitor.samples:
            return
        parts = []
        for s in self.monitor.samples:
            parts.append(
                f"**Q:** {s['question']}  \n**reward** {s['reward']:.3f} · **IoU** {s['iou']:.3f} · "
                f"**parsed** {s['parsed']}\n\n```\n{s['completion'][:4000]}\n```"
            )
        w.add_text("samples/completions", "\n\n---\n\n".join(parts), step)
        w.flush()

    def validate(self, step: int) -> dict[str, float] | None:
        """Greedy generation on the validation samples (every rank takes part: under ZeRO-3
        the parameters are gathered collectively), scored and logged on rank 0."""
        from trl.models.utils import unwrap_model_for_generation

        from think2seg.agents.qwen.generation import generate_completions
        from t2s_env.render import draw_overlay, image_grid

        tr = self.trainer
        val = self.val
        max_new = self.cfg.val_max_new_tokens or self.cfg.max_completion_length
        was_training = tr.model.training
        with unwrap_model_for_generation(
            tr.model_wrapped,
            tr.accelerator,
            gather_deepspeed3_params=tr.args.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=tr.args.gradient_checkpointing_kwargs,
        ) as model:
            model.eval()
            texts, gen = generate_completions(
                model, tr.processing_class, val.images, val.messages, max_new_tokens=max_new,
                do_sample=False, batch_size=self.cfg.val_batch_size, device=tr.accelerator.device,
            )
            if was_training:
                model.train()
        if not tr.accelerator.is_main_process:
            return None
        results = [self.val_scorer.score(img, gt, [t])[0] for img, gt, t in zip(val.images, val.masks, texts)]
        metrics = {
            "val/mean_iou": float(np.mean([r.iou for r in results])),
            "val/reward": float(np.mean([r.reward for r in results])),
            "val/parse_failure_rate": float(np.mean([not r.parsed_ok for r in results])),
            "val/gen_tokens_per_s": gen["new_tokens"] / max(gen["seconds"], 1e-9),
        }
        self.val_history.append({"step": step, **metrics})
        w = self.writer()
        if w is not None:
            for k, v in metrics.items():
                w.add_scalar(k, v, step)
            tiles = [
                draw_overlay(img, r.mask, gt, r.prompts, caption=f"IoU {r.iou:.2f}")
                for img, gt, r in zip(val.images, val.masks, results)
            ]
            w.add_image("val/overlays", image_grid(tiles, columns=4, tile_size=280), step, dataformats="HWC")
            w.add_text("val/completions", "\n\n---\n\n".join(
                f"**Q:** {q}  \n**IoU** {r.iou:.3f}\n\n```\n{t[:2000]}\n```"
                for q, t, r in zip(val.questions[:4], texts[:4], results[:4])), step)
            w.flush()
        return metrics


def _trainer_class():
    """GRPOTrainer with a resume fix: transformers 5 saves Qwen2.5-VL under its original key
    names (``visual.*``, ``model.layers.*``) but ``Trainer`` resumes with a plain
    ``load_state_dict`` that renames nothing (transformers#43701), so every weight of the
    checkpoint would be skipped with a warning and training would restart from the base
    model. Here the checkpoint is read with ``from_pretrained`` (which renames) instead.
    DeepSpeed (own checkpoint format) and LoRA (adapter files) keep trl's path."""
    from trl import GRPOTrainer

    class T2SGRPOTrainer(GRPOTrainer):
        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            target = model if model is not None else self.model
            if self.is_deepspeed_enabled or self.is_fsdp_enabled or hasattr(target, "peft_config"):
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            loaded = type(target).from_pretrained(resume_from_checkpoint, dtype=target.dtype, device_map=None)
            result = target.load_state_dict(loaded.state_dict(), strict=False)
            del loaded
            tied = getattr(target, "_tied_weights_keys", None) or {}
            bad = [k for k in result.missing_keys if k not in tied]
            if result.unexpected_keys or bad:
                raise CheckpointError(
                    f"{resume_from_checkpoint} does not match the model: missing {bad[:3]}, "
                    f"unexpected {result.unexpected_keys[:3]}"
                )

    return T2SGRPOTrainer


# ---------------------------------------------------------------------------------------
# 6. Assembly and the entry point.
# ---------------------------------------------------------------------------------------
@dataclass
class Run:
    cfg: TrainConfig
    trainer: Any
    data: TrainData
    scorer: Scorer
    monitor: RewardMonitor
    callback: T2SCallback
    model_path: str
    tensorboard_dir: str


def grpo_args(cfg: TrainConfig, reward_weights: list[float]) -> Any:
    from trl import GRPOConfig

    kwargs: dict[str, Any] = dict(
        output_dir=cfg.output_dir,
        num_generations=cfg.num_generations,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_train_epochs=1,  # the epochs are materialised in the rows (see the module docstring)
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        num_iterations=cfg.num_iterations,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_completion_length=cfg.max_completion_length,
        bf16=cfg.bf16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        use_cpu=cfg.use_cpu,
        seed=cfg.seed,
        reward_weights=reward_weights,
        shuffle_dataset=False,
        remove_unused_columns=False,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=list(cfg.report_to) or "none",
        dataloader_num_workers=cfg.dataloader_num_workers,
        log_completions=False,
        use_vllm=cfg.use_vllm,
    )
    if cfg.use_vllm:
        kwargs.update(vllm_mode=cfg.vllm_mode, vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization)
    overlap = set(kwargs) & set(cfg.grpo_extra)
    if overlap:
        raise ConfigError(f"grpo_extra sets {sorted(overlap)}, which are top-level config keys; set them there")
    kwargs.update(cfg.grpo_extra)
    try:
        return GRPOConfig(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"grpo_extra: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"invalid GRPO settings: {str(exc).splitlines()[0]}") from None


def build_run(cfg: TrainConfig) -> Run:
    """Everything up to ``trainer.train()``; tests use it to inspect or spy."""
    from accelerate import PartialState
    from think2seg.agents.qwen.loading import check_model_dir, load_processor

    state = PartialState()
    os.makedirs(cfg.output_dir, exist_ok=True)
    model_path = resolve_model_path(cfg)
    check_model_dir(model_path, need_processor=cfg.processor is None)
    processor = load_processor(os.path.expanduser(cfg.processor or model_path), image_size=cfg.image_size)

    data = build_train_data(cfg)
    val = build_val_data(cfg)
    monitor = RewardMonitor(cfg.samples_to_log, os.path.join(cfg.output_dir, "debug") if cfg.debug_dump else None,
                            state.process_index)
    reward_funcs, scorer = build_rewards(cfg, data, monitor)

    args = grpo_args(cfg, scorer.weights.as_list())  # before the model: ZeRO-3 must see it first
    model = load_policy(model_path, cfg)
    callback = T2SCallback(cfg, monitor, val, scorer)
    trainer = _trainer_class()(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=data.dataset,
        processing_class=processor,
        peft_config=lora_config(cfg),
        callbacks=[callback],
    )
    callback.trainer = trainer
    tb_dir = os.path.join(cfg.output_dir, "tensorboard")
    from transformers.integrations import TensorBoardCallback

    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, TensorBoardCallback):
            cb.logging_dir = tb_dir
    if state.is_main_process:
        with open(os.path.join(cfg.output_dir, "t2s_train_config.yaml"), "w") as f:
            yaml.safe_dump(dataclasses.asdict(cfg), f, sort_keys=False)
    return Run(cfg, trainer, data, scorer, monitor, callback, model_path, tb_dir)


def resolve_resume(cfg: TrainConfig) -> str | None:
    """None (fresh), or the checkpoint to resume from."""
    if not cfg.resume:
        return None
    if cfg.resume == "auto":
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(cfg.output_dir) if os.path.isdir(cfg.output_dir) else None
        if last is None:
            print(f"t2s: no checkpoint in {cfg.output_dir}; starting fresh", file=sys.stderr)
        return last
    path = os.path.expanduser(cfg.resume)
    if not os.path.isfile(os.path.join(path, "trainer_state.json")):
        raise CheckpointError(
            f"{cfg.resume} is not a trainer checkpoint (no trainer_state.json); pass a checkpoint-N folder "
            "from output_dir or --resume auto"
        )
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="t2s train grpo",
        description="GRPO training of a Qwen2.5-VL prompter on the Think2Seg reward (trl).",
        epilog="Overrides are key=value with YAML values, e.g. lora=true max_steps=10 "
        "segmenter_options.image_size=256 lora_target_modules=[q_proj,v_proj]. See docs/training.md.",
    )
    p.add_argument("--config", help="recipe YAML (scripts/configs/*.yaml)")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT|auto",
                   help="continue from a checkpoint folder, or the latest one in output_dir (default with no value)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """GRPO training of a Qwen2.5-VL prompter with trl."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    overrides = list(args.overrides)
    if args.resume is not None and "=" in args.resume:  # `--resume key=value ...`: a bare --resume
        overrides.insert(0, args.resume)
        args.resume = "auto"
    if args.resume is not None:
        overrides.append(f"resume={args.resume}")
    cfg = load_config(args.config, overrides)
    if args.print_config:
        print(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False), end="")
        return 0
    resume = resolve_resume(cfg)
    run = build_run(cfg)
    tr = run.trainer
    if tr.accelerator.is_main_process:
        n_rows = len(run.data.dataset)
        print(
            f"t2s: {n_rows} rows ({run.data.rows_per_epoch} per epoch × {cfg.num_train_epochs}), "
            f"G={cfg.num_generations}, model {run.model_path}, segmenter {cfg.segmenter}, "
            f"TensorBoard {run.tensorboard_dir}" + (f", resuming {resume}" if resume else ""),
            file=sys.stderr,
        )
    tr.train(resume_from_checkpoint=resume)
    tr.save_model(cfg.output_dir)
    if tr.accelerator.is_main_process:
        print(f"t2s: saved the final model to {cfg.output_dir} (global step {tr.state.global_step})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except T2SError as exc:
        print(f"t2s: error: {exc}", file=sys.stderr)
        sys.exit(2)
