"""The box policy's networks, its observation encoding and the ``policy.pt`` format.

The actor is fully convolutional where it matters: a small CNN over the downsampled frame,
modulated by the question's bag of words (FiLM), gives a heat map; the box's centre is the
heat map's expected position and its size follows the heat map's spread (times a
question-dependent scale). Positions are read off the image rather than memorised, so the
policy transfers to images it never saw (the train split is small). ``PolicySpec.arch``
picks that actor ("film-heat"), :class:`CellBoxActor` ("cell-box", the default recipe's:
the same trunk scores each cell of the grid and predicts a box size there; an action picks
a cell exactly, see :class:`CellBox`) or :class:`CoordQueryActor` ("coord-query",
"coord-mixture": CoordConv features against a question query; the mixture samples a cell of
the heat map, see :class:`CellMixture`); ``policy.pt`` records it, so the bench agent
rebuilds the right network.

A flat observation row is ``image (S·S·3 values, 0–255) ++ question (D values)``: tianshou
buffers store flat float arrays, and :func:`flatten_obs` builds the same row in training
(from ``NumericObservation``) and in the bench agent (from the raw 840² frame).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from t2s_env.errors import CheckpointError
from t2s_env.hashing import file_sha256
from t2s_env.wrappers import downsample, encode_question

POLICY_FORMAT = "think2seg-rl-box-policy"
POLICY_FORMAT_VERSION = 1


@dataclass(frozen=True)
class PolicySpec:
    """What the networks and the action layout look like (saved in ``policy.pt``)."""

    obs_size: int = 64
    question_dim: int = 256
    channels: int = 32
    n_points: int = 0
    presence: bool = False
    prompt_variant: str = "bbox+2pos"
    #: "film-heat": box size from the heat map's spread; "coord-query": CoordConv trunk,
    #: heat map = <features, question query>, box size read off a size map at the heat map;
    #: "coord-mixture": the same network, but the action is drawn from a mixture over the
    #: heat map's cells (:class:`CellMixture`); "cell-box": the FiLM trunk's cell scores and
    #: sizes, the action from :class:`CellBox` (boxes only)
    arch: str = "film-heat"

    @property
    def action_dim(self) -> int:
        return 4 + 2 * self.n_points + int(self.presence)

    @property
    def obs_dim(self) -> int:
        return self.obs_size * self.obs_size * 3 + self.question_dim


def flatten_obs(images: np.ndarray, questions: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 + (N, D) float32 → (N, S·S·3 + D) float32."""
    n = images.shape[0]
    return np.concatenate([images.reshape(n, -1).astype(np.float32), questions.astype(np.float32)], axis=1)


def encode_raw_observation(observation: Mapping[str, Any], spec: PolicySpec) -> np.ndarray:
    """The flat row for an env observation ``{"image": (H, W, 3), "question": str}``."""
    image = downsample(np.asarray(observation["image"]), spec.obs_size)[None]
    question = encode_question(observation["question"], spec.question_dim)[None]
    return flatten_obs(image, question)


def _as_rows(obs: Any, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(obs) if not isinstance(obs, torch.Tensor) else obs, dtype=torch.float32, device=device)


