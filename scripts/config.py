"""Configuration of the training scripts: dataclasses filled by trl's ``TrlParser``.

A script declares its own options as a dataclass and parses them together with trl's
(``GRPOConfig``, ``ModelConfig``), exactly as trl's example scripts do::

    script_args, training_args, model_args = parse_config(
        argv, ScriptArguments, GRPOConfig, ModelConfig, prog="t2s train grpo",
        defaults={"output_dir": "runs/grpo"})

Where a value comes from, the later winning:

1. the dataclass defaults, then the script's ``defaults=``;
2. ``--config FILE``: a YAML mapping of field names (trl's recipe format; an ``env:``
   mapping sets environment variables, a ``provenance:`` mapping is ignored so that a
   saved resolved config is itself a recipe);
3. ``key=value`` overrides, the value read as one YAML 1.2 value (:mod:`t2s_env.options`:
   ``use_peft=true``, ``lora_target_modules=[q_proj,v_proj]``, ``root=null``); ``key.sub=value`` sets one
   entry of a mapping field (``segmenter_options.image_size=256``);
4. ``--key value`` options, parsed by argparse as in trl's scripts (``--max_steps 3``,
   ``--use_peft``, ``--lora_target_modules q_proj v_proj``; a mapping field takes YAML:
   ``--segmenter_options '{image_size: 256}'``).

``--print-config`` prints the resolved recipe and exits; ``--help`` lists every key.

Every mistake is a :class:`t2s_env.ConfigError` with one line that names the key, the
value or the file, raised while parsing, i.e. before any model or data is loaded: a
missing or unreadable file, a YAML syntax error, a key that no dataclass has (with the
closest valid names), a value of the wrong type or outside a field's choices, and any
``ValueError`` of a dataclass's ``__post_init__`` (trl's own checks, e.g. a batch that
``num_generations`` does not divide). argparse's options are exact: no abbreviations.

:func:`save_resolved_config` writes what was resolved (the inputs of each dataclass, not
their post-processed attributes, so trl's derived fields do not clash on reload) together
with package versions, the git commit and the command line, as ``config.yaml`` beside the
checkpoints; ``--config that/config.yaml`` repeats the run.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import types
import typing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import yaml

from t2s_env.errors import ConfigError, did_you_mean
from t2s_env.options import parse_value

#: Keys of a recipe file that are no dataclass field: trl's ``env`` and our ``provenance``.
RESERVED_KEYS = ("env", "provenance")
#: Distributions whose versions go into a saved config (those not installed are skipped).
RECORDED_PACKAGES = (
    "think2seg", "torch", "torchvision", "transformers", "trl", "peft", "accelerate", "datasets",
    "numpy", "gymnasium", "sam2", "tianshou", "pillow", "opencv-python-headless",
)
_OVERRIDE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_\-]+)*)=(.*)$", re.S)
_INPUTS_ATTR = "_t2s_config_inputs"
SYNTAX = (
    "--config FILE reads a YAML recipe of these keys (trl's format; env: sets environment variables). "
    "key=value overrides it with a YAML value (use_peft=true, lora_target_modules=[q_proj,v_proj], root=null; "
    "a.b=v sets one entry of a mapping); --key value options win over both. --print-config prints the "
    "resolved recipe and exits."
)


class _Parser:
    """Lazily subclassed TrlParser whose argparse errors are one-line ConfigErrors."""

    @staticmethod
    def make(dataclass_types: Sequence[type], prog: str, description: str | None) -> Any:
        from trl import TrlParser

        class T2SParser(TrlParser):
            def error(self, message: str) -> typing.NoReturn:  # argparse would print usage and exit
                raise ConfigError(f"{message} (see {self.prog} --help)")

        return T2SParser(dataclass_types=list(dataclass_types), prog=prog, allow_abbrev=False,
                         usage=f"{prog} [--config FILE] [key=value ...] [--key value ...] [--print-config]",
                         description=description, epilog=SYNTAX)


def _field_types(dataclass_types: Sequence[type]) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for dtype in dataclass_types:
        resolved = typing.get_type_hints(dtype)
        for f in dataclasses.fields(dtype):
            if f.init:
                hints[f.name] = resolved[f.name]
    return hints


def _arms(tp: Any) -> tuple[Any, ...]:
    return typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)


def _is_mapping_type(tp: Any) -> bool:
    return any(a is dict or typing.get_origin(a) is dict for a in _arms(tp))


def _is_list_type(tp: Any) -> bool:
    return any(a is list or typing.get_origin(a) is list for a in _arms(tp))


def _type_name(tp: Any) -> str:
    names = []
    for a in _arms(tp):
        if a is type(None):
            names.append("null")
        elif typing.get_origin(a) is Literal:
            names.append("one of " + ", ".join(map(str, typing.get_args(a))))
        elif typing.get_origin(a) is list:
            names.append("a list")
        elif a is dict or typing.get_origin(a) is dict:
            names.append("a mapping")
        else:
            names.append({bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
                a, getattr(a, "__name__", str(a))))
    return " or ".join(names)


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """``value`` (from YAML or a ``key=value``) as the annotation ``tp`` says, or
    ConfigError. argparse type-checks only what it parses itself, not the defaults that a
    recipe sets, so recipe values are checked here."""
    arms = _arms(tp)
    if value is None:
        if type(None) in arms or tp is Any:
            return None
        raise ConfigError(f"{name} must be {_type_name(tp)}, not null")
    # Exact matches first (a str stays a str in `str | list[str]`), then conversions.
    for strict in (True, False):
        for arm in arms:
            if arm is type(None):
                continue
            try:
                return _coerce_one(name, value, arm, strict)
            except (ConfigError, ValueError, TypeError):
                continue
    shown = value if not isinstance(value, str) else repr(value)
    raise ConfigError(f"{name} must be {_type_name(tp)}, got {shown}")


def _coerce_one(name: str, value: Any, tp: Any, strict: bool) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        for choice in typing.get_args(tp):
            if value == choice or (not strict and str(value) == str(choice)):
                return choice
        raise ValueError(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value).value if not isinstance(value, tp) else value.value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if not strict and isinstance(value, str) and value.lower() in ("yes", "true", "t", "y", "1", "no", "false", "f", "n", "0"):
            return value.lower() in ("yes", "true", "t", "y", "1")
        raise ValueError(value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if not strict and isinstance(value, float) and value.is_integer():
            return int(value)
        if not strict and isinstance(value, str):
            return int(value)
        raise ValueError(value)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if not strict and isinstance(value, str):  # YAML 1.1 reads 1e-6 (no dot) as a string
            return float(value)
        raise ValueError(value)
    if tp is str:
        if isinstance(value, str):
            return value
        if not strict and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # a name or path that YAML read as a number
        raise ValueError(value)
    if tp is list or origin is list:
        inner = (typing.get_args(tp) or (Any,))[0]
        if isinstance(value, (list, tuple)):
            return [_coerce(f"{name}[{i}]", v, inner) for i, v in enumerate(value)]
        if not strict and isinstance(value, str):
            return [_coerce(name, v.strip(), inner) for v in value.split(",") if v.strip()]
        raise ValueError(value)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ValueError(value)
        args = typing.get_args(tp)
        inner = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(f"{name}.{k}", v, inner) for k, v in value.items()}
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ValueError(value)
    return value


def _same(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # e.g. arrays: never equal here
        return False


def _unknown(key: str, where: str, known: Iterable[str], prog: str) -> ConfigError:
    return ConfigError(f"{where}: unknown key {key!r}{did_you_mean(key, known)}; `{prog} --help` lists every key")


def _read_recipe(path: str) -> dict[str, Any]:
    p = Path(path).expanduser()
    if not p.is_file():
        what = "is a folder" if p.is_dir() else "not found"
        raise ConfigError(f"config file {path} {what}; recipes live in scripts/configs/")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys (key: value lines), not a {type(data).__name__}")
    return data


def _split_argv(argv: Sequence[str], parser: Any, types_by_key: dict[str, Any]) -> tuple[list[str], list[str], list[str], bool]:
    """(config files, ``key=value`` overrides, argparse tokens, print_config). A token that
    is the value of the preceding ``--key`` (``--output_dir a=b``) stays with it."""
    takes_one = {s for a in parser._actions if a.nargs is None and a.option_strings for s in a.option_strings}
    configs: list[str] = []
    overrides: list[str] = []
    rest: list[str] = []
    print_config = False
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "--config" or tok.startswith("--config="):
            if "=" in tok:
                configs.append(tok.split("=", 1)[1])
            elif i + 1 < len(tokens):
                configs.append(tokens[i + 1])
                i += 1
            else:
                raise ConfigError("--config needs a YAML file, e.g. --config scripts/configs/grpo_tiny_cpu.yaml")
        elif tok == "--print-config":
            print_config = True
        elif tok.startswith("--") and tok[2:].split("=", 1)[0].replace("-", "_") in types_by_key and _is_mapping_type(
            types_by_key[tok[2:].split("=", 1)[0].replace("-", "_")]
        ):
            # A mapping field takes a YAML value on the command line too.
            key = tok[2:].split("=", 1)[0].replace("-", "_")
            if "=" in tok:
                overrides.append(f"{key}={tok.split('=', 1)[1]}")
            elif i + 1 < len(tokens):
                overrides.append(f"{key}={tokens[i + 1]}")
                i += 1
            else:
                raise ConfigError(f"--{key} needs a value, e.g. --{key} '{{key: value}}'")
        elif tok in takes_one:
            rest.extend(tokens[i : i + 2])
            i += 1
        elif not tok.startswith("-") and _OVERRIDE.match(tok):
            overrides.append(tok)
        else:
            rest.append(tok)
        i += 1
    return configs, overrides, rest, print_config


def _apply_override(values: dict[str, Any], text: str, types_by_key: dict[str, Any], defaults: dict[str, Any], prog: str) -> None:
    m = _OVERRIDE.match(text)
    assert m is not None
    key, sub, raw = m.group(1), m.group(2).lstrip("."), m.group(3)
    if key not in types_by_key:
        raise _unknown(key, f"override {text!r}", types_by_key, prog)
    value = parse_value(raw)
    tp = types_by_key[key]
    if isinstance(value, (int, float, bool)) and str in _arms(tp):
        value = raw.strip()  # keep `output_dir=007` and `root=1e3` as written
    if not sub:
        values[key] = value
        return
    if not _is_mapping_type(tp):
        raise ConfigError(f"{key} is not a mapping, so {key}.{sub}=... has no meaning; use {key}=value")
    current = values.get(key, defaults.get(key))
    if isinstance(current, str):
        current = yaml.safe_load(current) if current.strip() else {}
    node = dict(current or {})
    values[key] = node
    parts = sub.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        node[part] = dict(child) if isinstance(child, dict) else {}
        node = node[part]
    node[parts[-1]] = value


def parse_config(
    argv: Sequence[str] | None,
    *dataclass_types: type,
    prog: str = "t2s",
    defaults: dict[str, Any] | None = None,
    description: str | None = None,
) -> tuple[Any, ...]:
    """Instances of ``dataclass_types`` (in that order) from ``argv`` (see the module
    docstring for the syntax). ``defaults`` replaces field defaults (the script's own
    choices, e.g. a different ``output_dir``) below the recipe. Raises ConfigError with one
    line for every mistake; ``--help`` and ``--print-config`` raise ``SystemExit(0)``
    after printing."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not dataclass_types:
        raise TypeError("parse_config needs at least one dataclass type")
    parser = _Parser.make(dataclass_types, prog, description)
    types_by_key = _field_types(dataclass_types)
    base_defaults = {a.dest: a.default for a in parser._actions if a.dest in types_by_key}
    for key in defaults or {}:
        if key not in types_by_key:
            raise TypeError(f"defaults: {key!r} is no field of {[t.__name__ for t in dataclass_types]}")
    base_defaults.update(defaults or {})

    configs, overrides, rest, print_config = _split_argv(argv, parser, types_by_key)
    values: dict[str, Any] = dict(defaults or {})
    for path in configs:
        recipe = _read_recipe(path)
        env = recipe.get("env") or {}
        if not isinstance(env, dict):
            raise ConfigError(f"{path}: env must be a mapping of environment variables")
        for key, value in recipe.items():
            if key in RESERVED_KEYS:
                continue
            if key not in types_by_key:
                raise _unknown(str(key), path, types_by_key, prog)
            values[key] = value
        for key, value in env.items():  # trl's recipe convention
            os.environ[str(key)] = str(value)
    for text in overrides:
        _apply_override(values, text, types_by_key, base_defaults, prog)

    checked = {}
    for key, value in values.items():
        tp = types_by_key[key]
        if key in base_defaults and _same(value, base_defaults[key]):
            checked[key] = value  # what argparse itself would hand over (a saved config holds these)
            continue
        if isinstance(value, str) and not _is_mapping_type(tp) and not _is_list_type(tp):
            # argparse converts string defaults with the field's type; Literal choices it
            # does not check for defaults, so those are checked here.
            if any(typing.get_origin(a) is Literal or (isinstance(a, type) and issubclass(a, enum.Enum)) for a in _arms(tp)):
                value = _coerce(key, value, tp)
            checked[key] = value
            continue
        checked[key] = _coerce(key, value, tp)
    parser.set_defaults_with_config(**checked)

    namespace, remaining = parser.parse_known_args(args=rest)
    if remaining:
        first = remaining[0]
        if first.startswith("--"):
            raise _unknown(first[2:].split("=", 1)[0].replace("-", "_"), "command line", types_by_key, prog)
        raise ConfigError(f"unexpected argument {first!r}; options are --key value or key=value (see {prog} --help)")
    inputs = vars(namespace)
    # What each dataclass receives is kept (a deep copy: __post_init__ may edit lists in
    # place) so that the saved config holds inputs, not trl's derived values.
    resolved = copy.deepcopy({k: v for k, v in inputs.items() if k in types_by_key})
    objects = []
    for dtype in dataclass_types:  # as HfArgumentParser.parse_args_into_dataclasses does
        names = [f.name for f in dataclasses.fields(dtype) if f.init]
        try:
            obj = dtype(**{n: inputs[n] for n in names if n in inputs})
        except ConfigError:
            raise
        except (ValueError, TypeError) as exc:  # a __post_init__ check (trl's own)
            raise ConfigError(f"invalid configuration: {str(exc).strip().splitlines()[0]}") from None
        object.__setattr__(obj, _INPUTS_ATTR, {n: resolved[n] for n in names if n in resolved})
        objects.append(obj)
    if print_config:
        sys.stdout.write(dump_config(*objects))
        raise SystemExit(0)
    return tuple(objects)


