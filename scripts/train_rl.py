"""PPO (tianshou 2.x) on Think2Seg through the Gymnasium API alone.

    t2s train rl --config scripts/configs/rl_ppo_synthetic.yaml [key=value ...] output_dir=DIR

The agent acts through :mod:`t2s_env.wrappers` (a normalised box in, the frame at
``obs_size`` px plus a hashed bag of words of the question out) in a vector env from
:func:`t2s_env.make_vec`, so every step scores every action. Episodes last one step, so
PPO's advantage is ``reward − V(obs)``; with ``group_size`` > 1 (the default recipe) the
sub-envs of a group are seeded alike and answer the same image, and an answer's advantage
is its reward minus the mean of the group's other answers (the critic then only covers
observations answered once, normally none, so ``loss/critic`` reads 0). Every
``eval_every`` updates the deterministic policy answers every image of the val split once
(gIoU under the strict protocol, i.e. the reward's IoU term: an empty target scores 1 iff
the answer is ``[]``).

Writes ``DIR/config.yaml`` (resolved config, versions, git commit), TensorBoard scalars
under ``DIR/tb`` (``train/episode_reward``, ``train/iou``, ``train/reward_{iou,json,think}``,
``loss/{actor,critic,entropy,total}``, ``policy/std``, ``policy/lr``, ``val/giou``, ``val/reward``),
``DIR/checkpoints/step_<env_steps>.pt`` (networks, optimizer, RNG, counters),
and ``DIR/policy.pt``, the plug-in agent: ``t2s bench --agents rl:DIR/policy.pt``.
``resume=auto`` continues from the newest checkpoint in ``DIR/checkpoints``.
"""

from __future__ import annotations

import functools
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from t2s_env.errors import ConfigError
from t2s_env.progress import progress_bar

try:  # installed as think2seg.scripts / think2seg.agents; from a bare checkout as files
    from think2seg.agents.rl.policy import ARCHITECTURES, BoxActor, PolicySpec, save_policy
    from think2seg.agents.rl.evaluate import SplitEvaluator
    from think2seg.scripts.config import parse_config, save_resolved_config
    from think2seg.scripts.run_folder import latest_step_checkpoint, load_step_checkpoint, prepare_output_dir, save_step_checkpoint
    from think2seg.scripts.run_folder import resolve_resume as resolve_resume_in
except ImportError:  # pragma: no cover
    import _checkout  # noqa: F401

    from think2seg.agents.rl.policy import ARCHITECTURES, BoxActor, PolicySpec, save_policy
    from think2seg.agents.rl.evaluate import SplitEvaluator
    from think2seg.scripts.config import parse_config, save_resolved_config
    from think2seg.scripts.run_folder import latest_step_checkpoint, load_step_checkpoint, prepare_output_dir, save_step_checkpoint
    from think2seg.scripts.run_folder import resolve_resume as resolve_resume_in

PROG = "t2s train rl"
CHECKPOINT_FORMAT = "think2seg-rl-checkpoint"


