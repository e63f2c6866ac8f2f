"""Reading RRSIS-D's refs pickle without running its code or exhausting memory.

:func:`read_refs_pickle` reads a refs file in two passes. The restricted unpickler
(:class:`_PlainUnpickler`) builds plain data only (lists, dicts, tuples, sets, strings,
bytes, numbers, booleans and None) and refuses any class or function, which is how a
pickle runs code. But CPython's C unpickler still trusts the numbers a pickle declares: a
``LONG_BINPUT`` with memo index 10**8 makes it grow its memo array to that size first (a
399-byte refs file took `t2s data check` from 0.8 to 2.3 GB resident, 3.9 GB with index
2·10**8), a declared string length reserves that many bytes before they are read, and a
tuple nested a million times inside a dict key overflows the C stack when the key is
hashed (tuple hashing does not check recursion). :func:`check_pickle` walks the opcodes without building anything and
refuses such a file before :class:`pickle.Unpickler` sees it:

- a memo index (``PUT``/``LONG_BINPUT``) beyond the number of opcodes read so far: every
  memo entry names an object an earlier opcode built, so no pickle a pickler wrote has a
  larger one (the C memo then stays within 16 bytes per opcode; ``BINPUT``'s one-byte
  index and ``MEMOIZE``'s implicit one are bounded already);
- a declared length (strings, bytes, ``LONG4``, frames) beyond the bytes that remain;
- tuples nested more than ``max_tuple_depth`` deep (what hashing recurses through; a
  frozenset caches its elements' hashes and does not add to the depth);
- a byte that is not an opcode, or no ``STOP``.

With those bounds, unpickling allocates in proportion to the file's size. The common
opcodes take one table look-up each: for an RRSIS-D-sized refs list (17,402 refs, 2.7 MB
in protocol 4, 4.8 MB in protocol 0, 0.9–1.3 M opcodes) the pass took 0.3–1.8 s on a
loaded 2-core machine, 1–2.5 times as long as unpickling it. The tuple depth is simulated
(3–11 s there) only when a pickle builds more tuples than the depth bound, which refs
made of lists and dicts never do.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from .sample import open_data_file

#: deeper tuples than this are not plain refs data (a ref is a few levels deep)
MAX_TUPLE_DEPTH = 64

# Argument layouts (pickletools' descriptors): a fixed byte count (>= 0), one or two
# lines (GLOBAL and INST take two), or a length prefix of 1, 4 (signed or not) or 8 bytes.
_LINE, _TWO_LINES = "line", "two lines"
_PREFIX = {pickletools.TAKEN_FROM_ARGUMENT1: (1, False), pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
           pickletools.TAKEN_FROM_ARGUMENT4U: (4, False), pickletools.TAKEN_FROM_ARGUMENT8U: (8, False)}
#: opcodes the fast pass must look at rather than step over
_CHECKED = {"PUT", "LONG_BINPUT", "FRAME", "STOP", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"}


class PickleRefused(ValueError):
    """The pickle declares more than its bytes can hold, or is not a well-formed pickle."""


def _layout(op: pickletools.OpcodeInfo) -> "int | str | tuple[int, bool]":
    if op.arg is None:
        return 0
    if op.arg.n >= 0:
        return op.arg.n
    if op.arg.n == pickletools.UP_TO_NEWLINE:
        return _TWO_LINES if op.name in ("GLOBAL", "INST") else _LINE
    return _PREFIX[op.arg.n]


#: opcode byte -> (opcode, argument layout), None for a byte that is no opcode
_OPS: list = [None] * 256
# How the fast pass steps over an opcode: its whole width (> 0), or one of these.
_OVER_LINE, _PUT_LINE, _OVER_PREFIX1, _OVER_PREFIX4, _SLOW = -1, -2, -3, -4, 0


def _step(op: pickletools.OpcodeInfo) -> int:
    layout = _layout(op)
    if op.name == "PUT":
        return _PUT_LINE
    if op.name in _CHECKED:
        return _SLOW
    if isinstance(layout, int):
        return 1 + layout
    return {_LINE: _OVER_LINE, (1, False): _OVER_PREFIX1, (4, False): _OVER_PREFIX4}.get(layout, _SLOW)


#: opcode byte -> how the fast pass steps over it
_STEP = [_SLOW] * 256
for _op in pickletools.opcodes:
    _OPS[ord(_op.code)] = (_op, _layout(_op))
    _STEP[ord(_op.code)] = _step(_op)
del _op


def _argument(data: bytes, start: int, layout) -> tuple[int, int]:
    """(offset after the opcode at ``start`` and its argument, the argument as a number:
    the fixed-width value, or the memo index of a PUT/GET line; else 0)."""
    n = len(data)
    pos = start + 1
    if isinstance(layout, int):
        if pos + layout > n:
            raise PickleRefused(f"{_OPS[data[start]][0].name} at byte {start} is cut off")
        return pos + layout, int.from_bytes(data[pos:pos + layout], "little")
    name = _OPS[data[start]][0].name
    if isinstance(layout, tuple):  # a length prefix, then that many bytes
        width, signed = layout
        if pos + width > n:
            raise PickleRefused(f"{name} at byte {start} is cut off")
        size = int.from_bytes(data[pos:pos + width], "little", signed=signed)
        pos += width
        if not 0 <= size <= n - pos:
            raise PickleRefused(f"{name} at byte {start} declares {size:,} bytes but {n - pos:,} remain")
        return pos + size, 0
    for _ in range(2 if layout == _TWO_LINES else 1):
        end = data.find(b"\n", pos)
        if end < 0:
            raise PickleRefused(f"{name} at byte {start} has no end of line")
        pos = end + 1
    return pos, (_line_index(data, start, pos - 1) if name in ("PUT", "GET") else 0)


def check_pickle(data: bytes, max_tuple_depth: int = MAX_TUPLE_DEPTH) -> int:
    """Raise :class:`PickleRefused` (the reason and the byte offset) when unpickling
    ``data`` could allocate out of proportion to its size or recurse without bound;
    return the number of opcodes up to its ``STOP``."""
    n, pos, count, tuples = len(data), 0, 0, 0
    step = _STEP
    while True:
        if pos >= n:
            raise PickleRefused(f"it ends at byte {n} without a STOP opcode")
        code = data[pos]
        count += 1
        how = step[code]
        if how > 0:
            pos += how
            continue
        if how == _OVER_PREFIX1 or how == _OVER_PREFIX4:
            body = pos + (2 if how == _OVER_PREFIX1 else 5)
            if body > n:
                raise PickleRefused(f"{_OPS[code][0].name} at byte {pos} is cut off")
            end = body + int.from_bytes(data[pos + 1:body], "little")
            if end > n:
                raise PickleRefused(f"{_OPS[code][0].name} at byte {pos} declares {end - body:,} bytes "
                                    f"but {n - body:,} remain")
        elif how == _OVER_LINE or how == _PUT_LINE:
            end = data.find(b"\n", pos) + 1
            if not end:
                raise PickleRefused(f"{_OPS[code][0].name} at byte {pos} has no end of line")
            if how == _PUT_LINE:
                _check_memo_index("PUT", pos, _line_index(data, pos, end - 1), count)
        elif _OPS[code] is None:
            raise PickleRefused(f"byte {pos} holds 0x{code:02x}, which is not a pickle opcode")
        else:
            op, layout = _OPS[code]
            end, value = _argument(data, pos, layout)
            if op.name == "LONG_BINPUT":
                _check_memo_index(op.name, pos, value, count)
            elif op.name == "FRAME" and value > n - end:
                raise PickleRefused(f"FRAME at byte {pos} declares {value:,} bytes but {n - end:,} remain")
            elif op.name == "STOP":
                break
            tuples += op.name.startswith("TUPLE")
        pos = end
    if tuples >= max_tuple_depth:  # a tuple d deep takes d - 1 TUPLE opcodes (and an empty tuple)
        _check_tuple_depth(data, max_tuple_depth)
    return count


def _line_index(data: bytes, start: int, end: int) -> int:
    """The memo index on the line of the PUT or GET at ``start`` (the line ends at ``end``)."""
    digits = data[start + 1:end].strip()
    if not digits.isdigit():
        raise PickleRefused(f"{_OPS[data[start]][0].name} at byte {start} has the memo index {digits[:20]!r}, not a number")
    return int(digits[:20])  # more digits are out of range anyway


def _check_memo_index(name: str, offset: int, index: int, count: int) -> None:
    # A pickler numbers memo entries 0, 1, 2 ... as it stores them: each names an object
    # an earlier opcode built.
    if index >= count:
        raise PickleRefused(f"{name} at byte {offset} stores memo index {index:,} after only {count:,} opcodes")


def _check_tuple_depth(data: bytes, limit: int) -> None:
    """Simulate the unpickler's stack, holding per object its tuple nesting depth (0 for
    anything but a tuple), and refuse a tuple deeper than ``limit``. ``data`` has passed
    :func:`check_pickle`'s pass: its opcodes are whole and end in STOP."""
    depths: list[int] = []
    marks: list[int] = []  # stack heights at the open MARKs
    memo: dict[int, int] = {}
    pos = 0
    while True:
        op, layout = _OPS[data[pos]]
        start = pos
        pos, value = _argument(data, pos, layout)
        name = op.name
        if name == "STOP":
            return
        if pickletools.markobject in op.stack_before:  # pops back to the last MARK
            if not marks:
                raise PickleRefused(f"{name} at byte {start} has no MARK before it")
            inner = depths[marks[-1]:]
            del depths[marks.pop():]
            if name == "TUPLE":
                depths.append(_tuple_depth(1 + max(inner, default=0), limit, start))
            elif op.stack_after and op.stack_before[0] is pickletools.markobject:
                depths.append(0)  # LIST, DICT, FROZENSET, INST, OBJ: a new object; APPENDS etc. keep theirs
            continue
        pops = len(op.stack_before)
        if len(depths) < pops:
            raise PickleRefused(f"{name} at byte {start} pops an empty stack")
        if name == "MARK":
            marks.append(len(depths))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            depth = _tuple_depth(1 + max(depths[-pops:]), limit, start)
            del depths[-pops:]
            depths.append(depth)
        elif name == "DUP":
            depths.append(depths[-1])
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            depths.append(memo.get(value, 0))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            if not depths:
                raise PickleRefused(f"{name} at byte {start} finds an empty stack")
            memo[len(memo) if name == "MEMOIZE" else value] = depths[-1]
        else:
            if pops:
                del depths[-pops:]
            depths += [0] * len(op.stack_after)


