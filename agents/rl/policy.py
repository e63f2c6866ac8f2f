"""The box policy's networks, its observation encoding and the ``policy.pt`` format.

The actor is fully convolutional where it matters: a small CNN over the downsampled frame,
modulated by the question's bag of words (FiLM), gives a heat map; the box's centre is the
heat map's expected position and its size follows the heat map's spread (times a
question-dependent scale). Positions are read off the image rather than memorised, so the
policy transfers to images it never saw (the train split is small).

A flat observation row is ``image (S·S·3 values, 0–255) ++ question (D values)``: tianshou
buffers store flat float arrays, and :func:`flatten_obs` builds the same row in training
(from ``NumericObservation``) and in the bench agent (from the raw 840² frame).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from t2s_env.errors import CheckpointError
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


def _split(obs: Any, spec: PolicySpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(obs) if not isinstance(obs, torch.Tensor) else obs, dtype=torch.float32, device=device)
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
        """(features (N, C, S/4, S/4), question embedding (N, 64))."""
        image, question = _split(obs, self.spec, next(self.parameters()).device)
        q = self.question(question)
        gamma, beta = self.film(q).chunk(2, dim=1)
        f = self.conv(image)
        f = f * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        return self.mix(f), q


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
        image, question = _split(obs, self.spec, next(self.parameters()).device)
        return self.head(torch.cat([self.conv(image), question], dim=1))


# -- policy.pt ------------------------------------------------------------------------------


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


def file_sha256(path: "str | Path") -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
        actor = BoxActor(spec)
        actor.load_state_dict(payload["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: policy weights do not match its spec ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    actor.eval()
    return actor, dict(payload.get("meta") or {})


__all__ = [
    "BoxActor",
    "POLICY_FORMAT",
    "PolicySpec",
    "ValueNet",
    "action_from_mean",
    "encode_raw_observation",
    "file_sha256",
    "flatten_obs",
    "load_policy",
    "save_policy",
]
