"""Dependency floors: setup.cfg and constraints/minimum.txt agree, every floor is at least
what the code needs, and the installed environment satisfies them.

CI proves the floors themselves by installing exactly constraints/minimum.txt and running
the suite (the file's header has the command); this test keeps that file honest."""

from __future__ import annotations

import configparser
import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "constraints" / "minimum.txt"

#: package -> (lowest acceptable floor, why). A floor below this is a lie: the code would
#: break at that version.
NEEDED = {
    "numpy": ("2.0", "np.bitwise_count in t2s_env/metrics.py"),
    "gymnasium": ("1.1.0", "gymnasium.vector.AutoresetMode in t2s_env/vector.py"),
    "opencv-python-headless": ("4.10.0.84", "first release built against NumPy 2"),
    "pycocotools": ("2.0.8", "first release built against NumPy 2"),
    "pyyaml": ("6.0.1", "6.0's sdist does not build on Python 3.11+ (Cython 3)"),
    "torch": ("2.5.1", "sam2 1.1.0 requires it"),
    "torchvision": ("0.20.1", "sam2 1.1.0 requires it"),
    "tqdm": ("4.66.3", "datasets 5.2 requires it"),
    "pillow": ("10.4.0", "10.0-10.1 read a 16-bit PNG as mode I, not I;16 (tests/robustness/test_data_robustness.py)"),
    "tensorboard": ("2.18.0", "2.14-2.17 use np.string_, gone in NumPy 2, in the HParams plugin"),
    "matplotlib": ("3.8.4", "first release built against NumPy 2"),
    "pyarrow": ("24.0.0", "datasets 5.2 requires it"),
    "trl": ("1.16.0", "GRPOConfig fields and reward kwargs used by scripts/train_grpo.py (tested floor)"),
    "transformers": ("5.24.0", "Qwen2.5-VL key names, dtype=, activation_checkpointing (tested floor)"),
}


def setup_requirements() -> dict[str, Requirement]:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(REPO / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines()
    for _extra, value in cfg["options.extras_require"].items():
        lines += value.splitlines()
    reqs = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("%("):
            continue
        req = Requirement(line)
        reqs[req.name.lower()] = req
    return reqs


def minimum_pins() -> dict[str, Version]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints/minimum.txt: {line!r} is not name==version"
            pins[name.strip().lower()] = Version(version.strip())
    return pins


def floor(req: Requirement) -> Version | None:
    lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "~=", "==")]
    return max(lows) if lows else None


def test_every_requirement_has_a_floor_equal_to_the_constraints_file():
    reqs, pins = setup_requirements(), minimum_pins()
    assert set(reqs) == set(pins), f"only in setup.cfg: {set(reqs) - set(pins)}; only in constraints: {set(pins) - set(reqs)}"
    for name, req in reqs.items():
        assert floor(req) == pins[name], f"{name}: setup.cfg says {req.specifier}, constraints/minimum.txt {pins[name]}"
        assert pins[name] in req.specifier, f"{name}: the minimum {pins[name]} is outside {req.specifier}"


@pytest.mark.parametrize("name", sorted(NEEDED))
def test_floors_are_at_least_what_the_code_needs(name):
    need, why = NEEDED[name]
    req = setup_requirements()[name]
    assert floor(req) >= Version(need), f"{name} floor {floor(req)} is below {need}: {why}"


def test_sam2_is_pinned_to_the_1_1_series():
    spec = setup_requirements()["sam2"].specifier
    assert spec.contains("1.1.0") and spec.contains("1.1.9")
    assert not spec.contains("1.2.0") and not spec.contains("1.0.0")


def test_the_minimum_set_is_co_installable():
    """Where a pinned package is installed at exactly its minimum, its own requirements on
    other pinned packages must accept their minimums (else pip cannot install the set)."""
    pins = minimum_pins()
    clashes = []
    for name, pin in pins.items():
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if Version(dist.version) != pin:
            continue  # another version's metadata says nothing about the minimum's
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            other = req.name.lower().replace("_", "-")
            if other in pins and not req.specifier.contains(pins[other], prereleases=True):
                clashes.append(f"{name} {pin} requires {req}, constraints pin {other}=={pins[other]}")
    assert not clashes, clashes


def test_installed_versions_satisfy_setup_cfg():
    bad = []
    for name, req in setup_requirements().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an extra that this environment does not have
        if not req.specifier.contains(installed, prereleases=True):
            bad.append(f"{name} {installed} not in {req.specifier}")
    assert not bad, bad


def test_the_apis_behind_the_floors_exist_here():
    import gymnasium.vector
    import numpy as np

    assert np.bitwise_count(np.array([7], np.uint8))[0] == 3
    assert hasattr(gymnasium.vector, "AutoresetMode")


def test_docs_name_the_current_hub_command():
    """huggingface_hub 2.x has no `huggingface-cli`; the command is `hf download`."""
    texts = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    stale = [p.name for p in texts if re.search(r"huggingface-cli\s+download", p.read_text())]
    assert not stale, stale
