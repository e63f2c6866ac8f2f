#!/usr/bin/env bash
# The one prepared GPU run: the SAM2 segmenter check and trl's GRPO step check, within 8
# minutes on one GPU. Build the wheels here first (scripts/build_gpu_wheels.sh), then from a
# session with a device machine:
#
#   run(command="bash scripts/gpu_check.sh", carry=[".gpu-wheels"], timeout_s=560)
#
# Both checks write their tables into docs/performance.md on the device machine and copy
# it, with their reports (.md/.json) and logs, to $OUT (8 files: the most that come back).
# Back here, put the tables into the local doc from the JSON (the doc may have changed
# meanwhile):
#
#   .venv/bin/python scripts/gpu_check_segmenters.py --doc docs/performance.md --doc-from FILES_AT/segmenters.json
#   .venv/bin/python scripts/gpu_check_grpo.py --doc docs/performance.md --doc-from FILES_AT/gpu_check_grpo.json
#
# Budgets (seconds; env vars override): wheel install ~10, segmenters SEG_BUDGET=120 for
# starting sizes (hard stop SEG_TIMEOUT=180), GRPO GRPO_BUDGET=150 for starting the next
# policy (hard stop GRPO_TIMEOUT=240): at most ~7.2 minutes. Timing targets are reported
# (met or missed, in the logs and the tables), never an exit status. Exit status: 0 when
# both checks ran, else the first failing status (1 from the segmenter check = masks that
# differ from upstream's where they must be equal; 124 = a hard stop). SEG_ARGS / GRPO_ARGS
# add options to each check and DOC names the doc to write (the CPU test runs this script
# with tiny flags, a temp doc and budgets that never skip anything).
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.gpu-wheels}
OUT=${OUT:-$(mktemp -d)}
PY=${PY:-$(command -v python || command -v python3)}
DOC=${DOC:-docs/performance.md}
mkdir -p "$OUT"
started=$SECONDS
log() { echo "[gpu_check.sh +$((SECONDS - started))s] $*"; }

# 1. Install the carried wheels the image lacks (or has older) into a private folder (no pip, no network:
#    a wheel is a zip, and unpacking it is what `pip install --no-deps --target` does).
DEPS=$(mktemp -d /tmp/t2s-gpu-deps.XXXX)
if [ ! -d "$WHEELS" ]; then
    echo "gpu_check.sh: error: no wheel folder $WHEELS; run scripts/build_gpu_wheels.sh and carry it" >&2
    exit 2
fi
for f in "$WHEELS"/*.whl "$WHEELS"/*.whl.tar.xz; do
    [ -e "$f" ] || continue
    dist=$(basename "$f" | cut -d- -f1)
    want=$(basename "$f" | cut -d- -f2)
    # keep the image's copy unless it is older than the tested one (datasets 5.2 needs
    # pyarrow >= 24, and the image's versions are not known in advance)
    if have=$("$PY" -c "import importlib.metadata as m, sys; from packaging.version import Version as V
v = m.version(sys.argv[1]); print(v); sys.exit(V(v) < V(sys.argv[2]))" "$dist" "$want" 2>/dev/null); then
        log "have $dist $have on the image (carried $want): not installing it"
        continue
    fi
    case "$f" in
        *.tar.xz) tar -C "$DEPS" -xJf "$f" ;;
        *) "$PY" -m zipfile -e "$f" "$DEPS" ;;
    esac
    log "installed $(basename "$f")"
done
export PYTHONPATH="$DEPS:$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - <<'PY' 2>&1 | tee "$OUT/environment.txt"
import importlib.metadata as m, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA")
for n in ("transformers", "trl", "datasets", "peft", "accelerate", "sam2", "gymnasium", "numpy"):
    try:
        print(n, m.version(n))
    except m.PackageNotFoundError:
        print(n, "MISSING")
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT/environment.txt" 2>&1

# 2. SAM2: group vs upstream scoring per size, and the decode-batch sweep (recommendation).
log "segmenter check"
timeout "${SEG_TIMEOUT:-180}" "$PY" scripts/gpu_check_segmenters.py --time-budget "${SEG_BUDGET:-120}" \
    --out "$OUT/segmenters.md" --doc "$DOC" ${SEG_ARGS:-} 2>&1 | tee "$OUT/segmenters.log"
seg_rc=${PIPESTATUS[0]}
log "segmenter check: exit $seg_rc"

# 3. trl GRPOTrainer's own step, Qwen2.5-VL-3B and Qwen3-VL-2B shapes + SAM2.1-small.
log "GRPO check"
timeout "${GRPO_TIMEOUT:-240}" "$PY" scripts/gpu_check_grpo.py --time-budget "${GRPO_BUDGET:-150}" \
    --out "$OUT" --doc "$DOC" ${GRPO_ARGS:-} 2>&1 | tee "$OUT/gpu_check_grpo.log"
grpo_rc=${PIPESTATUS[0]}
log "GRPO check: exit $grpo_rc"

cp "$DOC" "$OUT/performance.md"
log "done: segmenters $seg_rc, grpo $grpo_rc; reports in $OUT"
[ "$seg_rc" -ne 0 ] && exit "$seg_rc"
exit "$grpo_rc"
