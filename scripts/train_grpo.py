"""GRPO training of a Qwen2.5-VL prompter on the Think2Seg environment's reward, with trl.

    t2s train grpo --config scripts/configs/grpo_3b_lora_1gpu.yaml root=/data/EarthReason
    t2s train grpo --config scripts/configs/grpo_tiny_cpu.yaml max_steps=3
    t2s train grpo --config scripts/configs/grpo_tiny_cpu.yaml --max_steps 3 --use_peft
    t2s train grpo --config F --resume                 # latest checkpoint in output_dir
    accelerate launch --config_file scripts/configs/accelerate_zero3.yaml \\
        scripts/train_grpo.py --config scripts/configs/grpo_3b.yaml root=/data/EarthReason

Configuration is trl's: this script's ``ScriptArguments`` beside trl's ``GRPOConfig`` and
``ModelConfig``, filled from a YAML recipe and overrides by ``TrlParser``
(scripts/config.py: ``key=value`` or ``--key value``). The resolved config, with package
versions and the git commit, is saved as ``output_dir/config.yaml``.

The file reads top to bottom: configuration, the training rows, the rewards, then the
model, the trainer and ``main``. See docs/training.md for the recipes and memory figures.

Data. One row per (image, question), materialised for every epoch in a seeded order
(``question_mode``: redraw, all, first, random), images loaded on access: see
:mod:`t2s_env.integrations.trl_rows`.

Reward. ``t2s_env.make_reward_functions`` (iou, json, think; trl weights 2, 1, 1) groups
the completions of a batch by image, encodes each image once and decodes the group
batched. SAM2 is built on this rank's own device (``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence


if __package__ in (None, ""):  # run as a file: import the checkout as think2seg.*
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _checkout  # noqa: F401

from t2s_env import (ConfigError, RewardWeights, Scorer, T2SError, build_messages, get_variant, load_framed, make_dataset,
                     make_reward_functions)
from t2s_env.coords import check_frame_match, get_coord_frame
from t2s_env.errors import CheckpointError
from t2s_env.instructions import coord_variant
from t2s_env.integrations.trl_rows import LOAD_MODES, TrainRows, build_rows
from think2seg.agents.hf_vlm.callbacks import RewardMonitor, T2SCallback, ValData, make_callback
from think2seg.agents.hf_vlm.training import (grpo_trainer_class, load_trainable, lora_config, model_family,
                                              resolve_model_path)
from think2seg.scripts.config import config_values, parse_config, save_resolved_config
from think2seg.scripts.run_folder import prepare_output_dir, resume_alias
from think2seg.scripts.run_folder import resolve_resume as resolve_resume_in

# ---------------------------------------------------------------------------------------
# 1. Configuration: this script's dataclass beside trl's GRPOConfig and ModelConfig.
# ---------------------------------------------------------------------------------------
@dataclass
class ScriptArguments:
    """Options of this script; every other key is a field of trl's ``GRPOConfig`` (training)
    or ``ModelConfig`` (model, LoRA). ``t2s train grpo --help`` lists them all."""

    # -- data ----------------------------------------------------------------------------
    dataset: str = field(default="earthreason:train", metadata={"help": "any make_dataset spec name:split"})
    root: str | None = field(default=None, metadata={"help": "dataset root folder"})
    question_mode: Literal["redraw", "all", "first", "random"] = field(
        default="redraw", metadata={"help": "which question of an image each epoch (module docstring)"})
    image_size: int = field(default=840, metadata={"help": "protocol frame; a multiple of 28"})
    max_images: int | None = field(default=None, metadata={"help": "use only the first N images (smoke runs)"})
    # -- validation during training (val_steps 0 = off) -----------------------------------
    val_dataset: str | None = "earthreason:val"
    val_root: str | None = field(default=None, metadata={"help": "default: root"})
    val_samples: int = 16
    val_steps: int = field(default=100, metadata={"help": "greedy validation with overlays every N steps"})
    val_max_new_tokens: int | None = field(default=None, metadata={"help": "default: max_completion_length"})
    val_batch_size: int = 8
    # -- environment / reward (the weights are GRPOConfig's reward_weights: iou, json, think)
    segmenter: str = "sam2:small"
    segmenter_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "e.g. {checkpoint: PATH}"})
    prompt_variant: str = "bbox+2pos"
    coord_frame: str | None = field(default=None, metadata={
        "help": "frame of the answers (abs, rel1000, rel1); default the model family's"})
    allow_frame_mismatch: bool = field(default=False, metadata={
        "help": "train in coord_frame even where it contradicts the model family's frame"})
    # -- model extras ----------------------------------------------------------------------
    family: str | None = field(default=None, metadata={
        "help": "qwen2_5_vl, qwen3_vl, internvl or llava: checked against the checkpoint; what tiny:DIR "
                "builds (into DIR-<family> when DIR holds another family)"})
    processor: str | None = field(default=None, metadata={"help": "when the model folder lacks one"})
    freeze_vision: bool = False
    # -- logging and threads -----------------------------------------------------------------
    sample_log_steps: int = field(default=10, metadata={"help": "completions as TensorBoard text every N steps"})
    samples_to_log: int = 4
    debug_dump: bool = field(default=False, metadata={"help": "per-completion JSONL under output_dir/debug"})
    torch_threads: int | None = field(
        default=None, metadata={"help": "torch intra-op threads per process (CPU recipes: 1); null = torch's default"})


#: This script's choices where they differ from trl's defaults (a recipe overrides them).
DEFAULTS: dict[str, Any] = {
    "output_dir": "runs/grpo",
    "report_to": ["tensorboard"],
    "logging_steps": 1,
    "save_steps": 100,
    "save_total_limit": 3,
    "data_seed": 0,
    "reward_weights": RewardWeights().as_list(),
    "shuffle_dataset": False,
    "activation_checkpointing_kwargs": {"use_reentrant": False},
}


@dataclass
class Config:
    script: ScriptArguments
    training: Any  # trl.GRPOConfig, as handed to the trainer (num_train_epochs=1)
    model: Any  # trl.ModelConfig
    epochs: int  # the recipe's num_train_epochs, materialised in the rows


_NO_MODEL = ("no model: pass a recipe (--config scripts/configs/grpo_tiny_cpu.yaml runs offline on a CPU) "
             "or model_name_or_path=DIR|hub-id")


def load_config(argv: Sequence[str] = ()) -> Config:
    """Parse and check the whole configuration; raises ConfigError before anything loads.
    ``--resume`` (alone: ``auto``) is short for ``resume_from_checkpoint``."""
    if not any(t.split("=", 1)[0].lstrip("-").replace("-", "_") in ("config", "model_name_or_path", "help", "h",
                                                                   "print_config") for t in argv):
        raise ConfigError(_NO_MODEL)  # at once: importing trl to parse would take seconds
    from trl import GRPOConfig

    script, model, training = parse_config(resume_alias(argv), ScriptArguments, model_arguments(), GRPOConfig,
                                           prog="t2s train grpo", defaults=DEFAULTS,
                                           description="GRPO training of a Qwen2.5-VL prompter on the Think2Seg reward (trl).")
    epochs = check_config(script, training, model)
    training.num_train_epochs = 1  # trl reads the materialised epochs once (module docstring)
    return Config(script, training, model, epochs)


@functools.cache
def model_arguments() -> type:
    """trl's ``ModelConfig`` that requires a model: with no recipe there is no default hub
    model to download. Parsed before ``GRPOConfig``, whose own checks assume a GPU."""
    from trl import ModelConfig

    @dataclass
    class ModelArguments(ModelConfig):
        def __post_init__(self) -> None:
            super().__post_init__()
            if self.model_name_or_path is None:
                raise ConfigError(_NO_MODEL)

    return ModelArguments


def check_config(script: ScriptArguments, training: Any, model: Any) -> int:
    """What trl cannot know about this script; returns the number of epochs."""
    if not config_values(training).get("output_dir"):  # trl would fall back to ./trainer_output
        raise ConfigError("output_dir is empty; pass output_dir=<a folder for checkpoints and logs>")
    if script.image_size < 28 or script.image_size % 28:
        raise ConfigError(f"image_size must be a positive multiple of 28 (so the processor keeps it), got {script.image_size}")
    epochs = training.num_train_epochs
    if epochs < 1 or float(epochs) != int(epochs):
        raise ConfigError(f"num_train_epochs must be a whole number >= 1 (epochs are materialised as rows), got {epochs}")
    if training.max_steps < -1:  # -1 is trl's "not set: num_train_epochs decides"
        raise ConfigError(f"max_steps must be >= 1, or -1 to let num_train_epochs decide, got {training.max_steps}")
    if training.num_generations < 2:
        raise ConfigError(f"num_generations must be >= 2 (GRPO compares completions of a group), got {training.num_generations}")
    if training.shuffle_dataset:
        raise ConfigError("shuffle_dataset must stay false: the rows are already a seeded order per epoch, "
                          "which --resume relies on")
    if training.remove_unused_columns:
        raise ConfigError("remove_unused_columns must stay false: the reward reads the sample_id column")
    weights = training.reward_weights or []
    if len(weights) != 3 or not all(math.isfinite(w) for w in weights):
        raise ConfigError(f"reward_weights must be 3 finite numbers (t2s_iou, t2s_json, t2s_think), got {weights}")
    if training.bf16 and training.use_cpu:
        raise ConfigError("bf16=true with use_cpu=true is slow and unsupported here; set bf16=false for CPU runs")
    if training.use_vllm and importlib.util.find_spec("vllm") is None:
        raise ConfigError("use_vllm=true needs vllm (pip install vllm); or set use_vllm=false")
    if model.dtype not in (None, "auto", "float32", "bfloat16", "float16"):
        raise ConfigError(f"dtype must be auto, float32, bfloat16 or float16, got {model.dtype!r}")
    if model.load_in_4bit or model.load_in_8bit:
        raise ConfigError("load_in_4bit / load_in_8bit are not supported by this script; use use_peft=true instead")
    if model.lora_target_parameters:
        raise ConfigError("lora_target_parameters is not supported by this script; use lora_target_modules")
    if model.model_revision not in (None, "", "main"):
        # The policy, its processor and trl's reference copy would each resolve the id on their own.
        raise ConfigError(f"model_revision={model.model_revision} is not supported; download that revision "
                          f"(hf download ID --revision {model.model_revision} --local-dir DIR) and pass "
                          "model_name_or_path=DIR")
    if script.torch_threads is not None and script.torch_threads < 1:
        raise ConfigError(f"torch_threads must be >= 1 or null, got {script.torch_threads}")
    get_variant(script.prompt_variant)
    if script.family is not None:
        from think2seg.agents.hf_vlm.families import get_family

        get_family(script.family)
    if script.coord_frame is not None:
        get_coord_frame(script.coord_frame)
    return int(epochs)


# ---------------------------------------------------------------------------------------
# 2. Training rows: (image, question) per epoch, images loaded on access.
# ---------------------------------------------------------------------------------------
def build_train_data(cfg: Config) -> TrainRows:
    """Rows for ``num_train_epochs`` epochs (t2s_env.integrations.trl_rows)."""
    load_mode = LOAD_MODES[cfg.script.question_mode]
    base = make_dataset(cfg.script.dataset, root=cfg.script.root, question=load_mode, seed=cfg.training.data_seed)
    samples = list(base)
    if cfg.script.max_images is not None:
        keep = set(sorted({s.image_id for s in samples})[: cfg.script.max_images])
        samples = [s for s in samples if s.image_id in keep]
    if not samples:
        raise ConfigError(f"dataset {cfg.script.dataset} has no samples")
    return build_rows(base, samples=samples, epochs=cfg.epochs, seed=cfg.training.data_seed,
                      image_size=cfg.script.image_size, prompt_variant=cfg.script.prompt_variant,
                      question_mode=cfg.script.question_mode,
                      cache_items=max(64, 2 * cfg.training.per_device_train_batch_size))


def build_val_data(cfg: Config) -> ValData | None:
    """A few validation samples (one seeded question per image), loaded once."""
    if not cfg.script.val_dataset or cfg.script.val_steps <= 0 or cfg.script.val_samples <= 0:
        return None
    ds = make_dataset(cfg.script.val_dataset, root=cfg.script.val_root or cfg.script.root, question="random", seed=cfg.training.data_seed)
    samples = list(ds)[: cfg.script.val_samples]
    if not samples:
        raise ConfigError(f"validation dataset {cfg.script.val_dataset} has no samples; set val_dataset=null to skip validation")
    framed = [load_framed(s, cfg.script.image_size) for s in samples]
    return ValData(
        images=[f.image for f in framed],
        masks=[f.gt_mask for f in framed],
        questions=[s.question for s in samples],
        messages=[build_messages(s.question, cfg.script.prompt_variant) for s in samples],
    )


# ---------------------------------------------------------------------------------------
# 3. Rewards and what they log (agents/hf_vlm/callbacks.py).
# ---------------------------------------------------------------------------------------
def build_rewards(cfg: Config, data: TrainRows, monitor: RewardMonitor) -> tuple[list[Callable], Scorer]:
    """The environment's group-scoring reward callables, with the segmenter on this rank's device."""
    from accelerate import PartialState

    options = dict(cfg.script.segmenter_options)
    if cfg.script.segmenter.split(":")[0] == "sam2" and "device" not in options:
        options["device"] = str(PartialState().device)  # each rank its own GPU (upstream: all on one)
    from t2s_env import make_segmenter

    segmenter = make_segmenter(cfg.script.segmenter, **options)
    scorer = Scorer(segmenter, cfg.script.prompt_variant, parser_mode="strict", reward_weights=RewardWeights(*cfg.training.reward_weights),
                    coord_frame=cfg.script.coord_frame or "abs")
    funcs = make_reward_functions(scorer, gt_mask_lookup=data.gt_mask, on_scores=monitor)
    funcs[0] = monitor.wrap(funcs[0])
    return funcs, scorer


# ---------------------------------------------------------------------------------------
# 4. Model, trainer and the entry point (model loading: agents/hf_vlm/training.py).
# ---------------------------------------------------------------------------------------
@dataclass
class Run:
    cfg: Config
    trainer: Any
    data: TrainRows
    scorer: Scorer
    monitor: RewardMonitor
    callback: T2SCallback
    model_path: str
    tensorboard_dir: str


def resolve_family(cfg: Config, model_path: str) -> Any:
    """The model's family (checked against ``family``) and the coordinate frame its answers
    are trained in: ``coord_frame`` or the family's; a contradiction is refused unless
    ``allow_frame_mismatch``. Sets ``coord_frame`` and the frame's prompt variant."""
    family = model_family(model_path, cfg.script.family, need_processor=cfg.script.processor is None)
    frame = cfg.script.coord_frame or family.coord_frame
    if not cfg.script.allow_frame_mismatch:
        check_frame_match(family.coord_frame, frame, f"{model_path} ({family.label})",
                          f"set coord_frame={family.coord_frame}, or allow_frame_mismatch=true to train in {frame}")
    cfg.script.coord_frame = get_coord_frame(frame).name
    cfg.script.prompt_variant = coord_variant(cfg.script.prompt_variant, cfg.script.coord_frame).name
    return family


