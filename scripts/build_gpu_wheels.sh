#!/usr/bin/env bash
# Build the wheel folder that scripts/gpu_check.sh installs on the GPU machine.
#
#   scripts/build_gpu_wheels.sh [DIR]        # default .gpu-wheels (git-ignored)
#
# The GPU image (Python 3.12, torch, transformers, peft, accelerate, numpy, pillow, opencv,
# pyyaml, tqdm; see /work/shared/ECOSYSTEM.md) lacks what the checks import: sam2 and its
# hydra-core / omegaconf / antlr4 / iopath / portalocker, trl and datasets (with pyarrow,
# pandas + python-dateutil, pytz, tzdata, xxhash, multiprocess, dill, fsspec), gymnasium (+ farama-notifications,
# cloudpickle), json-repair and pycocotools. Versions are the ones installed in this
# checkout's .venv, so the GPU run imports what the tests here ran. Pure-Python packages are
# built here (pip wheel --no-deps; antlr4 and iopath exist only as sdists; sam2 needs torch
# present and SAM2_BUILD_CUDA=0); compiled ones are downloaded as cp312 manylinux wheels.
# gpu_check.sh installs only the wheels whose distribution the image lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.gpu-wheels}
PY=${PY:-.venv/bin/python}
PIP="$PY -m pip"
version() { "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
pin() { for n in "$@"; do printf '%s==%s ' "$n" "$(version "$n")"; done; }

PURE="hydra-core omegaconf antlr4-python3-runtime iopath portalocker trl datasets dill fsspec gymnasium
      farama-notifications cloudpickle json-repair python-dateutil pytz tzdata"
BINARY="pyarrow pandas xxhash multiprocess pycocotools"

rm -rf "$DIR.tmp" && mkdir -p "$DIR.tmp"
# shellcheck disable=SC2046
$PIP wheel -q --no-deps -w "$DIR.tmp" $(pin $PURE)
SAM2_BUILD_CUDA=0 $PIP wheel -q --no-deps --no-build-isolation -w "$DIR.tmp" "sam2==$(version sam2)"
# shellcheck disable=SC2046
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DIR.tmp" $(pin $BINARY)
# The device tool carries at most 64 MiB: pyarrow's wheel (55 MB, zip) goes as an xz tar of
# its unpacked files (38 MB); gpu_check.sh unpacks *.whl and *.whl.tar.xz alike.
for whl in "$DIR.tmp"/pyarrow-*.whl; do
    stage=$(mktemp -d)
    "$PY" -m zipfile -e "$whl" "$stage"
    tar -C "$stage" -cf - . | xz -6 -T0 > "$whl.tar.xz"
    rm -rf "$stage" "$whl"
done
rm -rf "$DIR" && mv "$DIR.tmp" "$DIR"  # a failed build leaves no half folder behind
ls -1 "$DIR"
du -sb "$DIR"  # must stay under 64 MiB (67108864 bytes)
