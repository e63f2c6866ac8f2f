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
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import gymnasium
import numpy as np

from t2s_env.errors import CheckpointError, ConfigError
from t2s_env.progress import progress_bar

try:  # installed as think2seg.scripts / think2seg.agents; from a bare checkout as files
    from think2seg.agents.rl.policy import (ARCHITECTURES, BoxActor, CellBox, CellMixture, PolicySpec, ValueNet,
                                            action_from_mean, flatten_obs, make_actor, save_policy)
    from think2seg.scripts.config import parse_config, save_resolved_config
except ImportError:  # pragma: no cover
    import _checkout  # noqa: F401

    from think2seg.agents.rl.policy import (ARCHITECTURES, BoxActor, CellBox, CellMixture, PolicySpec, ValueNet,
                                            action_from_mean, flatten_obs, make_actor, save_policy)
    from think2seg.scripts.config import parse_config, save_resolved_config

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
        if not 16 <= self.obs_size <= 256:
            raise ConfigError(f"obs_size must be in [16, 256], got {self.obs_size}")
        if self.obs_size > self.frame_size:
            raise ConfigError(f"obs_size ({self.obs_size}) must not exceed frame_size ({self.frame_size})")
        if not 16 <= self.frame_size <= 4096:
            raise ConfigError(f"frame_size must be in [16, 4096], got {self.frame_size}")
        if not 8 <= self.question_dim <= 65536:
            raise ConfigError(f"question_dim must be in [8, 65536], got {self.question_dim}")
        if not 0 <= self.n_points <= 8:
            raise ConfigError(f"n_points must be in [0, 8], got {self.n_points}")
        if not 0 <= self.synthetic_train_images <= 100_000:
            raise ConfigError(f"synthetic_train_images must be in [0, 100000], got {self.synthetic_train_images}")
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


def _gt_box(mask: np.ndarray) -> np.ndarray | None:
    """Normalised (x1, y1, x2, y2) of the mask's bounding box; None when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    h, w = mask.shape
    return np.array([xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h])


def generalized_iou(a: np.ndarray, b: np.ndarray) -> float:
    """GIoU of two boxes (x1, y1, x2, y2): IoU minus the share of their enclosing box that
    neither covers; in [-1, 1], and informative when they do not overlap."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return float(inter / union - (hull - union) / hull) if union > 0 and hull > 0 else 0.0


class RewardShaping(gymnasium.Wrapper):
    """Training reward = env reward + ``giou`` · GIoU(action box, GT mask's box)
    + ``hit`` · exp(−d / ``hit_radius``), d the distance (frame-side units) from the action
    box's centre to the nearest target pixel (0 inside the target)
    + ``cover`` · the share of the target's pixels inside the box (edges rounded to pixels).
    An empty target adds nothing.

    The IoU of a box that misses the target is 0 whatever its distance, so most early
    actions carry no signal; GIoU grows as the box moves towards the target. GIoU aims at the
    box around *all* instances, and a small target's IoU stays tiny even when it is found
    (a 4 px pool in a 20 px box: 0.04); the hit term pays for landing on any instance, so
    finding small and scattered targets is worth learning. The cover term asks for boxes
    that contain the object, as GrabCut needs. The GT comes from the env's ``privileged``
    reset info and is removed from the info; the policy never sees it.
    ``info["env_reward"]`` keeps the env's own reward (what is logged).
    """

    def __init__(self, env: Any, giou: float = 0.0, hit: float = 0.0, hit_radius: float = 0.03125,
                 cover: float = 0.0) -> None:
        super().__init__(env)
        self.giou, self.hit, self.hit_radius, self.cover = giou, hit, hit_radius, cover
        self._gt: np.ndarray | None = None
        self._distance: np.ndarray | None = None
        self._mask: np.ndarray | None = None

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        mask = np.asarray(info.pop("gt_mask"), dtype=bool)
        self._gt = _gt_box(mask)
        self._distance = None
        self._mask = mask if self.cover and self._gt is not None else None
        if self.hit and self._gt is not None:
            import cv2

            # distance of every pixel to the nearest target pixel, in frame-side units
            self._distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE) / max(mask.shape)
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["env_reward"] = reward
        if self._gt is not None:
            a = np.clip(np.asarray(action, dtype=np.float64)[:4], 0, 1)
            box = np.array([min(a[0], a[2]), min(a[1], a[3]), max(a[0], a[2]), max(a[1], a[3])])
            if self.giou:
                reward = reward + self.giou * generalized_iou(box, self._gt)
            if self._distance is not None:
                h, w = self._distance.shape
                col = min(int((box[0] + box[2]) / 2 * w), w - 1)
                row = min(int((box[1] + box[3]) / 2 * h), h - 1)
                reward = reward + self.hit * float(np.exp(-self._distance[row, col] / self.hit_radius))
            if self._mask is not None:
                h, w = self._mask.shape
                x1, x2 = int(round(box[0] * w)), int(round(box[2] * w))
                y1, y2 = int(round(box[1] * h)), int(round(box[3] * h))
                reward = reward + self.cover * float(self._mask[y1:y2, x1:x2].sum() / self._mask.sum())
        return obs, reward, terminated, truncated, info


