"""One ``KEY=VALUE`` grammar for every command line.

``t2s bench --segmenter-option`` / ``--protocol-option``, ``t2s serve --segmenter-option``,
an agent's ``name:VALUE`` and the training scripts' ``key=value`` overrides all read their
values with :func:`parse_value`. A VALUE is one YAML 1.2 (core schema) value:

=========================================  ===================================================
``true``, ``True``, ``TRUE``, ``false`` …   a bool (``yes``, ``no``, ``on``, ``off`` stay text)
``null``, ``~``, or nothing                 ``None`` (``checkpoint=`` unsets an option)
``3``, ``-7``, ``010``, ``0x1f``, ``0o17``  an int (``010`` is ten: octal needs ``0o``)
``0.5``, ``.5``, ``1e3``, ``-2.5E-4``       a float (``1e3`` is a number, as in JSON)
``.inf``, ``-.inf``, ``.nan``               a float (``inf`` and ``nan`` stay text)
``[a, 1]``, ``{k: v}``                      a list / mapping, its items by these same rules
``'a b'``, ``"a\\tb"``                       the quoted text (to keep ``'true'`` or ``'3'`` text)
anything else                               the text as written, blanks around it removed:
                                            paths, ``cuda:0``, ``>``, ``2024-01-01``, ``a #b``
=========================================  ===================================================

Text that starts like a list, mapping or quoted string but is not one (``[1,``) is kept as
written too. Keys are the text before the first ``=``, blanks removed; a repeated key keeps
its last value. An item without ``=`` or with an empty key is a
:class:`~t2s_env.errors.ConfigError` of one line naming the flag.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

import yaml

from .errors import ConfigError


def _int(text: str) -> int:
    return int(text, 0) if text[:2] in ("0o", "0x") else int(text, 10)  # "010" is ten


def _float(text: str) -> float:
    return float(text.lower().replace(".inf", "inf").replace(".nan", "nan"))


#: YAML 1.2 core schema: the implicitly typed plain scalars as (type, pattern, first
#: characters, conversion); every other plain scalar is text
_CORE_SCALARS = (
    ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF", lambda t: t.lower() == "true"),
    ("null", r"~|null|Null|NULL|", "~nN", lambda t: None),
    ("int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789", _int),
    ("float", r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
     "-+.0123456789", _float),
)


def _plain_scalar(text: str) -> Any:
    for _, pattern, _, convert in _CORE_SCALARS:
        if re.fullmatch(pattern, text):
            return convert(text)
    return text


class _CoreLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's core resolvers instead of YAML 1.1's (no
    ``yes``/``no`` bools, no sexagesimals, no dates, ``1e3`` a float, ``010`` decimal),
    for the items of flow lists and mappings."""

    yaml_implicit_resolvers: dict = {}


for _name, _pattern, _first, _convert in _CORE_SCALARS:
    _tag = f"tag:yaml.org,2002:{_name}"
    _CoreLoader.add_implicit_resolver(_tag, re.compile(rf"^(?:{_pattern})$"), [*_first, *([""] if _name == "null" else [])])
    _CoreLoader.add_constructor(_tag, lambda loader, node, convert=_convert: convert(loader.construct_scalar(node)))
del _name, _pattern, _first, _convert, _tag

#: what a value that opens like a flow collection or a quoted string must turn out to be
_OPENERS = {"[": list, "{": dict, "'": str, '"': str}


def parse_value(text: str) -> Any:
    """One VALUE of the grammar above: ``"0.5"`` -> 0.5, ``"1e3"`` -> 1000.0, ``"true"`` ->
    True, ``""`` -> None, ``"[a, 1]"`` -> ["a", 1], ``"/ckpt/sam2.pt"`` -> itself."""
    stripped = str(text).strip()
    expected = _OPENERS.get(stripped[:1])
    if expected is None:
        # typed by the core patterns alone, never read as a YAML document: ``>``, ``&x``
        # and ``a: b`` are text, not a block scalar, an anchor or a mapping
        return _plain_scalar(stripped)
    try:
        value = yaml.load(stripped, Loader=_CoreLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError:
        return stripped
    return value if isinstance(value, expected) else stripped


def split_key_value(item: str, flag: str, hint: str = "") -> tuple[str, str]:
    """``"KEY=VALUE"`` -> (KEY, VALUE text), or a one-line ConfigError naming ``flag``."""
    key, sep, value = str(item).partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} takes KEY=VALUE, got {item!r}" + (f"; {hint}" if hint else ""))
    return key.strip(), value


def parse_key_values(items: Iterable[str] | None, flag: str, hint: str = "") -> dict[str, Any]:
    """Repeated ``KEY=VALUE`` strings of ``flag`` -> {KEY: :func:`parse_value` (VALUE)};
    a repeated key keeps its last value. ``hint`` follows the error (e.g. the valid keys)."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, value = split_key_value(item, flag, hint)
        out[key] = parse_value(value)
    return out


__all__ = ["parse_key_values", "parse_value", "split_key_value"]