def unique_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the distinct rows of ``x`` (U, D), index of each row's copy (N,)), or ``(x, None)``
    when every row is distinct. Rows are keyed by a fixed random projection (equal rows have
    equal keys), and the grouping is checked exactly, so colliding keys only cost the sharing.

    Training with ``group_size`` > 1 answers each image several times, so a batch holds each
    observation that many times: the networks run once per distinct observation and their
    outputs are indexed back (the gradient sums over the copies)."""
    if len(x) < 2:
        return x, None
    gen = torch.Generator().manual_seed(x.shape[1])
    key = x @ torch.randn(x.shape[1], generator=gen).to(x.device)
    keys, inverse = torch.unique(key, return_inverse=True)
    if len(keys) == len(x):
        return x, None
    first = torch.full((len(keys),), len(x), dtype=torch.long, device=x.device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(x), device=x.device), reduce="amin")
    if not torch.equal(x[first][inverse], x):  # a collision of keys: no sharing, exact anyway
        return x, None
    return x[first], inverse


def _split(obs: Any, spec: PolicySpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = _as_rows(obs, device)
    n_img = spec.obs_size * spec.obs_size * 3
    image = x[:, :n_img].reshape(-1, spec.obs_size, spec.obs_size, 3).permute(0, 3, 1, 2) / 255.0
    return image, x[:, n_img:]


class ImageQuestionTrunk(nn.Module):
    """CNN over the frame (÷4 resolution), FiLM-modulated by the question."""

    def __init__(self, spec: PolicySpec) -> None:
        super().__init__()
        c = spec.channels
        self.spec = spec
        self.conv = nn.Sequential(
            nn.Conv2d(3, c // 2, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
        )
        self.question = nn.Sequential(nn.Linear(spec.question_dim, 64), nn.ReLU())
        self.film = nn.Linear(64, 2 * c)
        self.mix = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU())

    def forward(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (N, C, S/4, S/4), question embedding (N, 64)); computed once per
        distinct observation row (see :func:`unique_rows`)."""
        rows, inverse = unique_rows(_as_rows(obs, next(self.parameters()).device))
        image, question = _split(rows, self.spec, rows.device)
        q = self.question(question)
        gamma, beta = self.film(q).chunk(2, dim=1)
        f = self.conv(image)
        f = self.mix(f * (1 + gamma[:, :, None, None]) + beta[:, :, None, None])
        if inverse is not None:
            f, q = f[inverse], q[inverse]
        return f, q


def _zero_init(*layers: nn.Module) -> None:
    """Zero weights and biases: the layer's output starts at 0 whatever its input."""
    for layer in layers:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


def _coords(n: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(N, 2, H, W) x and y of each cell's centre in [-1, 1] (CoordConv channels)."""
    ys = (torch.arange(h, device=like.device, dtype=like.dtype) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=like.device, dtype=like.dtype) + 0.5) / w * 2 - 1
    grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)])
    return grid[None].expand(n, 2, h, w)


