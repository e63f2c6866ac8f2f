"""Grouped PPO for one-step episodes (tianshou 2.x): leave-one-out advantages, minibatches
that keep each observation's answers together, and a linear learning-rate decay;
:func:`make_ppo` assembles actor, critic, optimiser and algorithm for a :class:`.policy.PolicySpec`.

With ``group_size`` > 1 the sub-envs of a group are seeded alike, so every image is answered
``group_size`` times per step (:func:`make_group_ppo`). An answer's advantage is its reward
minus the mean of the group's other answers (:mod:`.advantages`); the critic is the baseline
of observations answered once only, and is neither run nor trained on the others.

tianshou has no public hook for either change: :class:`GroupPPO` overrides the two
protected methods that tianshou's ``Algorithm`` documents as "meant to be overridden by
subclasses", ``_preprocess_batch`` (advantages) and ``_update_with_batch`` (the loss loop).
This module is the one place that does so; it is written against tianshou 2.0's PPO
attributes (``critic``, ``policy``, ``optim``, ``eps_clip``, ``vf_coef``, ``ent_coef``,
``advantage_normalization``, ``_eps``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from tianshou.algorithm import PPO
from tianshou.algorithm.modelfree.a2c import A2CTrainingStats
from tianshou.data import Batch, SequenceSummaryStats

from .advantages import leave_one_out_advantages, observation_groups
from .policy import PolicySpec, ValueNet, action_distribution, make_actor


class GroupPPO(PPO):
    """tianshou PPO with leave-one-out advantages and group-aligned minibatches."""

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


def make_ppo(spec: PolicySpec, action_space: Any, *, group_size: int = 1, init_std: float = 0.35, lr: float = 1e-3,
             linear_decay_updates: int | None = None, eps_clip: float = 0.2, vf_coef: float = 0.5,
             ent_coef: float = 0.0, max_grad_norm: float = 0.5, max_batchsize: int = 256) -> tuple[PPO, Any, Any]:
    """(algorithm, actor, :class:`LinearDecay` or None): the ``spec`` actor and its critic
    under (grouped) PPO for one-step episodes (gamma 1, no GAE, normalised advantages), with
    Adam at ``lr``, decayed linearly to 0 over ``linear_decay_updates`` updates when given.
    ``max_grad_norm`` 0 means no clipping."""
    from tianshou.algorithm.modelfree.reinforce import ProbabilisticActorPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory

    actor = make_actor(spec, init_std=init_std)
    critic = ValueNet(spec)
    dist_fn = functools.partial(action_distribution, spec.arch)
    policy = ProbabilisticActorPolicy(actor=actor, dist_fn=dist_fn, action_space=action_space,
                                      deterministic_eval=True, action_scaling=True, action_bound_method="clip")
    optim = AdamOptimizerFactory(lr=lr)
    decay = LinearDecay(linear_decay_updates) if linear_decay_updates is not None else None
    if decay is not None:
        optim = optim.with_lr_scheduler_factory(decay)
    algo = make_group_ppo(group_size, policy=policy, critic=critic, optim=optim, eps_clip=eps_clip,
                          vf_coef=vf_coef, ent_coef=ent_coef, max_grad_norm=max_grad_norm or None,
                          gae_lambda=1.0, gamma=1.0, advantage_normalization=True, max_batchsize=max_batchsize)
    return algo, actor, decay


def make_group_ppo(group_size: int, **kwargs: Any) -> PPO:
    """:class:`GroupPPO` when ``group_size`` > 1 (then each image's answers also share one
    forward pass, see :func:`.policy.unique_rows`); tianshou's plain PPO otherwise.
    ``kwargs`` are PPO's."""
    return GroupPPO(**kwargs) if group_size > 1 else PPO(**kwargs)


class LinearDecay:
    """tianshou learning-rate scheduler factory: lr × (1 − update / total updates), floored
    at 0. ``done`` is the number of updates already made (set on resume), so a resumed run
    continues the schedule where the checkpoint left it.

    >>> decay = LinearDecay(total_updates=4)
    >>> [decay.factor(step) for step in range(5)]
    [1.0, 0.75, 0.5, 0.25, 0.0]
    >>> decay.done = 2
    >>> decay.factor(0)
    0.5
    """

    def __init__(self, total_updates: int) -> None:
        self.total_updates = max(1, total_updates)
        self.done = 0

    def create_scheduler(self, optim: Any) -> Any:
        from torch.optim.lr_scheduler import LambdaLR

        return LambdaLR(optim, lr_lambda=self.factor)

    def factor(self, step: int) -> float:
        return max(0.0, 1.0 - (self.done + step) / self.total_updates)

    def resume(self, algo: Any, updates: int) -> None:
        """Continue ``algo``'s schedulers from update ``updates`` (after loading a checkpoint)."""
        self.done = updates
        for scheduler in algo.lr_schedulers:
            scheduler.last_epoch = 0
            for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
                group["lr"] = base * self.factor(0)


__all__ = ["GroupPPO", "LinearDecay", "make_group_ppo", "make_ppo"]