def build_run(cfg: Config) -> Run:
    """Everything up to ``trainer.train()``; tests use it to inspect or spy."""
    from accelerate import PartialState
    from transformers.integrations import TensorBoardCallback

    from think2seg.agents.hf_vlm.loading import load_processor

    state = PartialState()
    prepare_output_dir(cfg.training.output_dir)
    model_path = resolve_model_path(cfg.model.model_name_or_path, family=cfg.script.family,
                                    output_dir=cfg.training.output_dir, image_size=cfg.script.image_size)
    family = resolve_family(cfg, model_path)
    data = build_train_data(cfg)
    val = build_val_data(cfg)
    processor = load_processor(os.path.expanduser(cfg.script.processor or model_path), family, cfg.script.image_size)
    monitor = RewardMonitor(cfg.script.samples_to_log,
                            os.path.join(cfg.training.output_dir, "debug") if cfg.script.debug_dump else None,
                            state.process_index)
    reward_funcs, scorer = build_rewards(cfg, data, monitor)
    # after GRPOConfig (parsed first): ZeRO-3 must see it first
    model = load_trainable(model_path, cfg.model.dtype, cfg.model.attn_implementation, cfg.script.freeze_vision)
    callback = make_callback(monitor, val, scorer, prompt_variant=cfg.script.prompt_variant,
                             reward_weights=cfg.training.reward_weights, sample_log_steps=cfg.script.sample_log_steps,
                             max_new_tokens=cfg.script.val_max_new_tokens or cfg.training.max_completion_length,
                             val_steps=cfg.script.val_steps, val_batch_size=cfg.script.val_batch_size)
    trainer = grpo_trainer_class()(model=model, reward_funcs=reward_funcs, args=cfg.training, train_dataset=data.dataset,
                                   processing_class=processor, callbacks=[callback],
                                   peft_config=lora_config(cfg.model, cfg.script.freeze_vision))
    callback.trainer = trainer
    tb_dir = os.path.join(cfg.training.output_dir, "tensorboard")
    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, TensorBoardCallback):
            cb.logging_dir = tb_dir
    return Run(cfg, trainer, data, scorer, monitor, callback, model_path, tb_dir)


