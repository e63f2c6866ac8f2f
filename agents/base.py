"""The agent interface: observations in, completions out.

An agent answers with a completion string in the protocol's answer format, exactly as an
LVLM would, so every agent is scored by the same parser and reward. Agents only use the
environment's public types (``t2s_env.GeometricPrompt``, ``t2s_env.format_completion``, …).

    observation = {"image": (S, S, 3) uint8, "question": str}
    info        = {"sample_id": str, "messages": [...], "gt_mask": (S, S) bool (privileged only)}

Multi-turn (refine) episodes (``max_turns`` K > 1, docs/refine.md) call :meth:`Agent.act_turn`
once per turn with that turn's observation, which adds ``mask`` (S, S) uint8, ``overlay``
(S, S, 3) uint8, ``turn`` (0 at the first turn) and ``answers`` (the completions so far), and
with ``info["messages"]`` grown by each earlier answer and its feedback turn.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence


class Agent:
    """Base class: override :meth:`act` (and :meth:`act_batch` when batching helps).

    ``privileged`` agents (oracles) read ``info["gt_mask"]``; the harness then builds
    observations with the ground truth included. ``arg_name`` is the option that a
    command-line spec ``name:value`` sets (e.g. ``center-box:0.5`` sets ``fraction``).
    """

    name: str = "agent"
    privileged: bool = False
    arg_name: str | None = None

    def act(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def act_batch(self, observations: Sequence[Mapping[str, Any]], infos: Sequence[Mapping[str, Any]]) -> list[str]:
        return [self.act(o, i) for o, i in zip(observations, infos)]

    def act_turn(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> str:
        """One turn of a refine episode. Default: answer afresh from the new observation.

        One-shot agents need not override it: they answer each turn as they would the first
        (for a deterministic baseline that re-sends its first answer; the ``repeat`` agent
        does so explicitly for any agent). Turn-aware agents (the oracle clicker, LVLMs that
        read the overlay) override it, and answer ``stop`` to end the episode.
        """
        return self.act(observation, info)

    def act_turn_batch(
        self, observations: Sequence[Mapping[str, Any]], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        """A batch of turns (episodes at possibly different turns). Default: ``act_batch`` when
        :meth:`act_turn` is not overridden (so batching one-shot agents keep batching), else
        :meth:`act_turn` one by one."""
        if type(self).act_turn is Agent.act_turn:
            return self.act_batch(observations, infos)
        return [self.act_turn(o, i) for o, i in zip(observations, infos)]

    def config(self) -> dict[str, Any]:
        """Options that identify this agent's behaviour (recorded in run.yaml)."""
        return {"name": self.name}

    @property
    def label(self) -> str:
        """How the leaderboard names this agent (name plus its distinguishing option)."""
        if self.arg_name:
            value = self.config().get(self.arg_name)
            if value is not None:
                return f"{self.name}:{value}"
        return self.name
