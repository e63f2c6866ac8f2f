"""Agents, found by name or import path.

    make_agent("center-box:0.5")                  # name:arg on the command line
    make_agent("random-box", seed=3)              # options from code or YAML
    make_agent({"name": "qwen", "model": "/ckpt", "max_new_tokens": 1024})
    make_agent("my_pkg.my_mod:MyAgent:0.3")       # a plug-in by import path, with its arg
    make_agent("my-agent")                        # a plug-in registered as an entry point

Besides the built-in :data:`REGISTRY`, an installed package adds agents through the
entry-point group ``think2seg.agents`` (``my-agent = my_pkg.my_mod:MyAgent``), and any
importable ``module.path:Class`` works without registering anything (docs/agents.md).
A plug-in is a subclass of :class:`Agent`. Unknown names, modules that cannot be imported
and classes that are not agents raise :class:`t2s_env.ConfigError` naming the spec.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import re
import sys
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from t2s_env import ConfigError
from t2s_env.errors import did_you_mean
from t2s_env.options import parse_value

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
    "oracle-clicker": "think2seg.agents.refine:OracleClickerAgent",
    "repeat": "think2seg.agents.refine:RepeatAgent",
    "qwen": "think2seg.agents.hf_vlm:QwenPrompter",
    "hf-vlm": "think2seg.agents.hf_vlm:HFVLMPrompter",
    "sam3-text": "think2seg.agents.sam3_text:SAM3TextAgent",
    "rl": "think2seg.agents.rl:RLPolicyAgent",
}
BASELINES = ("full-image", "center-box", "random-box", "empty")
ORACLES = ("oracle-box", "oracle-points", "oracle-box+points")


#: The entry-point group through which installed packages register agents.
ENTRY_POINT_GROUP = "think2seg.agents"
#: ``module.path:Class`` (the class may be nested: ``Outer.Inner``)
_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


@dataclass(frozen=True)
class AgentSource:
    """Where an agent class comes from; run.yaml records it so a result names its code."""

    kind: str                   # "builtin", "entry_point" or "import"
    import_path: str            # module.path:Class
    version: str | None         # the module's __version__, else its distribution's version
    distribution: str | None    # the installed distribution providing it, when known

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def entry_point_agents() -> dict[str, importlib.metadata.EntryPoint]:
    """Agents registered by installed packages (group ``think2seg.agents``), not loaded."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_agents() -> list[str]:
    """Built-in names, then plug-in names (a plug-in cannot shadow a built-in)."""
    return list(REGISTRY) + sorted(n for n in entry_point_agents() if n not in REGISTRY)


def split_spec(spec: str) -> tuple[str, str | None]:
    """``name[:arg]`` or ``module.path:Class[:arg]`` -> (name or import path, arg or None)."""
    head, sep, rest = str(spec).strip().partition(":")
    if not sep:
        return head, None
    if head in REGISTRY or head in entry_point_agents():
        return head, rest
    attr, sep2, arg = rest.partition(":")
    if _IMPORT_PATH.fullmatch(f"{head}:{attr}"):
        return f"{head}:{attr}", (arg if sep2 else None)
    return head, rest


def resolve_agent(name: str) -> tuple[type[Agent], AgentSource]:
    """The class behind a built-in name, an entry-point name or an import path, and where
    it comes from. A built-in whose optional dependency is missing raises ImportError (the
    caller says it is not available); every plug-in failure is a ConfigError naming it."""
    cls, kind, target, module, dist = _resolve(name)
    if kind == "builtin":
        return cls, AgentSource(kind, target, _own_version(), "think2seg")
    return cls, AgentSource(kind, target, *_version_of(module, dist))