class CoordQueryActor(nn.Module):
    """The "coord-query" actor: where to look is the question's query vector matched
    against CoordConv features of the frame; each cell's box size comes from a size map at
    that cell plus a per-question (category-like) offset."""

    def __init__(self, spec: PolicySpec, init_std: float = 0.35) -> None:
        super().__init__()
        self.spec = spec
        c = spec.channels
        self.conv = nn.Sequential(
            nn.Conv2d(5, c // 2, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
        )
        self.question = nn.Sequential(nn.Linear(spec.question_dim, 64), nn.ReLU())
        self.film = nn.Linear(64, 2 * c)
        self.mix = nn.Sequential(nn.Conv2d(c + 2, c, 3, padding=1), nn.ReLU())
        self.query = nn.Linear(64, c)
        self.size_map = nn.Conv2d(c, 2, 1)
        self.size_q = nn.Linear(64, 2)
        # zero query: a uniform heat map, so the first boxes are centred
        _zero_init(self.query, self.size_map, self.size_q)
        # start near the best fixed guess: a centred box of half the frame
        self.size_bias = nn.Parameter(torch.full((2,), math.log(0.25)))
        self.offset = nn.Conv2d(c, 2, 1)
        _zero_init(self.offset)
        extra = 2 * spec.n_points + int(spec.presence)
        self.extra = nn.Linear(64 + 2, extra) if extra else None
        self.log_std = nn.Parameter(torch.full((spec.action_dim,), math.log(init_std)))

    def cells(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(heat-map logits (N, K), each cell's action in [-1, 1] units (N, K, A)) over the
        K = h·w cells of the feature map: the box centred on the cell (plus a learned
        offset within it), sized by the size map there and the question."""
        image, question = _split(obs, self.spec, next(self.parameters()).device)
        n, _, s, _ = image.shape
        q = self.question(question)
        f = self.conv(torch.cat([image, _coords(n, s, s, image)], 1))
        gamma, beta = self.film(q).chunk(2, dim=1)
        f = f * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        _, c, h, w = f.shape
        f = self.mix(torch.cat([f, _coords(n, h, w, f)], 1))
        logits = ((f * self.query(q)[:, :, None, None]).sum(1) / math.sqrt(c)).flatten(1)
        centre = (_coords(n, h, w, f) + 1) / 2 + torch.tanh(self.offset(f)) * 0.5 / h  # (N, 2, h, w) in [0, 1]
        half = torch.exp((self.size_bias[None, :, None, None] + self.size_q(q)[:, :, None, None]
                          + self.size_map(f)).clamp(-5, 0))
        box = torch.cat([centre - half, centre + half], 1).flatten(2).transpose(1, 2)  # (N, K, 4)
        parts = [box * 2 - 1]
        if self.extra is not None:
            k = box.shape[1]
            parts.append(torch.tanh(self.extra(torch.cat([q[:, None].expand(n, k, q.shape[1]), box[..., :2]], 2))))
        return logits, torch.cat(parts, 2)

    def mean(self, obs: Any) -> torch.Tensor:
        """The deterministic action: "coord-query" takes the heat map's expected box,
        "coord-mixture" the box of its most likely cell."""
        logits, actions = self.cells(obs)
        if self.spec.arch == "coord-mixture":
            best = logits.argmax(1)
            return actions[torch.arange(len(best)), best]
        return (torch.softmax(logits, 1)[:, :, None] * actions).sum(1)

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> tuple[tuple[torch.Tensor, ...], Any]:
        if self.spec.arch == "coord-mixture":
            logits, actions = self.cells(obs)
            std = self.log_std.clamp(-5, 1).exp().expand_as(actions)
            # one tensor (tianshou's Batch stacks the actor's output): see CellMixture.packed
            return torch.cat([logits[..., None], actions, std], 2), state
        mu = self.mean(obs)
        std = self.log_std.clamp(-5, 1).exp().expand_as(mu)
        return (mu, std), state

    def get_output_dim(self) -> int:
        return self.spec.action_dim


class CellMixture(torch.distributions.MixtureSameFamily):
    """The "coord-mixture" action distribution: pick a cell of the heat map, then a box
    around that cell's box (diagonal Gaussian). PPO's log-probability then credits the
    cell itself, like a classifier over positions. ``mode`` is the best cell's box;
    ``entropy`` is the upper bound H(cell) + E[H(box | cell)] (the exact one has no closed form)."""

    def __init__(self, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__(torch.distributions.Categorical(logits=logits),
                         torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1),
                         validate_args=False)

    @classmethod
    def packed(cls, params: torch.Tensor) -> "CellMixture":
        """From the actor's (N, K, 1 + 2A) output: logit, A means, A scales per cell."""
        a = (params.shape[-1] - 1) // 2
        return cls(params[..., 0], params[..., 1:1 + a], params[..., 1 + a:])

    @property
    def mode(self) -> torch.Tensor:
        best = self.mixture_distribution.logits.argmax(-1)
        return self.component_distribution.base_dist.loc[torch.arange(len(best)), best]

    def entropy(self) -> torch.Tensor:
        pick = self.mixture_distribution
        return pick.entropy() + (pick.probs * self.component_distribution.entropy()).sum(-1)


class CellBox(torch.distributions.Distribution):
    """The "cell-box" action distribution over boxes in [-1, 1] units ``(x1, y1, x2, y2)``.

    The box's centre lies in one cell of an h×w grid, picked with probability softmax(logits),
    uniformly within it; its log width and log height are Gaussian around that cell's
    predicted size. The centre's cell is a function of the box, so the density is exact and
    cheap: log π(cell(a)) + log N(log size(a)) (+ a constant); PPO's ratio credits the cell
    like a classifier over positions, and a box that misses says "not here" of one cell
    only. ``mode`` is the centre of the most likely cell with its predicted size.

    logits (N, K) over the K = h·w cells (row-major); log_size (N, 2, K) in [0, 1] frame
    units; std (N,) of the log-size noise."""

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, logits: torch.Tensor, log_size: torch.Tensor, std: torch.Tensor, h: int, w: int) -> None:
        self.logits = logits.log_softmax(-1)
        self.log_size, self.std, self.h, self.w = log_size, std, h, w
        super().__init__(batch_shape=logits.shape[:1], event_shape=torch.Size([4]), validate_args=False)

    @classmethod
    def packed(cls, params: torch.Tensor) -> "CellBox":
        """From the actor's (N, K, 4) output: logit, log width, log height, log std per cell
        (K is a square grid)."""
        side = math.isqrt(params.shape[1])
        return cls(params[..., 0], params[..., 1:3].transpose(1, 2), params[:, 0, 3].exp(), side, side)

    def _size_at(self, cell: torch.Tensor) -> torch.Tensor:
        return self.log_size[torch.arange(len(cell), device=cell.device), :, cell]  # (N, 2)

    def _box(self, cx: torch.Tensor, cy: torch.Tensor, log_size: torch.Tensor) -> torch.Tensor:
        half = log_size.exp() / 2
        box = torch.stack([cx - half[:, 0], cy - half[:, 1], cx + half[:, 0], cy + half[:, 1]], 1)
        return box * 2 - 1

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            cell = torch.distributions.Categorical(logits=self.logits).sample()
            row, col = (cell // self.w).to(self.logits.dtype), (cell % self.w).to(self.logits.dtype)
            cx = (col + torch.rand_like(col)) / self.w
            cy = (row + torch.rand_like(row)) / self.h
            size = self._size_at(cell)
            log_size = size + self.std[:, None] * torch.randn_like(size)
            return self._box(cx, cy, log_size)

    def _decode(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = (action + 1) / 2
        x1, x2 = torch.minimum(a[:, 0], a[:, 2]), torch.maximum(a[:, 0], a[:, 2])
        y1, y2 = torch.minimum(a[:, 1], a[:, 3]), torch.maximum(a[:, 1], a[:, 3])
        col = ((x1 + x2) / 2 * self.w).floor().long().clamp(0, self.w - 1)
        row = ((y1 + y2) / 2 * self.h).floor().long().clamp(0, self.h - 1)
        log_size = torch.stack([(x2 - x1).clamp(min=1e-6).log(), (y2 - y1).clamp(min=1e-6).log()], 1)
        return row * self.w + col, log_size

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        cell, log_size = self._decode(value)
        pick = self.logits.gather(1, cell[:, None]).squeeze(1)
        size = torch.distributions.Normal(self._size_at(cell), self.std[:, None]).log_prob(log_size).sum(1)
        return pick + size

    @property
    def mode(self) -> torch.Tensor:
        cell = self.logits.argmax(-1)
        row, col = (cell // self.w).to(self.logits.dtype), (cell % self.w).to(self.logits.dtype)
        return self._box((col + 0.5) / self.w, (row + 0.5) / self.h, self._size_at(cell))

    @property
    def variance(self) -> torch.Tensor:
        """(N, 4) variance of the box's centre in [-1, 1] units, repeated for both corners
        (tianshou logs the action's spread): between cells plus within the picked cell."""
        p = self.logits.exp().view(-1, self.h, self.w)
        xs = (torch.arange(self.w, device=p.device, dtype=p.dtype) + 0.5) / self.w
        ys = (torch.arange(self.h, device=p.device, dtype=p.dtype) + 0.5) / self.h
        px, py = p.sum(1), p.sum(2)
        vx = (px * xs**2).sum(1) - (px * xs).sum(1) ** 2 + 1 / (12 * self.w**2)
        vy = (py * ys**2).sum(1) - (py * ys).sum(1) ** 2 + 1 / (12 * self.h**2)
        return 4 * torch.stack([vx, vy, vx, vy], 1)

    def entropy(self) -> torch.Tensor:
        """Of (cell, position in the cell, log size): H(cell) + log(cell area) + 2 Gaussian entropies."""
        pick = -(self.logits.exp() * self.logits).sum(-1)
        return pick - math.log(self.h * self.w) + 2 * (0.5 * math.log(2 * math.pi * math.e) + self.std.log())


class CellBoxActor(nn.Module):
    """The "cell-box" actor: the FiLM trunk's features give a logit per cell (where the
    target is) and a log size per cell (how big a box there), plus a per-question size
    offset; the action is drawn from :class:`CellBox`. Boxes only (no points, no presence)."""

    def __init__(self, spec: PolicySpec, init_std: float = 0.3) -> None:
        super().__init__()
        if spec.n_points or spec.presence:
            raise ValueError("arch 'cell-box' answers with a box only: set n_points=0 and presence=false")
        self.spec = spec
        c = spec.channels
        self.trunk = ImageQuestionTrunk(spec)
        self.heat = nn.Conv2d(c, 1, 1)
        self.size_map = nn.Conv2d(c, 2, 1)
        self.size_q = nn.Linear(64, 2)
        # a uniform heat map and one box size (15 % of the side) to start
        _zero_init(self.heat, self.size_map, self.size_q)
        self.size_bias = nn.Parameter(torch.full((2,), math.log(0.15)))
        self.log_std = nn.Parameter(torch.full((1,), math.log(init_std)))

    def cells(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """(logits (N, K), log sizes (N, 2, K), h, w) over the K = h·w cells."""
        f, q = self.trunk(obs)
        n, _, h, w = f.shape
        log_size = (self.size_bias[None, :, None, None] + self.size_q(q)[:, :, None, None] + self.size_map(f))
        # a tie-break towards the middle (1e-3 at the corners): the untrained policy, whose
        # heat map is flat, answers a centred box rather than the first cell's
        centre = _coords(1, h, w, f).pow(2).sum(1).flatten(1) * -5e-4
        return self.heat(f).flatten(1) + centre, log_size.clamp(-6, 0).flatten(2), h, w

    def distribution(self, obs: Any) -> CellBox:
        logits, log_size, h, w = self.cells(obs)
        return CellBox(logits, log_size, self.log_std.clamp(-4, 1).exp().expand(len(logits)), h, w)

    def mean(self, obs: Any) -> torch.Tensor:
        """The deterministic action: the most likely cell's box, (N, 4) in [-1, 1] units."""
        return self.distribution(obs).mode

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> tuple[torch.Tensor, Any]:
        logits, log_size, _, _ = self.cells(obs)
        log_std = self.log_std.clamp(-4, 1).expand_as(logits)
        # one tensor (tianshou's Batch stacks the actor's output): see CellBox.packed
        return torch.cat([logits[..., None], log_size.transpose(1, 2), log_std[..., None]], 2), state

    def get_output_dim(self) -> int:
        return self.spec.action_dim


ARCHITECTURES = ("film-heat", "coord-query", "coord-mixture", "cell-box")


def make_actor(spec: PolicySpec, init_std: float = 0.35) -> nn.Module:
    """The actor network that ``spec.arch`` names."""
    if spec.arch == "cell-box":
        return CellBoxActor(spec, init_std)
    if spec.arch in ("coord-query", "coord-mixture"):
        return CoordQueryActor(spec, init_std)
    if spec.arch == "film-heat":
        return BoxActor(spec, init_std)
    raise ValueError(f"unknown actor architecture {spec.arch!r}; expected one of {', '.join(ARCHITECTURES)}")


class BoxActor(nn.Module):
    """obs → ((mean, std), state) of a Gaussian over the action in [-1, 1] units.

    Only the mean depends on the observation; the log-std is one learned vector (PPO's
    usual choice for continuous actions)."""

    def __init__(self, spec: PolicySpec, init_std: float = 0.35) -> None:
        super().__init__()
        self.spec = spec
        self.trunk = ImageQuestionTrunk(spec)
        c = spec.channels
        self.heat = nn.Conv2d(c, 1, 1)
        # size of the box in heat-map standard deviations, per question (category-like)
        self.scale = nn.Linear(64, 2)
        nn.init.zeros_(self.scale.weight)
        nn.init.constant_(self.scale.bias, math.log(0.7))
        extra = 2 * spec.n_points + int(spec.presence)
        self.extra = nn.Linear(64 + 2, extra) if extra else None
        self.log_std = nn.Parameter(torch.full((spec.action_dim,), math.log(init_std)))

    def mean(self, obs: Any) -> torch.Tensor:
        f, q = self.trunk(obs)
        n, _, h, w = f.shape
        p = torch.softmax(self.heat(f).flatten(1), dim=1).view(n, h, w)
        ys = (torch.arange(h, device=f.device, dtype=f.dtype) + 0.5) / h
        xs = (torch.arange(w, device=f.device, dtype=f.dtype) + 0.5) / w
        px, py = p.sum(1), p.sum(2)  # marginals over x (N, W) and y (N, H)
        cx, cy = (px * xs).sum(1), (py * ys).sum(1)
        sx = ((px * (xs - cx[:, None]) ** 2).sum(1) + 1e-4).sqrt()
        sy = ((py * (ys - cy[:, None]) ** 2).sum(1) + 1e-4).sqrt()
        k = torch.exp(self.scale(q).clamp(-3, 3))
        half_w, half_h = k[:, 0] * sx, k[:, 1] * sy
        box = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=1)
        parts = [box * 2 - 1]
        if self.extra is not None:
            parts.append(torch.tanh(self.extra(torch.cat([q, torch.stack([cx, cy], 1)], 1))))
        return torch.cat(parts, dim=1)

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> tuple[tuple[torch.Tensor, torch.Tensor], Any]:
        mu = self.mean(obs)
        std = self.log_std.clamp(-5, 1).exp().expand_as(mu)
        return (mu, std), state

    def get_preprocess_net(self) -> nn.Module:
        return self.trunk

    def get_output_dim(self) -> int:
        return self.spec.action_dim


class ValueNet(nn.Module):
    """obs → V(obs) (N, 1): a smaller CNN plus the question embedding."""

    def __init__(self, spec: PolicySpec) -> None:
        super().__init__()
        self.spec = spec
        self.conv = nn.Sequential(
            nn.Conv2d(3, 8, 5, stride=4, padding=2), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(16 + spec.question_dim, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> torch.Tensor:
        rows, inverse = unique_rows(_as_rows(obs, next(self.parameters()).device))
        image, question = _split(rows, self.spec, rows.device)
        value = self.head(torch.cat([self.conv(image), question], dim=1))
        return value if inverse is None else value[inverse]


# -- policy.pt ------------------------------------------------------------------------------


def action_distribution(arch: str, params: Any) -> torch.distributions.Distribution:
    """The action distribution of an ``arch`` actor's output ``params`` (what PPO samples
    and scores; tianshou's ``dist_fn`` is ``functools.partial(action_distribution, arch)``)."""
    if arch == "coord-mixture":
        return CellMixture.packed(params)
    if arch == "cell-box":
        return CellBox.packed(params)
    return torch.distributions.Independent(torch.distributions.Normal(*params), 1)


def action_from_mean(mu: torch.Tensor) -> np.ndarray:
    """[-1, 1] network units → the wrapper's [0, 1] action (clipped)."""
    return ((mu.detach().cpu().numpy().clip(-1, 1) + 1) / 2).astype(np.float32)


def save_policy(path: "str | Path", actor: BoxActor, meta: Mapping[str, Any] | None = None) -> str:
    """Write ``policy.pt`` atomically; return its sha256."""
    path = Path(path)
    payload = {
        "format": POLICY_FORMAT,
        "format_version": POLICY_FORMAT_VERSION,
        "spec": asdict(actor.spec),
        "state_dict": {k: v.detach().cpu() for k, v in actor.state_dict().items()},
        "meta": dict(meta or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return file_sha256(path)


def load_policy(path: "str | Path") -> tuple[BoxActor, dict[str, Any]]:
    """(actor in eval mode, meta) from ``policy.pt``; a :class:`CheckpointError` naming the
    file when it is missing, unreadable or not a Think2Seg box policy."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"policy file {path} does not exist; train one with `t2s train rl ... output_dir=DIR` (it writes DIR/policy.pt)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file: pickle, zip or torch errors
        raise CheckpointError(f"{path} is not a readable torch file ({type(exc).__name__}); expected a policy.pt written by `t2s train rl`") from None
    if not isinstance(payload, dict) or payload.get("format") != POLICY_FORMAT:
        raise CheckpointError(f"{path} is not a Think2Seg RL policy (no '{POLICY_FORMAT}' format tag); expected a policy.pt written by `t2s train rl`")
    if payload.get("format_version") != POLICY_FORMAT_VERSION:
        raise CheckpointError(f"{path} has policy format version {payload.get('format_version')!r}; this version reads {POLICY_FORMAT_VERSION}")
    try:
        spec = PolicySpec(**payload["spec"])
        actor = make_actor(spec)
        actor.load_state_dict(payload["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: policy weights do not match its spec ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    actor.eval()
    return actor, dict(payload.get("meta") or {})


__all__ = [
    "ARCHITECTURES",
    "action_distribution",
    "BoxActor",
    "CellBox",
    "CellBoxActor",
    "CellMixture",
    "CoordQueryActor",
    "POLICY_FORMAT",
    "PolicySpec",
    "ValueNet",
    "action_from_mean",
    "encode_raw_observation",
    "file_sha256",
    "flatten_obs",
    "load_policy",
    "make_actor",
    "save_policy",
    "unique_rows",
]
