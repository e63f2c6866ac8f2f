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

The file reads top to bottom: configuration, the training rows, the model, the rewards,
the TensorBoard extras, then ``main``. See docs/training.md for the recipes and memory figures.

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

import functools
import importlib.util
import json
import math
import os
import sys
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

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
from t2s_env.coords import check_frame_match, get_coord_frame
from t2s_env.errors import CheckpointError
from t2s_env.instructions import coord_variant
from think2seg.scripts.config import config_values, parse_config, save_resolved_config

DEFAULT_LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


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

    script, model, training = parse_config(_resume_alias(argv), ScriptArguments, model_arguments(), GRPOConfig,
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


def _resume_alias(argv: Sequence[str]) -> list[str]:
    """``--resume [CHECKPOINT]`` -> ``--resume_from_checkpoint CHECKPOINT|auto``."""
    out: list[str] = []
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--resume="):
            out += ["--resume_from_checkpoint", tok.split("=", 1)[1] or "auto"]
        elif tok == "--resume":
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            takes_next = nxt is not None and not nxt.startswith("-") and "=" not in nxt
            out += ["--resume_from_checkpoint", nxt if takes_next else "auto"]
            i += takes_next
        else:
            out.append(tok)
        i += 1
    return out


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


def build_train_data(cfg: Config) -> TrainData:
    """Rows for ``num_train_epochs`` epochs; each epoch a seeded permutation of the units
    (images, or questions in ``all`` mode)."""
    from datasets import Dataset

    load_mode = {"redraw": "first", "all": "all", "first": "first", "random": "random"}[cfg.script.question_mode]
    base = make_dataset(cfg.script.dataset, root=cfg.script.root, question=load_mode, seed=cfg.training.data_seed)
    samples = list(base)
    if cfg.script.max_images is not None:
        keep = sorted({s.image_id for s in samples})[: cfg.script.max_images]
        keep_set = set(keep)
        samples = [s for s in samples if s.image_id in keep_set]
    if not samples:
        raise ConfigError(f"dataset {cfg.script.dataset} has no samples")
    # EarthReason-layout data has one mask per image, so any question of an image can be
    # re-drawn; referring datasets keep each expression with its own mask. (The reward
    # encodes each image once either way: it groups by image_id, then by sample_id.)
    one_mask_per_image = isinstance(base, EarthReasonDataset)
    rows: dict[str, list[Any]] = defaultdict(list)
    sample_index: dict[str, int] = {}
    for epoch in range(cfg.epochs):
        order = np.random.default_rng([cfg.training.data_seed, epoch]).permutation(len(samples))
        for u in order.tolist():
            s = samples[u]
            # Re-drawing needs questions that share the sample's mask: true of EarthReason's
            # per-image questions; referring datasets keep each expression with its own mask.
            mode = cfg.script.question_mode if one_mask_per_image else "first"
            question, k = _question_choice(s, mode, cfg.training.data_seed, epoch)
            sid = f"{s.image_id}#q{k}" if cfg.script.question_mode in ("redraw", "all") and one_mask_per_image else s.sample_id
            sample_index[sid] = u
            rows["row_id"].append(len(rows["row_id"]))
            rows["epoch"].append(epoch)
            rows["sample_id"].append(sid)
            rows["image_id"].append(s.image_id)
            rows["question"].append(question)
            rows["unit"].append(u)
    ds = Dataset.from_dict(dict(rows))
    cache = FrameCache(samples, cfg.script.image_size, capacity=max(64, 2 * cfg.training.per_device_train_batch_size))
    variant = get_variant(cfg.script.prompt_variant)

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
# 3. Model and processor.
# ---------------------------------------------------------------------------------------
def resolve_model_path(cfg: Config) -> str:
    """A local folder for ``model_name_or_path``. ``tiny:DIR`` builds a tiny random
    Qwen2.5-VL into DIR (once, on the main process); a hub id is checked with one quick
    request, so that an offline machine fails at once instead of retrying every file for
    minutes: offline, a copy in the local hub cache is used, else a one-line error."""
    name = cfg.model.model_name_or_path
    if name.startswith("tiny:"):
        from accelerate import PartialState

        from think2seg.agents.hf_vlm.tiny import build_tiny, tiny_dir_for

        family = cfg.script.family or "qwen2_5_vl"
        path = os.path.expanduser(name[len("tiny:") :] or os.path.join(cfg.training.output_dir, "tiny-qwen"))
        path = str(tiny_dir_for(family, path))  # DIR, or DIR-<family> when DIR holds another family
        with PartialState().main_process_first():
            build_tiny(family, path, image_size=cfg.script.image_size)
        return path
    from think2seg.agents.hf_vlm.loading import is_local

    if is_local(name):
        return os.path.expanduser(name)
    return resolve_hub_model(name)


def resolve_hub_model(repo_id: str, revision: str | None = None) -> str:
    """``repo_id`` when the hub answers; offline, the cached snapshot folder; else ConfigError."""
    import huggingface_hub
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    def cached() -> str | None:
        hit = try_to_load_from_cache(repo_id, "config.json", revision=revision)
        return os.path.dirname(hit) if isinstance(hit, str) else None

    if not huggingface_hub.constants.HF_HUB_OFFLINE:
        try:
            huggingface_hub.HfApi().model_info(repo_id, revision=revision, timeout=10)
            return repo_id
        except (RepositoryNotFoundError, RevisionNotFoundError):
            raise ConfigError(f"model {repo_id}{'@' + revision if revision else ''} is not on the hub; "
                              "pass a local checkpoint folder or an existing hub id") from None
        except Exception:  # noqa: BLE001 - no network (each HTTP client has its own errors): try the cache
            pass
    path = cached()
    if path is None:
        raise ConfigError(
            f"model {repo_id} is not in the local hub cache and the hub cannot be reached; download it where there "
            f"is a network (hf download {repo_id} --local-dir DIR) and pass model_name_or_path=DIR"
        )
    return path


def load_policy(path: str, cfg: Config) -> Any:
    import torch

    from think2seg.agents.hf_vlm.loading import load_model

    dtype = cfg.model.dtype if cfg.model.dtype in (None, "auto") else getattr(torch, cfg.model.dtype)
    model = load_model(path, dtype=dtype, attn_implementation=cfg.model.attn_implementation)
    if cfg.script.freeze_vision:
        inner = getattr(model, "model", model)  # Qwen: visual; InternVL, LLaVA: vision_tower
        visual = next((v for v in (getattr(inner, "visual", None), getattr(inner, "vision_tower", None),
                                   getattr(model, "visual", None)) if v is not None), None)
        if visual is None:
            raise CheckpointError(f"{path}: cannot find the vision tower to freeze")
        for p in visual.parameters():
            p.requires_grad_(False)
    return model


def lora_config(cfg: Config) -> Any:
    """ModelConfig's LoRA (``use_peft``), on the language model only when the vision tower
    is frozen (its MLP uses the same module names, hence the regex)."""
    m = cfg.model
    if not m.use_peft:
        return None
    from peft import LoraConfig

    mods = "|".join(sorted(set(m.lora_target_modules or DEFAULT_LORA_MODULES)))
    target = rf".*language_model.*\.({mods})" if cfg.script.freeze_vision else rf".*\.({mods})"
    return LoraConfig(
        r=m.lora_r,
        lora_alpha=m.lora_alpha,
        lora_dropout=m.lora_dropout,
        target_modules=target,
        modules_to_save=m.lora_modules_to_save,
        use_rslora=m.use_rslora,
        use_dora=m.use_dora,
        task_type=m.lora_task_type,
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


def build_rewards(cfg: Config, data: TrainData, monitor: RewardMonitor) -> tuple[list[Callable], Scorer]:
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
# 5. TensorBoard extras: sample completions as text, periodic validation with overlays.
# ---------------------------------------------------------------------------------------
class T2SCallback:
    """Writes sample completions and validation results into trl's TensorBoard run. A
    transformers ``TrainerCallback`` once made by :func:`make_callback` (the base class is
    added there so that importing this script, e.g. for ``t2s --help``, skips ~2 s of
    transformers' trainer imports)."""

    def __init__(self, cfg: Config, monitor: RewardMonitor, val: ValData | None, scorer: Scorer) -> None:
        self.cfg = cfg
        self.monitor = monitor
        self.val = val
        self.val_scorer = Scorer(scorer.segmenter, cfg.script.prompt_variant, parser_mode="lenient", coord_frame=scorer.coord_frame,
                                 reward_weights=RewardWeights(*cfg.training.reward_weights), keep_masks=True)
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
        if self.cfg.script.sample_log_steps > 0 and step % self.cfg.script.sample_log_steps == 0 and state.is_world_process_zero:
            self.log_samples(step)
        if self.val is not None and self.cfg.script.val_steps > 0 and step % self.cfg.script.val_steps == 0:
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

        from think2seg.agents.hf_vlm.generation import generate_completions
        from t2s_env.render import draw_overlay, image_grid

        tr = self.trainer
        val = self.val
        max_new = self.cfg.script.val_max_new_tokens or self.cfg.training.max_completion_length
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
                do_sample=False, batch_size=self.cfg.script.val_batch_size, device=tr.accelerator.device,
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


@functools.cache
def _callback_class() -> type:
    from transformers import TrainerCallback

    return type("T2SCallback", (T2SCallback, TrainerCallback), {})


def make_callback(cfg: Config, monitor: RewardMonitor, val: ValData | None, scorer: Scorer) -> T2SCallback:
    return _callback_class()(cfg, monitor, val, scorer)


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
    cfg: Config
    trainer: Any
    data: TrainData
    scorer: Scorer
    monitor: RewardMonitor
    callback: T2SCallback
    model_path: str
    tensorboard_dir: str


def prepare_output_dir(path: str) -> None:
    """Create ``output_dir`` or fail with one line (a file in the way, no permission)."""
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"output_dir {path} cannot be created: it or a folder above it is a file; "
                          "pass output_dir=<a folder path>") from None
    except OSError as exc:
        raise ConfigError(f"output_dir {path} cannot be created: {exc.strerror or exc}; pass output_dir=<a writable folder>") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"output_dir {path} is not writable; pass output_dir=<a writable folder>")