def _resolve(name: str) -> tuple[type[Agent], str, str, Any, Any]:
    """(class, kind, import path, module, entry point's distribution or None)."""
    dist = None
    if name in REGISTRY:
        kind, target = "builtin", REGISTRY[name]
    elif ":" in name and _IMPORT_PATH.fullmatch(name):
        kind, target = "import", name
    else:
        ep = entry_point_agents().get(name)
        if ep is None:
            names = available_agents()
            raise ConfigError(f"unknown agent {name!r}{did_you_mean(name, names)}; valid: {', '.join(names)}, "
                              "or a plug-in as module.path:Class[:arg]")
        kind, target, dist = "entry_point", ep.value, ep.dist
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - a plug-in's import may fail in any way
        if kind == "builtin" and isinstance(exc, ImportError):
            raise
        raise ConfigError(f"agent {name!r}: cannot import module {module_name!r} ({type(exc).__name__}: {exc}); "
                          "install it or fix the import path module.path:Class") from None
    try:
        cls = functools.reduce(getattr, attr.split("."), module)
    except AttributeError:
        raise ConfigError(f"agent {name!r}: module {module_name!r} has no {attr!r}; "
                          "give the import path as module.path:Class") from None
    if not (inspect.isclass(cls) and issubclass(cls, Agent)):
        what = f"class {cls.__qualname__}" if inspect.isclass(cls) else type(cls).__name__
        raise ConfigError(f"agent {name!r} is not an agent: {target} is a {what}, "
                          "not a subclass of think2seg.agents.Agent")
    return cls, kind, target, module, dist


def _own_version() -> str | None:
    try:
        return importlib.metadata.version("think2seg")
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def _top_level_distributions() -> Mapping[str, list[str]]:
    """Top-level package -> distributions (scans every installed one: slow, so once)."""
    return importlib.metadata.packages_distributions()


def _version_of(module: Any, dist: Any) -> tuple[str | None, str | None]:
    """(version, distribution) of an agent's module: the entry point's distribution when
    it came from one; else the ``__version__`` of the module or its nearest package that
    has one (a plug-in may live in an uninstalled source tree); else the version of the
    installed distribution that provides its top-level package."""
    if dist is not None:
        return dist.version, dist.metadata["Name"]
    parts = module.__name__.split(".")
    for i in range(len(parts), 0, -1):
        own = getattr(sys.modules.get(".".join(parts[:i])), "__version__", None)
        if own is not None:
            return str(own), None
    for name in _top_level_distributions().get(parts[0], []):
        try:
            return importlib.metadata.version(name), name
        except importlib.metadata.PackageNotFoundError:
            continue
    return None, None


def agent_class(name: str) -> type[Agent]:
    """The class of a built-in name, an entry-point name or ``module.path:Class``."""
    return _resolve(name)[0]


def agent_source(spec: "str | Mapping[str, Any]") -> dict[str, Any]:
    """Where the agent of ``spec`` comes from, as run.yaml records it."""
    name = spec["name"] if isinstance(spec, Mapping) else spec
    return resolve_agent(split_spec(name)[0])[1].to_dict()


def make_agent(spec: "str | Mapping[str, Any]", **options: Any) -> Agent:
    """An agent from ``name[:arg]`` or a mapping with ``name`` plus options."""
    if isinstance(spec, Mapping):
        options = {**{k: v for k, v in spec.items() if k != "name"}, **options}
        spec = spec["name"]
    name, arg = split_spec(spec)
    cls = agent_class(name)
    if arg is not None:
        if not cls.arg_name:
            raise ConfigError(f"agent {name!r} takes no ':' argument (got {spec!r})")
        options.setdefault(cls.arg_name, parse_value(arg))  # the KEY=VALUE value grammar
    params = inspect.signature(cls.__init__).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in options if k not in params and not accepts_any]
    if unknown:
        valid = [p for p, param in params.items() if p != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)]
        raise ConfigError(f"agent {name!r} has no option {unknown[0]!r}{did_you_mean(unknown[0], valid)}; "
                          f"valid: {', '.join(valid) or 'none'}")
    agent = cls(**options)
    if cls.name == Agent.name:  # a plug-in that names itself nothing goes by its class
        agent.name = cls.__name__
    return agent


__all__ = ["Agent", "AgentSource", "BASELINES", "ENTRY_POINT_GROUP", "ORACLES", "REGISTRY", "agent_class",
           "agent_source", "available_agents", "entry_point_agents", "make_agent", "resolve_agent", "split_spec"]
