"""The Text space of the protocol: questions and completions as gymnasium ``spaces.Text``."""

from __future__ import annotations

from gymnasium import spaces

#: Characters of the Text spaces: every printable character of the Basic Multilingual
#: Plane (Latin, Greek, Cyrillic, CJK, punctuation …) plus newline and tab, so that any
#: dataset question and any completion an LVLM writes lies in the space.
CHARSET = frozenset(c for c in map(chr, range(0x20, 0xD800)) if c.isprintable()) | {"\n", "\t"}


class ProtocolText(spaces.Text):
    """``spaces.Text`` over :data:`CHARSET` whose repr stays short: gymnasium's lists all
    ~54,000 characters, so ``print(env.observation_space)`` wrote 54 kB."""

    def __repr__(self) -> str:
        return f"Text({self.min_length}, {self.max_length}, charset=<{len(self.character_set)} printable BMP chars + \\n \\t>)"


__all__ = ["CHARSET", "ProtocolText"]
