#!/usr/bin/env bash
# Hardware check of the NVIDIA GPU plugin (cuda_trt): one prepared command, under 9 minutes in all.
#
# Measures gpu/torch (eager PyTorch CUDA, channels_last, fp16 autocast) on EfficientNet-B0 and 20
# seeded random architectures (throughput at batch 256, latency at batch 1, 224x224), then
# gpu/tensorrt (strongly typed fp16 engines) on as many of them as the time budget allows when
# TensorRT imports, and writes OUT_DIR/gpu_check.json (plus the SQLite store and a PNG plot).
#
# Exact invocation, from the root of a fresh copy of the repository on a machine with an NVIDIA GPU
# and its own CUDA build of torch:
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]          # OUT_DIR defaults to ./gpu_check_out
#
# (on the lent device machine: `bash benchmarks/gpu_check.sh "$OUT"`, so that everything comes back).
# A relative OUT_DIR is taken from the directory the script is started in.
#
# What it does:
#   1. checks that `python -c "import torch"` works and that torch sees a CUDA device;
#   2. where accelnas is not importable yet, installs it with `pip install --no-deps -e .` (retried
#      with --no-build-isolation when offline), so torch and everything else already installed are
#      never reinstalled; then `pip install`s only the missing non-torch requirements printed by
#      `gpu_check.py --missing`. An accelnas installed from another folder is left alone. Offline,
#      both steps may fail: gpu_check.py always measures this checkout (through a path shim when it
#      is not the installed one) and lists what was missing in the JSON;
#   3. runs `python benchmarks/gpu_check.py --out OUT_DIR` with what is left of 9 minutes (the
#      measurement budget shrinks to fit when the installs took long): every architecture on
#      each available target, then short variants on two of them (the other precision; TensorRT with
#      CUDA graphs flipped, which reuses the cached engines); the log goes to OUT_DIR/gpu_check.log too.
# TensorRT is not installed from the internet by this script: `pip install tensorrt` (see
# docs/devices.md) beforehand, or set WHEELS to a folder of wheels (tensorrt-cu12/13,
# onnxconverter-common, ...) to install them offline first: the folder's tensorrt* and
# onnxconverter* wheels are installed, and their dependencies only where what is installed does not
# satisfy them (the folder also holds numpy, protobuf, the CUDA runtime..., which must not replace
# the machine's torch and numpy). PyPI ships tensorrt and tensorrt-cuXX(-libs) as source archives,
# so build the folder while online with `pip wheel tensorrt-cu12 onnxconverter-common -w DIR`
# (wheels only: `pip download` would leave archives this script does not install). The wheel step
# is bounded by 300 s (TensorRT's libraries are a wheel of about 1 GB), every other pip step by 60 s.
#
# Environment: PYTHON (interpreter, default python3), GPU_CHECK_BUDGET (whole seconds for measurements,
# default 400), GPU_CHECK_ARGS (extra arguments for gpu_check.py, e.g. "--num-random 5"),
# ACCELNAS_TRT_CACHE (engine cache folder; "off" disables it), WHEELS (a folder of wheels to
# install offline).
# Exit codes: 0 ran (failed measurements are listed in the JSON), 2 torch missing or bad arguments
# (GPU_CHECK_ARGS), 3 no usable GPU,
# 124 the time limit cut the run short (the JSON holds everything measured until then).
set -uo pipefail

OUT="${1:-gpu_check_out}"
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac  # where the caller meant it, before the cd below
WHEELS="${WHEELS:-}"
case "$WHEELS" in "" | /*) ;; *) WHEELS="$PWD/$WHEELS" ;; esac
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
BUDGET="${GPU_CHECK_BUDGET:-400}"
TOTAL=540  # seconds for the whole script: installs, start-up and measurements
mkdir -p "$OUT"
PIP_ARGS=(-m pip install -q --disable-pip-version-check --retries 1 --timeout 15)
PIP=(timeout 60 "$PY" "${PIP_ARGS[@]}")

if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "error: torch does not import with $PY; install a CUDA build of PyTorch first" >&2
    exit 2
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'GPU available:', torch.cuda.is_available())"

if [ -n "$WHEELS" ]; then
    mapfile -t WANTED < <(compgen -G "$WHEELS/tensorrt*.whl"; compgen -G "$WHEELS/onnxconverter*.whl")
    if [ "${#WANTED[@]}" -gt 0 ]; then
        # files named on the command line are installed; dependencies only where unmet (default strategy)
        timeout 300 "$PY" "${PIP_ARGS[@]}" --no-index --find-links "$WHEELS" "${WANTED[@]}" \
            || echo "note: could not install the wheels in $WHEELS" >&2
    else
        echo "note: no tensorrt or onnxconverter-common wheels in $WHEELS" >&2
    fi
fi
if ! "$PY" -c "import accelnas" 2>/dev/null; then
    if ! "${PIP[@]}" --no-deps -e . 2>/dev/null; then
        "${PIP[@]}" --no-deps --no-build-isolation -e . 2>/dev/null \
            || echo "note: could not install accelnas; running from the checkout" >&2
    fi
fi
MISSING="$("$PY" benchmarks/gpu_check.py --missing)"
if [ -n "$MISSING" ]; then
    # shellcheck disable=SC2086  # one pip name per word
    "${PIP[@]}" $MISSING \
        || echo "note: could not install: $MISSING (they are listed in the JSON)" >&2
fi
"$PY" -c "import tensorrt" 2>/dev/null \
    || echo "note: TensorRT does not import: gpu/tensorrt will be skipped (see WHEELS above)" >&2

LEFT=$((TOTAL - SECONDS))  # SECONDS: bash's count since the script started
if [ "$LEFT" -lt 120 ]; then LEFT=120; fi
if [ "$BUDGET" -gt $((LEFT - 70)) ]; then  # 70 s for start-up, the last architecture and the report
    echo "note: the installs took ${SECONDS}s; measuring for $((LEFT - 70))s instead of ${BUDGET}s" >&2
    BUDGET=$((LEFT - 70))
fi
# shellcheck disable=SC2086  # GPU_CHECK_ARGS holds several words
timeout "$LEFT" "$PY" benchmarks/gpu_check.py --out "$OUT" --budget "$BUDGET" ${GPU_CHECK_ARGS:-} \
    2> >(tee "$OUT/gpu_check.log" >&2)
status=$?
if [ -f "$OUT/gpu_check.json" ]; then
    echo "gpu_check: exit $status; results in $OUT/gpu_check.json" >&2
else
    echo "gpu_check: exit $status; no results written (see $OUT/gpu_check.log)" >&2
fi
exit $status