class RandomDihedral(gymnasium.Wrapper):
    """Data augmentation: each episode shows the image flipped/transposed at random (one of
    the 8 symmetries of the square) and maps the action's coordinates back, so the env
    scores the answer in its own frame. Numeric observations only (after NumericObservation)."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self._t = (False, False, False)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self._rng = np.random.default_rng(seed + 7919)
        elif not hasattr(self, "_rng"):
            self._rng = np.random.default_rng()
        self._t = tuple(bool(v) for v in self._rng.integers(0, 2, 3))
        return self._obs(obs), info

    def _obs(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        flip_x, flip_y, transpose = self._t
        image = obs["image"]
        if transpose:
            image = image.transpose(1, 0, 2)
        if flip_x:
            image = image[:, ::-1]
        if flip_y:
            image = image[::-1]
        return {**obs, "image": np.ascontiguousarray(image)}

    def step(self, action: Any):
        a = np.array(action, dtype=np.float32, copy=True)
        flip_x, flip_y, transpose = self._t
        xs, ys = np.arange(0, len(a) - len(a) % 2, 2), np.arange(1, len(a) - len(a) % 2, 2)
        # undo in reverse order: flips first, then the transpose
        if flip_y:
            a[ys] = 1 - a[ys]
        if flip_x:
            a[xs] = 1 - a[xs]
        if transpose:
            a[xs], a[ys] = a[ys].copy(), a[xs].copy()
        obs, reward, terminated, truncated, info = self.env.step(a)
        return self._obs(obs), reward, terminated, truncated, info


def make_wrappers(cfg: RLConfig, training: bool = False) -> list[Any]:
    from t2s_env.wrappers import BoxAction, NumericObservation

    wrappers = [functools.partial(BoxAction, n_points=cfg.n_points, presence=cfg.presence),
                functools.partial(NumericObservation, size=cfg.obs_size, question_dim=cfg.question_dim)]
    if training and cfg.shaped:
        wrappers.append(functools.partial(RewardShaping, giou=cfg.giou_shaping, hit=cfg.hit_shaping,
                                          hit_radius=cfg.hit_radius, cover=cfg.cover_shaping))
    if training and cfg.augment:
        wrappers.append(RandomDihedral)
    return wrappers


def _step_info(info: dict[str, Any]) -> dict[str, Any]:
    """The scored step's info of a same-step-autoreset vector env (under ``final_info``)."""
    return info.get("final_info", info)


