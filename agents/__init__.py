"""Plug-in agents, found by name.

    make_agent("center-box:0.5")                  # name:arg on the command line
    make_agent("random-box", seed=3)              # options from code or YAML
    make_agent({"name": "qwen", "model": "/ckpt", "max_new_tokens": 1024})

Unknown names raise :class:`t2s_env.ConfigError` listing the valid ones.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Mapping

from t2s_env import ConfigError

from .base import Agent

#: name -> "module:Class"; modules are imported on demand (qwen needs transformers).
REGISTRY: dict[str, str] = {
    "full-image": "think2seg.agents.baselines:FullImageAgent",
    "center-box": "think2seg.agents.baselines:CenterBoxAgent",
    "random-box": "think2seg.agents.baselines:RandomBoxAgent",
    "empty": "think2seg.agents.baselines:EmptyAgent",
    "oracle-box": "think2seg.agents.oracles:OracleBoxAgent",
    "oracle-points": "think2seg.agents.oracles:OraclePointsAgent",
    "oracle-box+points": "think2seg.agents.oracles:OracleBoxPointsAgent",
    "qwen": "think2seg.agents.qwen:QwenPrompter",
}
BASELINES = ("full-image", "center-box", "random-box", "empty")
ORACLES = ("oracle-box", "oracle-points", "oracle-box+points")


def available_agents() -> list[str]:
    return list(REGISTRY)


def agent_class(name: str) -> type[Agent]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown agent {name!r}; valid: {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_agent(spec: "str | Mapping[str, Any]", **options: Any) -> Agent:
    """An agent from ``name[:arg]`` or a mapping with ``name`` plus options."""
    if isinstance(spec, Mapping):
        options = {**{k: v for k, v in spec.items() if k != "name"}, **options}
        spec = spec["name"]
    name, sep, arg = str(spec).partition(":")
    cls = agent_class(name)
    if sep:
        if not cls.arg_name:
            raise ConfigError(f"agent {name!r} takes no ':' argument (got {spec!r})")
        options.setdefault(cls.arg_name, _coerce(arg))
    params = inspect.signature(cls.__init__).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in options if k not in params and not accepts_any]
    if unknown:
        valid = [p for p in params if p not in ("self",)]
        raise ConfigError(f"agent {name!r} has no option(s) {unknown}; valid: {', '.join(valid) or 'none'}")
    return cls(**options)


def _coerce(text: str) -> Any:
    """'0.5' -> 0.5, '3' -> 3, 'true' -> True; anything else stays a string (a path)."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


__all__ = ["Agent", "BASELINES", "ORACLES", "REGISTRY", "agent_class", "available_agents", "make_agent"]