def resolve_resume(cfg: Config) -> str | None:
    """None (fresh), or the checkpoint to resume from (``auto``: the latest in output_dir)."""
    from transformers.trainer_utils import get_last_checkpoint

    resume = cfg.training.resume_from_checkpoint
    return resolve_resume_in(resume, cfg.training.output_dir, latest=get_last_checkpoint,
                             is_checkpoint=lambda path: os.path.isfile(os.path.join(path, "trainer_state.json")),
                             refusal=CheckpointError(f"{resume} is not a trainer checkpoint (no trainer_state.json); "
                                                     "pass a checkpoint-N folder from output_dir or --resume auto"))


def main(argv: Sequence[str] | None = None) -> int:
    """GRPO training of a Qwen2.5-VL prompter with trl."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = load_config(argv)  # every config mistake stops here, before anything loads
    if cfg.script.torch_threads is not None:
        import torch

        torch.set_num_threads(cfg.script.torch_threads)
    resume = resolve_resume(cfg)
    run = build_run(cfg)
    tr = run.trainer
    if tr.accelerator.is_main_process:
        save_resolved_config(cfg.training.output_dir, cfg.script, cfg.training, cfg.model, argv=argv)
        print(f"t2s: {len(run.data.dataset)} rows ({run.data.rows_per_epoch} per epoch × {cfg.epochs}), "
              f"G={cfg.training.num_generations}, model {run.model_path}, segmenter {cfg.script.segmenter}, "
              f"TensorBoard {run.tensorboard_dir}" + (f", resuming {resume}" if resume else ""), file=sys.stderr)
    tr.train(resume_from_checkpoint=resume)
    tr.save_model(cfg.training.output_dir)
    if tr.accelerator.is_main_process:
        print(f"t2s: saved the final model to {cfg.training.output_dir} (global step {tr.state.global_step})",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except T2SError as exc:
        print(f"t2s: error: {exc}", file=sys.stderr)
        sys.exit(2)