class TianshouVectorEnv:
    """A gymnasium vector env (same-step autoreset) seen as a tianshou vector env.

    tianshou's Collector resets each finished sub-env itself; the gymnasium vector env has
    already done so inside ``step``. ``reset(env_id=...)`` therefore hands out the pending
    observations of that reset instead of resetting again, so no action is wasted. The
    step infos that tianshou keeps are reduced to numbers; the last step's full
    components are kept in ``last_scores`` for logging.
    """

    is_async = False

    def __init__(self, venv: Any) -> None:
        self.venv = venv
        self.env_num = venv.num_envs
        self.action_space = venv.single_action_space
        self.observation_space = venv.single_observation_space
        self._pending: np.ndarray | None = None
        self.scores: list[np.ndarray] = []  # rows of (reward, iou, json, think) since the last drain

    def __len__(self) -> int:
        return self.env_num

    @staticmethod
    def _flat(obs: dict[str, np.ndarray]) -> np.ndarray:
        return flatten_obs(obs["image"], obs["question"])

    def reset(self, env_id: Any = None, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        if env_id is None or self._pending is None:
            obs, _ = self.venv.reset(**kwargs)
            self._pending = self._flat(obs)
            ids = np.arange(self.env_num)
        else:
            ids = np.atleast_1d(np.asarray(env_id))
        return self._pending[ids].copy(), np.array([{"env_id": int(i)} for i in ids], dtype=object)

    def step(self, action: np.ndarray, id: Any = None) -> tuple[np.ndarray, ...]:
        ids = np.arange(self.env_num) if id is None else np.atleast_1d(np.asarray(id))
        if len(ids) != self.env_num or not np.array_equal(ids, np.arange(self.env_num)):
            raise NotImplementedError("every sub-env steps together (collect with n_step, not n_episode)")
        obs, rew, term, trunc, info = self.venv.step(np.asarray(action, dtype=np.float32))
        self._pending = self._flat(obs)
        step = _step_info(info)
        comps = step["reward_components"]
        env_reward = step.get("env_reward", rew)
        self.scores.append(np.stack([env_reward, step["iou"], comps["json"], comps["think"]], axis=1).astype(np.float64))
        infos = np.array([{"env_id": int(i), "iou": float(step["iou"][i])} for i in range(self.env_num)], dtype=object)
        # The terminal observation is not used (the episode ends); the next one is pending.
        return self._pending.copy(), rew.astype(np.float32), term, trunc, infos

    def drain_scores(self) -> np.ndarray:
        out = np.concatenate(self.scores) if self.scores else np.zeros((0, 4))
        self.scores = []
        return out

    def seed(self, seed: Any = None) -> list[Any]:
        return [None] * self.env_num

    def render(self, **kwargs: Any) -> list[Any]:
        return []

    def close(self) -> None:
        self.venv.close()


# -- evaluation -----------------------------------------------------------------------------


class ValEvaluator:
    """Every image of the val split once (each image's first/seeded question), answered
    by the deterministic policy: mean reward and gIoU (×100) under the strict protocol."""

    def __init__(self, cfg: RLConfig) -> None:
        import gymnasium as gym

        env_id, kwargs = cfg.env_id_and_kwargs(cfg.val_split, cfg.val_root or (None if cfg.dataset == "synthetic" else cfg.root))
        env = gym.make(env_id, **kwargs)
        for wrap in make_wrappers(cfg):
            env = wrap(env)
        self.env = env
        self.n = len(env.unwrapped.dataset)
        self.rows = []
        for i in range(self.n):
            obs, _ = env.reset(options={"index": i})
            self.rows.append(flatten_obs(obs["image"][None], obs["question"][None]))
        self.obs = np.concatenate(self.rows)

    def score(self, actions: np.ndarray) -> dict[str, float]:
        rewards, ious = [], []
        for i, action in enumerate(actions):
            self.env.reset(options={"index": i})
            _, reward, _, _, info = self.env.step(action)
            rewards.append(reward)
            ious.append(info["iou"])
        return {"reward": float(np.mean(rewards)), "giou": 100.0 * float(np.mean(ious))}

    def evaluate(self, actor: BoxActor) -> dict[str, float]:
        import torch

        with torch.no_grad():
            return self.score(action_from_mean(actor.mean(self.obs)))

    def baselines(self, seed: int) -> dict[str, float]:
        """gIoU of the heuristic baselines' boxes under this evaluator (same frame and
        segmenter as the curve): centred boxes, the full image, and a uniformly random box."""
        dim = self.env.action_space.shape[0]

        def fixed(box: list[float]) -> np.ndarray:
            row = np.full(dim, 1.0, np.float32)  # presence (if any) says "there is a target"
            row[:4] = box
            return np.tile(row, (self.n, 1))

        out = {f"center-box:{f}": self.score(fixed([(1 - f) / 2, (1 - f) / 2, (1 + f) / 2, (1 + f) / 2]))["giou"]
               for f in (0.3, 0.5, 0.7)}
        out["full-image"] = self.score(fixed([0, 0, 1, 1]))["giou"]
        out["random box"] = self.evaluate_random(seed, repeats=3)["giou"]
        return out

    def evaluate_random(self, seed: int, repeats: int = 5) -> dict[str, float]:
        """A uniformly random Box action per image, averaged over ``repeats`` draws."""
        rng = np.random.default_rng(seed)
        dim = self.env.action_space.shape[0]
        runs = [self.score(rng.uniform(0, 1, (self.n, dim)).astype(np.float32)) for _ in range(repeats)]
        return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}

    def close(self) -> None:
        self.env.close()


