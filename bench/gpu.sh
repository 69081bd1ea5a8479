#!/usr/bin/env bash
# The classifier on a GPU, in one go, on a bare CUDA machine (an NVIDIA driver, Python >= 3.11,
# PyPI; no model hub, no CUDA toolkit: the CUDA and cuDNN libraries come as PyPI wheels).
#
#   bash bench/gpu.sh [MODEL_DIR ...] [--graph FILE] [--budget-s S]   # from the repository root
#   bash bench/gpu.sh --cpu-smoke                      # every section, tiny counts, CPU provider
#
# Creates .venv-gpu (GPU_VENV=...), installs onnxruntime-gpu with the CUDA and cuDNN wheels that
# match the driver (CUDA 13 drivers: the newest onnxruntime-gpu; CUDA 12: the last one built for
# it, 1.26; ORT_GPU_SPEC=... overrides), tokenizers, numpy and structlog (what classifiers/
# imports; the repository is on PYTHONPATH, so nothing is built), then runs bench/gpu.py: the
# CUDA provider check (exit 3 when the session is not on CUDAExecutionProvider), p50/p99 at 128
# and 512 tokens, batch 1-64 and concurrency 1-64. Default MODEL_DIRs: classifiers/models and
# classifiers/models/fast when present. Figures: $OUT if set, else bench/results/gpu/
# (gpu.json, gpu.md). The measurements stop within --budget-s (default 420 s); the install is
# timed apart. GPU_PYTHON=path/to/python skips the venv and uses that interpreter as it is
# (GPU_WHEELS=DIR: with the wheels in DIR added, for a machine that cannot reach an index);
# --cpu-smoke without GPU_PYTHON installs the CPU onnxruntime into the venv instead.
set -euo pipefail

cd "$(dirname "$0")/.."
started=$(date +%s)
args=("$@")
smoke=0
for arg in "$@"; do
    [[ $arg == --cpu-smoke ]] && smoke=1
done

python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

if [[ -n ${GPU_PYTHON:-} ]]; then
    python=$GPU_PYTHON
    python_ok "$python" || { echo "gpu.sh: GPU_PYTHON=$python is not Python >= 3.11" >&2; exit 2; }
    if [[ -n ${GPU_WHEELS:-} ]]; then
        # A machine without an index: wheels brought along (e.g. structlog), unpacked aside.
        site=$(mktemp -d)
        "$python" -m pip install --quiet --no-index --no-deps --target "$site" "$GPU_WHEELS"/*.whl
        export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    fi
else
    if [[ $smoke == 0 ]]; then
        if ! command -v nvidia-smi >/dev/null; then
            echo "gpu.sh: no nvidia-smi: this machine has no NVIDIA driver (use --cpu-smoke to check the script)" >&2
            exit 2
        fi
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    fi
    base=""
    for candidate in python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null && python_ok "$candidate"; then
            base=$candidate
            break
        fi
    done
    if [[ -z $base ]]; then
        echo "gpu.sh: needs Python >= 3.11 (e.g. apt-get install python3.11 python3.11-venv)" >&2
        exit 2
    fi
    venv=${GPU_VENV:-.venv-gpu}
    [[ -x $venv/bin/python ]] || "$base" -m venv "$venv"
    python=$venv/bin/python
    if [[ -z ${ORT_GPU_SPEC:-} ]]; then
        cuda=$({ nvidia-smi 2>/dev/null || true; } | sed -n 's/.*CUDA Version: *\([0-9]*\).*/\1/p' | head -1)
        if [[ $smoke == 1 ]]; then
            ORT_GPU_SPEC='onnxruntime>=1.20'  # the smoke run is on the CPU provider
        elif [[ ${cuda:-0} -ge 13 ]]; then
            ORT_GPU_SPEC='onnxruntime-gpu[cuda,cudnn]>=1.27'
        else
            # Built for CUDA 12 up to 1.26; from 1.27 on, PyPI's wheels need a CUDA 13 driver.
            ORT_GPU_SPEC='onnxruntime-gpu[cuda,cudnn]>=1.20,<1.27'
        fi
    fi
    echo "installing into $venv: $ORT_GPU_SPEC tokenizers numpy structlog"
    "$python" -m pip install --quiet --upgrade pip
    "$python" -m pip install --quiet "$ORT_GPU_SPEC" 'tokenizers>=0.20' 'numpy>=1.26' 'structlog>=24.1'
    echo "installed in $(( $(date +%s) - started )) s"
fi

PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} "$python" bench/gpu.py "${args[@]}"
echo "gpu.sh done in $(( $(date +%s) - started )) s"