def _tuple_depth(depth: int, limit: int, offset: int) -> int:
    if depth > limit:
        raise PickleRefused(f"the tuple built at byte {offset} nests tuples more than {limit} deep")
    return depth


# -- the restricted unpickler ----------------------------------------------------------------
#: a refs file far larger than RRSIS-D's (a few MiB) is not a refs file
MAX_REFS_BYTES = 512 << 20


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles lists, dicts, tuples, sets, strings, bytes, numbers, booleans and None:
    what the pickle opcodes build by themselves, plus the two look-ups old protocols use
    for sets and bytes. Any other class or function (``find_class``), which is how a
    pickle runs code, is refused before it is imported or called; so are persistent ids."""

    #: Python-2-era protocol-2 pickles build sets through these, which run no user code.
    _SAFE = {("builtins", "set"), ("builtins", "frozenset"), ("__builtin__", "set"), ("__builtin__", "frozenset")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._SAFE:
            return set if name == "set" else frozenset
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 stores bytes
            return _latin1_bytes
        raise pickle.UnpicklingError(
            f"it asks to build {module}.{name}, and only plain lists, dicts, strings and numbers are allowed"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it holds a persistent id, and only plain data is allowed")


def _latin1_bytes(text: Any, encoding: str = "latin1") -> bytes:
    """Protocol-2 pickles store bytes as ``_codecs.encode(text, "latin1")``; only that exact
    call is admitted (another codec is not plain data)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("it calls _codecs.encode with other than (text, 'latin1')")
    return text.encode("latin-1")