# -- checkpoints ----------------------------------------------------------------------------


def checkpoint_dir(cfg: RLConfig) -> Path:
    return Path(cfg.output_dir) / "checkpoints"


def latest_checkpoint(cfg: RLConfig) -> Path | None:
    found = sorted(checkpoint_dir(cfg).glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1]) if p.stem.split("_")[1].isdigit() else -1)
    return found[-1] if found else None


def resolve_resume(cfg: RLConfig) -> Path | None:
    if cfg.resume in (None, "", "none"):
        return None
    if cfg.resume == "auto":
        return latest_checkpoint(cfg)
    path = Path(cfg.resume)
    if not path.is_file():
        raise ConfigError(f"resume={cfg.resume}: no such checkpoint file; use resume=auto or a DIR/checkpoints/step_N.pt")
    return path


def save_checkpoint(cfg: RLConfig, algo: Any, env_steps: int, updates: int) -> Path:
    import torch

    path = checkpoint_dir(cfg) / f"step_{env_steps}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "env_steps": env_steps,
        "updates": updates,
        "algorithm": algo.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].tolist(),
                "python": random.getstate()[1]},
        "config": asdict(cfg),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: Path, algo: Any) -> tuple[int, int]:
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path} ({type(exc).__name__}); delete it or pick another with resume=PATH") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a `t2s train rl` checkpoint")
    try:
        algo.load_state_dict(payload["algorithm"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path} does not fit this config's networks ({str(exc).splitlines()[0][:160]})") from None
    torch.set_rng_state(payload["rng"]["torch"])
    return int(payload["env_steps"]), int(payload["updates"])


# -- training -------------------------------------------------------------------------------


class LinearDecay:
    """tianshou learning-rate scheduler factory: lr × (1 − update / total updates), floored
    at 0. ``done`` is the number of updates already made (set on resume), so a resumed run
    continues the schedule where the checkpoint left it."""

    def __init__(self, total_updates: int) -> None:
        self.total_updates = max(1, total_updates)
        self.done = 0

    def create_scheduler(self, optim: Any) -> Any:
        from torch.optim.lr_scheduler import LambdaLR

        return LambdaLR(optim, lr_lambda=self.factor)

    def factor(self, step: int) -> float:
        return max(0.0, 1.0 - (self.done + step) / self.total_updates)


def observation_groups(obs: Any) -> np.ndarray:
    """(N,) id per row, equal exactly for rows with byte-equal observations."""
    rows = np.ascontiguousarray(np.asarray(obs).reshape(len(obs), -1))
    ids: dict[bytes, int] = {}
    return np.array([ids.setdefault(row.tobytes(), len(ids)) for row in rows], dtype=np.int64)


def leave_one_out_advantages(rewards: np.ndarray, groups: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Each answer's reward minus the mean reward of the other answers to the same
    observation (RLOO: an unbiased baseline that knows how hard this image is); ``fallback``
    (reward − V) where an observation was answered once."""
    rewards = np.asarray(rewards, dtype=np.float64)
    count = np.bincount(groups)[groups]
    total = np.bincount(groups, weights=rewards)[groups]
    others = (total - rewards) / np.maximum(count - 1, 1)
    return np.where(count > 1, rewards - others, fallback)


def make_group_ppo(group_size: int, **kwargs: Any) -> Any:
    """tianshou PPO, with leave-one-out advantages and group-aligned minibatches when
    ``group_size`` > 1 (then each image's answers share one forward pass, see
    :func:`unique_rows`); plain PPO otherwise."""
    import torch
    from tianshou.algorithm import PPO
    from tianshou.algorithm.modelfree.a2c import A2CTrainingStats
    from tianshou.data import Batch, SequenceSummaryStats

    class GroupPPO(PPO):
        def _preprocess_batch(self, batch: Any, buffer: Any, indices: np.ndarray) -> Any:
            # Episodes last one step, so the return is the reward. The advantage is the
            # leave-one-out one; the critic runs only on observations answered once.
            obs = np.asarray(batch.obs)
            group = observation_groups(obs)
            alone = np.bincount(group)[group] == 1
            rew = np.asarray(batch.rew, dtype=np.float32)
            fallback = np.zeros(len(rew), dtype=np.float32)
            with torch.no_grad():
                if alone.any():
                    fallback[alone] = rew[alone] - self.critic(obs[alone]).flatten().cpu().numpy()
                act = torch.as_tensor(np.asarray(batch.act), dtype=torch.float32)
                logp_old = self.policy(Batch(obs=obs, info=Batch())).dist.log_prob(act).flatten()
            # only what the update reads: slicing the rollout batch copies obs_next too
            return Batch(obs=obs, info=Batch(), act=act, logp_old=logp_old, group=group, alone=alone,
                         returns=torch.as_tensor(rew),
                         adv=torch.as_tensor(leave_one_out_advantages(rew, group, fallback), dtype=torch.float32))

        def _update_with_batch(self, batch: Any, batch_size: int | None, repeat: int) -> Any:
            # tianshou's loop (clipped surrogate + value loss − entropy bonus) over minibatches
            # that keep each image's answers together
            losses, clip_losses, vf_losses, ent_losses = [], [], [], []
            groups = np.asarray(batch.group)
            order = np.argsort(groups, kind="stable")
            starts = np.flatnonzero(np.r_[True, groups[order][1:] != groups[order][:-1]])
            members = np.split(order, starts[1:])
            size = batch_size or len(groups)
            for _ in range(repeat):
                rows = np.concatenate([members[i] for i in np.random.permutation(len(members))])
                for start in range(0, len(rows), size):
                    idx = rows[start:start + size]
                    obs, alone = batch.obs[idx], batch.alone[idx]
                    advantages = batch.adv[idx]
                    if self.advantage_normalization:
                        advantages = (advantages - advantages.mean()) / (advantages.std() + self._eps)
                    dist = self.policy(Batch(obs=obs, info=Batch())).dist
                    ratios = (dist.log_prob(batch.act[idx]) - batch.logp_old[idx]).exp().float()
                    surr1 = ratios * advantages
                    surr2 = ratios.clamp(1.0 - self.eps_clip, 1.0 + self.eps_clip) * advantages
                    clip_loss = -torch.min(surr1, surr2).mean()
                    # the critic is the baseline of observations answered once only (none when
                    # the groups hold): it is neither run nor trained on the others, so its value
                    # loss does not eat the actor's share of the clipped gradient norm
                    vf_loss = ((batch.returns[idx][alone] - self.critic(obs[alone]).flatten()).pow(2).mean()
                               if alone.any() else torch.zeros(()))
                    ent_loss = dist.entropy().mean()
                    loss = clip_loss + self.vf_coef * vf_loss - self.ent_coef * ent_loss
                    self.optim.step(loss)
                    clip_losses.append(clip_loss.item())
                    vf_losses.append(vf_loss.item())
                    ent_losses.append(ent_loss.item())
                    losses.append(loss.item())
            return A2CTrainingStats(loss=SequenceSummaryStats.from_sequence(losses),
                                    actor_loss=SequenceSummaryStats.from_sequence(clip_losses),
                                    vf_loss=SequenceSummaryStats.from_sequence(vf_losses),
                                    ent_loss=SequenceSummaryStats.from_sequence(ent_losses),
                                    gradient_steps=len(losses))

    return GroupPPO(**kwargs) if group_size > 1 else PPO(**kwargs)


def build_algorithm(cfg: RLConfig, action_space: Any) -> tuple[Any, BoxActor, LinearDecay | None]:
    from tianshou.algorithm.modelfree.reinforce import ProbabilisticActorPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from torch.distributions import Independent, Normal

    spec = cfg.policy_spec()
    actor = make_actor(spec, init_std=cfg.init_std)
    critic = ValueNet(spec)

    def dist_fn(params: Any) -> Any:
        if spec.arch == "coord-mixture":
            return CellMixture.packed(params)
        if spec.arch == "cell-box":
            return CellBox.packed(params)
        return Independent(Normal(*params), 1)

    policy = ProbabilisticActorPolicy(actor=actor, dist_fn=dist_fn, action_space=action_space,
                                      deterministic_eval=True, action_scaling=True, action_bound_method="clip")
    optim = AdamOptimizerFactory(lr=cfg.lr)
    decay = LinearDecay(math.ceil(cfg.total_env_steps / cfg.steps_per_update)) if cfg.lr_schedule == "linear" else None
    if decay is not None:
        optim = optim.with_lr_scheduler_factory(decay)
    algo = make_group_ppo(cfg.group_size, policy=policy, critic=critic, optim=optim, eps_clip=cfg.eps_clip,
                          vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef, max_grad_norm=cfg.max_grad_norm or None,
                          gae_lambda=1.0, gamma=1.0, advantage_normalization=True, max_batchsize=cfg.steps_per_update)
    return algo, actor, decay


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

    if cfg.torch_threads is not None:
        torch.set_num_threads(cfg.torch_threads)
    resume = resolve_resume(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(out, cfg, argv=argv)
    _seed_everything(cfg.seed)

    env_id, kwargs = cfg.env_id_and_kwargs(cfg.train_split, cfg.train_root())
    if cfg.shaped:
        kwargs["privileged"] = True  # the shaping terms read the GT mask; the policy never sees it
    venv = t2s_env.make_vec(env_id, cfg.num_envs, cfg.vectorization_mode, wrappers=make_wrappers(cfg, training=True),
                            **kwargs)
    train_envs = TianshouVectorEnv(venv)
    val = ValEvaluator(cfg)
    algo, actor, decay = build_algorithm(cfg, train_envs.action_space)
    env_steps, updates = 0, 0
    if resume is not None:
        env_steps, updates = load_checkpoint(resume, algo)
        if decay is not None:  # continue the schedule from the checkpoint's update
            decay.done = updates
            for scheduler in algo.lr_schedulers:
                scheduler.last_epoch = 0
                for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
                    group["lr"] = base * decay.factor(0)
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
        writer.add_scalar("train/episode_reward", scores[:, 0].mean(), env_steps)
        writer.add_scalar("train/iou", scores[:, 1].mean(), env_steps)
        writer.add_scalar("train/reward_iou", scores[:, 1].mean(), env_steps)
        writer.add_scalar("train/reward_json", scores[:, 2].mean(), env_steps)
        writer.add_scalar("train/reward_think", scores[:, 3].mean(), env_steps)
        for name in ("actor_loss", "vf_loss", "ent_loss", "loss"):
            value = getattr(stats, name, None)
            if value is not None:
                tag = {"actor_loss": "actor", "vf_loss": "critic", "ent_loss": "entropy", "loss": "total"}[name]
                writer.add_scalar(f"loss/{tag}", value.mean, env_steps)
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
            "val_split": cfg.val_split, "segmenter": cfg.segmenter, "frame_size": cfg.frame_size}
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