def resolve_family(cfg: Config, model_path: str) -> Any:
    """The model's family (checked against ``family``) and the coordinate frame its answers
    are trained in: ``coord_frame`` or the family's; a contradiction is refused unless
    ``allow_frame_mismatch``. Sets ``coord_frame`` and the frame's prompt variant."""
    from think2seg.agents.hf_vlm.families import get_family
    from think2seg.agents.hf_vlm.loading import adapter_base, check_model_dir, family_of_dir

    base = adapter_base(model_path) if os.path.isdir(model_path) else None
    if base is None:
        family = check_model_dir(model_path, need_processor=cfg.script.processor is None)
    else:
        family = family_of_dir(os.path.expanduser(base)) if os.path.isdir(os.path.expanduser(base)) else None
    if family is None:  # a hub id: its config is read when loaded
        family = get_family(cfg.script.family or "qwen2_5_vl")
    if cfg.script.family is not None and get_family(cfg.script.family).name != family.name:
        raise ConfigError(f"{model_path} holds a {family.label} model but family={cfg.script.family}; "
                          f"set family={family.name} or pass a {get_family(cfg.script.family).label} checkpoint")
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
    model_path = resolve_model_path(cfg)
    family = resolve_family(cfg, model_path)
    data = build_train_data(cfg)
    val = build_val_data(cfg)
    processor = load_processor(os.path.expanduser(cfg.script.processor or model_path), family, cfg.script.image_size)
    monitor = RewardMonitor(cfg.script.samples_to_log,
                            os.path.join(cfg.training.output_dir, "debug") if cfg.script.debug_dump else None,
                            state.process_index)
    reward_funcs, scorer = build_rewards(cfg, data, monitor)
    model = load_policy(model_path, cfg)  # after GRPOConfig (parsed first): ZeRO-3 must see it first
    callback = make_callback(cfg, monitor, val, scorer)
    trainer = _trainer_class()(
        model=model,
        reward_funcs=reward_funcs,
        args=cfg.training,
        train_dataset=data.dataset,
        processing_class=processor,
        peft_config=lora_config(cfg),
        callbacks=[callback],
    )
    callback.trainer = trainer
    tb_dir = os.path.join(cfg.training.output_dir, "tensorboard")
    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, TensorBoardCallback):
            cb.logging_dir = tb_dir
    return Run(cfg, trainer, data, scorer, monitor, callback, model_path, tb_dir)


def resolve_resume(cfg: Config) -> str | None:
    """None (fresh), or the checkpoint to resume from (``auto``: the latest in output_dir)."""
    resume = cfg.training.resume_from_checkpoint
    if not resume:
        return None
    if resume == "auto":
        from transformers.trainer_utils import get_last_checkpoint

        out = cfg.training.output_dir
        last = get_last_checkpoint(out) if os.path.isdir(out) else None
        if last is None:
            print(f"t2s: no checkpoint in {out}; starting fresh", file=sys.stderr)
        return last
    path = os.path.expanduser(resume)
    if not os.path.isfile(os.path.join(path, "trainer_state.json")):
        raise CheckpointError(
            f"{resume} is not a trainer checkpoint (no trainer_state.json); pass a checkpoint-N folder "
            "from output_dir or --resume auto"
        )
    return path


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
        n_rows = len(run.data.dataset)
        print(
            f"t2s: {n_rows} rows ({run.data.rows_per_epoch} per epoch × {cfg.epochs}), "
            f"G={cfg.training.num_generations}, model {run.model_path}, segmenter {cfg.script.segmenter}, "
            f"TensorBoard {run.tensorboard_dir}" + (f", resuming {resume}" if resume else ""),
            file=sys.stderr,
        )
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