@dataclass
class RLConfig:
    """Options of ``t2s train rl`` (every key of a recipe; ``key=value`` overrides)."""

    output_dir: str = "runs/rl"
    # data and env
    dataset: str = "synthetic"
    root: str | None = None
    val_root: str | None = None  # default: the embedded set for synthetic, else root
    train_split: str = "train"
    val_split: str = "val"
    # dataset=synthetic without root: > 0 trains on that many generated train images (made
    # once into the synthetic cache, $T2S_CACHE_DIR or ~/.cache/think2seg) instead of the
    # embedded split's 120; the val split stays the embedded one. Ignored when root is set.
    synthetic_train_images: int = 0
    synthetic_train_seed: int = 1
    segmenter: str = "box"
    frame_size: int = 128
    prompt_variant: str = "bbox+2pos"
    # observation and action
    obs_size: int = 64
    question_dim: int = 256
    n_points: int = 0
    presence: bool = False
    # training signal (training envs only; evaluation uses the env's reward)
    giou_shaping: float = 0.0
    # + hit_shaping · exp(−d / hit_radius), d the distance from the box's centre to the
    # nearest target pixel (frame-side units): credit for finding any instance, whatever
    # the box size (a 4 px pool hit with a 20 px box has IoU 0.04; this term is 1)
    hit_shaping: float = 0.0
    hit_radius: float = 0.03125
    # + cover_shaping · the share of the target's pixels inside the box: GrabCut (and SAM)
    # need the whole object in the box, the box segmenter's IoU prefers tight boxes
    cover_shaping: float = 0.0
    augment: bool = False
    # networks
    arch: str = "film-heat"
    channels: int = 32
    init_std: float = 0.35
    # PPO
    num_envs: int = 8
    vectorization_mode: Literal["sync", "async"] = "sync"
    total_env_steps: int = 30720
    steps_per_update: int = 512
    batch_size: int = 128
    update_epochs: int = 4
    lr: float = 0.001
    # "linear": the learning rate falls linearly to 0 at total_env_steps (what steadies the
    # cell-box actor late in training); "constant": it stays at lr
    lr_schedule: Literal["constant", "linear"] = "constant"
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    eps_clip: float = 0.2
    max_grad_norm: float = 0.5
    # > 1: sub-envs in consecutive blocks of group_size are seeded alike, so each image is
    # answered group_size times per step; an answer's advantage is its reward minus the mean
    # of the others' (leave-one-out), and the networks run once per distinct image
    group_size: int = 1
    # bookkeeping
    eval_every: int = 5
    checkpoint_every: int = 20
    max_time_s: float | None = None
    seed: int = 0
    torch_threads: int | None = 1
    resume: str | None = None

    def __post_init__(self) -> None:
        positive = ("frame_size", "num_envs", "total_env_steps", "steps_per_update", "batch_size", "update_epochs",
                    "eval_every", "checkpoint_every", "channels", "group_size")
        for name in positive:
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        for name, low, high in (("obs_size", 16, 256), ("frame_size", 16, 4096), ("question_dim", 8, 65536),
                                ("n_points", 0, 8), ("synthetic_train_images", 0, 100_000)):
            if not low <= getattr(self, name) <= high:
                raise ConfigError(f"{name} must be in [{low}, {high}], got {getattr(self, name)}")
        if self.obs_size > self.frame_size:
            raise ConfigError(f"obs_size ({self.obs_size}) must not exceed frame_size ({self.frame_size})")
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        if self.arch == "cell-box" and (self.n_points or self.presence):
            raise ConfigError("arch=cell-box answers with a box only: set n_points=0 and presence=false")
        if self.channels % 2:
            raise ConfigError(f"channels must be even, got {self.channels}")
        if self.num_envs % self.group_size:
            raise ConfigError(f"num_envs ({self.num_envs}) must be a multiple of group_size ({self.group_size})")
        if self.steps_per_update % self.num_envs:
            raise ConfigError(f"steps_per_update ({self.steps_per_update}) must be a multiple of num_envs ({self.num_envs})")
        for name in ("lr", "init_std", "eps_clip", "hit_radius"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {value}")
        for name in ("ent_coef", "vf_coef", "max_grad_norm", "giou_shaping", "hit_shaping", "cover_shaping"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise ConfigError(f"max_time_s must be > 0 or null, got {self.max_time_s}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"torch_threads must be >= 1 or null, got {self.torch_threads}")
        if not self.output_dir:
            raise ConfigError("output_dir must be a folder path, e.g. output_dir=runs/rl")

    @property
    def shaped(self) -> bool:
        """Whether the training reward has a shaping term (which reads the GT mask)."""
        return self.giou_shaping > 0 or self.hit_shaping > 0 or self.cover_shaping > 0

    def policy_spec(self) -> PolicySpec:
        return PolicySpec(obs_size=self.obs_size, question_dim=self.question_dim, channels=self.channels,
                          n_points=self.n_points, presence=self.presence, prompt_variant=self.prompt_variant,
                          arch=self.arch)

    def train_root(self) -> str | None:
        """Where the train split lives: ``root``, or the generated synthetic set (made on
        first use, then read from the cache)."""
        if not self.synthetic_train_images or self.dataset != "synthetic" or self.root is not None:
            return self.root
        from t2s_env.datasets.synthetic.writer import GENERATOR_VERSION, cache_dir, ensure_dataset

        n, seed = self.synthetic_train_images, self.synthetic_train_seed
        folder = cache_dir() / f"rl-synthetic-{GENERATOR_VERSION}-train{n}-seed{seed}"
        return str(ensure_dataset(folder, {self.train_split: n}, seed))

    def env_id_and_kwargs(self, split: str, root: str | None = None) -> tuple[str, dict[str, Any]]:
        kwargs: dict[str, Any] = dict(split=split, segmenter=self.segmenter, image_size=self.frame_size,
                                      prompt_variant=self.prompt_variant, root=root)
        if self.dataset == "synthetic":
            return "Think2Seg-Synthetic-v0", kwargs
        return "Think2Seg-EarthReason-v0", {**kwargs, "dataset_spec": self.dataset}


# -- env ------------------------------------------------------------------------------------


def make_wrappers(cfg: RLConfig, training: bool = False) -> list[Any]:
    from t2s_env.wrappers import BoxAction, NumericObservation, RandomDihedral, RewardShaping

    wrappers = [functools.partial(BoxAction, n_points=cfg.n_points, presence=cfg.presence),
                functools.partial(NumericObservation, size=cfg.obs_size, question_dim=cfg.question_dim)]
    if training and cfg.shaped:
        wrappers.append(functools.partial(RewardShaping, giou=cfg.giou_shaping, hit=cfg.hit_shaping,
                                          hit_radius=cfg.hit_radius, cover=cfg.cover_shaping))
    if training and cfg.augment:
        wrappers.append(RandomDihedral)
    return wrappers


# -- evaluation -----------------------------------------------------------------------------


def make_evaluator(cfg: RLConfig) -> SplitEvaluator:
    """The val split's evaluator, behind the evaluation wrappers (no shaping, no augmentation)."""
    import gymnasium as gym

    env_id, kwargs = cfg.env_id_and_kwargs(cfg.val_split, cfg.val_root or (None if cfg.dataset == "synthetic" else cfg.root))
    env = gym.make(env_id, **kwargs)
    for wrap in make_wrappers(cfg):
        env = wrap(env)
    return SplitEvaluator(env)


# -- checkpoints ----------------------------------------------------------------------------


def resolve_resume(cfg: RLConfig) -> Path | None:
    found = resolve_resume_in(cfg.resume, Path(cfg.output_dir) / "checkpoints", latest=latest_step_checkpoint,
                              is_checkpoint=os.path.isfile,
                              refusal=ConfigError(f"resume={cfg.resume}: no such checkpoint file; use resume=auto "
                                                  "or a DIR/checkpoints/step_N.pt"))
    return None if found is None else Path(found)


def save_checkpoint(cfg: RLConfig, algo: Any, env_steps: int, updates: int) -> Path:
    return save_step_checkpoint(Path(cfg.output_dir) / "checkpoints", env_steps, CHECKPOINT_FORMAT, algo,
                                env_steps=env_steps, updates=updates, config=asdict(cfg))


def load_checkpoint(path: Path, algo: Any) -> tuple[int, int]:
    payload = load_step_checkpoint(path, CHECKPOINT_FORMAT, PROG, algo)
    return int(payload["env_steps"]), int(payload["updates"])


# -- training -------------------------------------------------------------------------------


def build_algorithm(cfg: RLConfig, action_space: Any) -> tuple[Any, BoxActor, Any]:
    from think2seg.agents.rl.group_ppo import make_ppo

    linear = math.ceil(cfg.total_env_steps / cfg.steps_per_update) if cfg.lr_schedule == "linear" else None
    return make_ppo(cfg.policy_spec(), action_space, group_size=cfg.group_size, init_std=cfg.init_std, lr=cfg.lr,
                    linear_decay_updates=linear, eps_clip=cfg.eps_clip, vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef,
                    max_grad_norm=cfg.max_grad_norm, max_batchsize=cfg.steps_per_update)


def reset_seeds(cfg: RLConfig, updates: int) -> int | list[int]:
    """The train vector env's reset seed(s). A resumed run draws new images: the seed moves
    on with the update count. With ``group_size`` > 1 the sub-envs of one block share a
    seed, hence (one-step episodes, same-step autoreset) every later image, question and
    flip: each image is answered ``group_size`` times per step."""
    base = cfg.seed + 1000 * updates
    return [base + i // cfg.group_size for i in range(cfg.num_envs)] if cfg.group_size > 1 else base


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(cfg: RLConfig, argv: Sequence[str] = ()) -> dict[str, Any]:
    """Train; return a summary (env steps, val gIoU, policy path and sha256)."""
    import torch
    from tianshou.data import Collector, VectorReplayBuffer
    from tianshou.utils.torch_utils import policy_within_training_step
    from torch.utils.tensorboard import SummaryWriter

    import t2s_env
    from think2seg.agents.rl.venv import TianshouVectorEnv

    if cfg.torch_threads is not None:
        torch.set_num_threads(cfg.torch_threads)
    resume = resolve_resume(cfg)
    out = Path(cfg.output_dir)
    prepare_output_dir(out)  # or one line naming the fix
    save_resolved_config(out, cfg, argv=argv)
    _seed_everything(cfg.seed)

    env_id, kwargs = cfg.env_id_and_kwargs(cfg.train_split, cfg.train_root())
    if cfg.shaped:
        kwargs["privileged"] = True  # the shaping terms read the GT mask; the policy never sees it
    venv = t2s_env.make_vec(env_id, cfg.num_envs, cfg.vectorization_mode, wrappers=make_wrappers(cfg, training=True),
                            **kwargs)
    train_envs = TianshouVectorEnv(venv)
    val = make_evaluator(cfg)
    algo, actor, decay = build_algorithm(cfg, train_envs.action_space)
    env_steps, updates = 0, 0
    if resume is not None:
        env_steps, updates = load_checkpoint(resume, algo)
        if decay is not None:  # continue the schedule from the checkpoint's update
            decay.resume(algo, updates)
        print(f"t2s: resuming from {resume} (env step {env_steps}, update {updates})", file=sys.stderr)
    collector = Collector(algo, train_envs, VectorReplayBuffer(cfg.steps_per_update, cfg.num_envs))
    collector.reset(reset_buffer=True, gym_reset_kwargs={"seed": reset_seeds(cfg, updates)})

    writer = SummaryWriter(str(out / "tb"), purge_step=env_steps if env_steps else None)
    start = time.monotonic()
    last_val: dict[str, float] = {}
    if updates == 0:
        for name, giou in val.baselines(cfg.seed).items():
            writer.add_scalar(f"baseline/{name}", giou, 0)
        last_val = val.evaluate(actor)
        writer.add_scalar("val/giou", last_val["giou"], 0)
        writer.add_scalar("val/reward", last_val["reward"], 0)
    print(f"t2s: PPO on {env_id} {cfg.train_split} ({cfg.num_envs} {cfg.vectorization_mode} envs, segmenter "
          f"{cfg.segmenter}, frame {cfg.frame_size}, obs {cfg.obs_size}); TensorBoard {out / 'tb'}", file=sys.stderr)
    # a bar on a terminal, one line per update in a log: env steps (one action each), rate, reward
    progress = progress_bar(cfg.total_env_steps, "PPO", "action", initial=env_steps, log_every_s=0)
    while env_steps < cfg.total_env_steps:
        if cfg.max_time_s is not None and time.monotonic() - start > cfg.max_time_s:
            progress.write(f"t2s: max_time_s={cfg.max_time_s} reached at env step {env_steps}", file=sys.stderr)
            break
        with policy_within_training_step(algo.policy):  # sampled actions, updates allowed
            collector.collect(n_step=cfg.steps_per_update)
            stats = algo.update(buffer=collector.buffer, batch_size=cfg.batch_size, repeat=cfg.update_epochs)
        env_steps += cfg.steps_per_update
        collector.reset_buffer(keep_statistics=True)
        updates += 1
        scores = train_envs.drain_scores()
        progress.set_postfix(reward=float(scores[:, 0].mean()), iou=float(scores[:, 1].mean()))
        progress.update(cfg.steps_per_update)
        for tag, column in (("episode_reward", 0), ("iou", 1), ("reward_iou", 1), ("reward_json", 2), ("reward_think", 3)):
            writer.add_scalar(f"train/{tag}", scores[:, column].mean(), env_steps)
        for name, tag in (("actor_loss", "actor"), ("vf_loss", "critic"), ("ent_loss", "entropy"), ("loss", "total")):
            if getattr(stats, name, None) is not None:
                writer.add_scalar(f"loss/{tag}", getattr(stats, name).mean, env_steps)
        writer.add_scalar("policy/std", float(actor.log_std.detach().exp().mean()), env_steps)
        writer.add_scalar("policy/lr", algo.lr_schedulers[0].get_last_lr()[0] if algo.lr_schedulers else cfg.lr, env_steps)
        if updates % cfg.eval_every == 0 or env_steps >= cfg.total_env_steps:
            last_val = val.evaluate(actor)
            writer.add_scalar("val/giou", last_val["giou"], env_steps)
            writer.add_scalar("val/reward", last_val["reward"], env_steps)
            progress.write(f"t2s: step {env_steps}: train IoU {scores[:, 1].mean():.3f}, val gIoU "
                           f"{last_val['giou']:.2f}, val reward {last_val['reward']:.3f} "
                           f"({time.monotonic() - start:.0f} s)", file=sys.stderr)
        if updates % cfg.checkpoint_every == 0:
            save_checkpoint(cfg, algo, env_steps, updates)
    progress.close()
    save_checkpoint(cfg, algo, env_steps, updates)
    if not last_val:
        last_val = val.evaluate(actor)
    writer.flush()
    writer.close()
    meta = {"env_steps": env_steps, "updates": updates, "val_giou": last_val["giou"], "val_reward": last_val["reward"],
            "val_split": cfg.val_split, "segmenter": cfg.segmenter, "frame_size": cfg.frame_size,
            "coord_frame": val.env.unwrapped.coord_frame}  # the frame its answers were scored in
    sha = save_policy(out / "policy.pt", actor, meta)
    train_envs.close()
    val.close()
    summary = {**meta, "policy": str(out / "policy.pt"), "sha256": sha, "seconds": time.monotonic() - start}
    print(f"t2s: wrote {out / 'policy.pt'} (sha256 {sha[:16]}…) after {env_steps} env steps; val gIoU "
          f"{last_val['giou']:.2f} ({cfg.segmenter}, frame {cfg.frame_size}); evaluate with "
          f"`t2s bench --agents rl:{out / 'policy.pt'}`", file=sys.stderr)
    return summary


def load_config(argv: Sequence[str]) -> RLConfig:
    (cfg,) = parse_config(argv, RLConfig, prog=PROG)
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    """PPO training of a box policy with tianshou (numeric wrappers, vector env)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = load_config(argv)  # every config mistake stops here, before any data loads
    train(cfg, argv)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ConfigError as exc:
        print(f"t2s: error: {exc}", file=sys.stderr)
        sys.exit(2)