def _plain(value: Any) -> Any:
    """YAML-safe form of a config value."""
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if dataclasses.is_dataclass(value):
        return _plain(dataclasses.asdict(value))
    return str(value)


def config_values(obj: Any) -> dict[str, Any]:
    """The fields of a parsed dataclass as they were resolved (its inputs); for a
    dataclass not made by :func:`parse_config`, its current field values."""
    inputs = getattr(obj, _INPUTS_ATTR, None)
    if inputs is None:
        inputs = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}
    secret = re.compile(r"(^|_)(token|password|secret|api_key)$", re.I)
    return {k: ("<hidden>" if secret.search(k) and v not in (None, "") else _plain(v)) for k, v in inputs.items()}


def dump_config(*objs: Any) -> str:
    """One flat YAML recipe of all fields of ``objs`` (reusable with ``--config``)."""
    merged: dict[str, Any] = {}
    for obj in objs:
        merged.update(config_values(obj))
    return yaml.safe_dump(merged, sort_keys=False, allow_unicode=True)


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Package versions, the git commit of this checkout (with ``dirty`` when it has
    uncommitted changes), Python, host and the command line."""
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    repo = Path(__file__).resolve().parents[1]
    commit: str | None = None
    dirty: bool | None = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip() or None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass  # not a git checkout (an installed wheel): no commit to record
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.argv[0] or "python"), *(sys.argv[1:] if argv is None else argv)]),
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }


def save_resolved_config(directory: str | os.PathLike[str], *objs: Any, argv: Sequence[str] | None = None,
                         filename: str = "config.yaml") -> Path:
    """Write ``directory/filename``: the resolved fields of ``objs`` as a flat recipe plus a
    ``provenance`` mapping (see :func:`provenance`). Written atomically; returns the path.
    Call it on the main process only."""
    path = Path(directory) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    text = dump_config(*objs) + yaml.safe_dump({"provenance": provenance(argv)}, sort_keys=False, allow_unicode=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
