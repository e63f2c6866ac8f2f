#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment and installs Think2Seg into it,
# editable, with every extra. Idempotent: a stamp records what was installed, so a warm
# call returns at once. Usage: scripts/install.sh [VENV_DIR]   (default: .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
PYTHON="${PYTHON:-python3}"
# torch and torchvision must come as a matching pair (see ECOSYSTEM notes in README).
TORCH_SPEC="${T2S_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
SAM2_SPEC="${T2S_SAM2_SPEC:-sam2==1.1.0}"

# PIP_CONSTRAINT=constraints/minimum.txt (with T2S_TORCH_SPEC="torch==2.5.1 torchvision==0.20.1")
# installs the oldest allowed versions instead: `make test-min`.
stamp_of() { cat setup.cfg pyproject.toml scripts/install.sh constraints/verl-test.txt ${PIP_CONSTRAINT:-} | sha256sum | cut -c1-16; echo "$TORCH_SPEC $SAM2_SPEC ${PIP_CONSTRAINT:-} ${T2S_NO_VERL:-}"; }
want="$(stamp_of)"
if [ -f "$VENV/.t2s-install-stamp" ] && [ "$(cat "$VENV/.t2s-install-stamp")" = "$want" ] \
   && [ -x "$VENV/bin/t2s" ]; then
  exit 0
fi

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Think2Seg needs Python >= 3.10; set PYTHON=/path/to/python3.10+")'
echo "[install] virtual environment at $VENV (first run: a few minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip setuptools wheel
# shellcheck disable=SC2086
"${PIP[@]}" install $TORCH_SPEC
# sam2's build imports torch, so it must see the torch installed above (no isolation),
# and its optional CUDA extension is skipped: it only serves hole-filling post-processing.
SAM2_BUILD_CUDA=0 "${PIP[@]}" install --no-build-isolation "$SAM2_SPEC"
"${PIP[@]}" install -e ".[all]"
# verl 0.9.1 for tests/env/integrations/test_integrations.py, beside the environment rather than in it (it pins
# transformers<5.11 and needs ray): constraints/verl-test.txt lists it and what its reward code
# imports; --no-deps keeps torch & co. from being installed twice (+227 MB, ~20 s; measured in
# docs/scale-out.md). The environment's own constraint file does not apply to this folder.
# T2S_NO_VERL=1 skips it (those tests then skip, naming this folder).
VERL_DIR="$VENV/verl-0.9.1"
if [ -z "${T2S_NO_VERL:-}" ]; then
  rm -rf "$VERL_DIR"
  env -u PIP_CONSTRAINT "${PIP[@]}" install --no-deps --no-compile --target "$VERL_DIR" -r constraints/verl-test.txt
fi
# A headless browser for the test that opens `t2s report`'s page (skipped without one).
# Best effort: only through apt-get as root, and never fatal; T2S_NO_CHROMIUM=1 skips it.
if [ -z "${T2S_NO_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 \
   && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "[install] installing chromium (apt-get) for the report's browser test" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
    || echo "[install] could not install chromium; the report's browser test will be skipped" >&2
fi
echo "$want" > "$VENV/.t2s-install-stamp"
echo "[install] done" >&2