def read_refs_pickle(path: Path) -> list:
    """The refs of an RRSIS-D ``refs(unc).p``, read with a restricted unpickler (plain data
    only, so a crafted file cannot run code) after a pass over its opcodes that bounds
    what unpickling may allocate (:func:`check_pickle`); any problem is one :class:`DatasetError`."""
    with open_data_file(path, "refs file") as f:
        data = f.read(MAX_REFS_BYTES + 1)
    if len(data) > MAX_REFS_BYTES:
        raise DatasetError(f"refs file {path} is larger than {MAX_REFS_BYTES >> 20} MiB; it cannot be RRSIS-D's refs")
    try:  # before the unpickler trusts any declared size or index
        check_pickle(data)
    except PickleRefused as exc:
        raise DatasetError(f"{path} is not a valid refs file: {exc}; download it again") from None
    try:
        try:
            refs = _PlainUnpickler(io.BytesIO(data)).load()
        except UnicodeDecodeError:  # a Python 2 pickle with non-ASCII text
            refs = _PlainUnpickler(io.BytesIO(data), encoding="latin1").load()
    except RecursionError:
        raise DatasetError(f"cannot read refs file {path}: it is nested too deeply; download it again") from None
    except Exception as exc:  # a corrupt pickle raises almost anything (TypeError, MemoryError, OverflowError ...)
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise DatasetError(
            f"cannot read refs file {path}: {type(exc).__name__}{': ' + reason if reason else ''}; download it again"
        ) from None
    return refs_list(refs, path)


def refs_list(refs: Any, path: Path) -> list:
    """The list of refs a refs file holds (a list, or ``{"refs": [...]}``), else DatasetError."""
    if isinstance(refs, dict) and isinstance(refs.get("refs"), list):
        refs = refs["refs"]
    if not isinstance(refs, list):
        raise DatasetError(f"refs file {path} must hold a list of refs, not {type(refs).__name__}; download it again")
    return refs


__all__ = ["MAX_REFS_BYTES", "MAX_TUPLE_DEPTH", "PickleRefused", "check_pickle", "read_refs_pickle", "refs_list"]
