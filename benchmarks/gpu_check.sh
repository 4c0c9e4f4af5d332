#!/usr/bin/env bash
# The GPU figures, in one run on a machine with a CUDA GPU and PyTorch already
# installed (nothing is downloaded):
#
#     bash benchmarks/gpu_check.sh OUT_DIR [SECONDS]
#
# 1. benchmarks/crf.py on the GPU: segkit's densecrf_torch and convcrf and, where
#    SEGKIT_CONVCRF_REPO names its folder, the published ConvCRF with use_gpu=True, on
#    batches of 8 of the example photographs (SEGKIT_DENSECRF_EXAMPLES) at 0.25 and
#    1 megapixels, 21 classes, 5 and 10 iterations, with their mIoU;
# 2. the CUDA tests (the CRFs and the training paths, the dense CRF on CUDA against the
#    CPU among them);
# 3. benchmarks/training_paths.py on the GPU: float32, channels_last, float16 AMP,
#    torch.compile, and the crf_rnn model in float32 and AMP;
# 4. the quickstart, `segkit run configs/deeplab_crf.toml`, as a user runs it (its
#    densecrf post-processor needs pydensecrf: where it is missing and PYDENSECRF_SDIST
#    names pydensecrf2's source archive, it is built first, with CYTHON_WHEEL if set).
# Where segkit's own dependencies are missing there, WHEELS names a folder of their
# wheels, installed first without an index.
# Each step writes to OUT_DIR (at most seven files, none nested), gets what is left of
# SECONDS (default 540) up to its own cap, and a step that fails does not stop the rest.
set -uo pipefail
out=${1:-gpu_check}
deadline=$((SECONDS + ${2:-540}))
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

# seconds for the next step: its cap, or what is left before the deadline
budget() {
    local left=$((deadline - SECONDS))
    ((left < $1)) && echo "$left" || echo "$1"
}

if [ -n "${WHEELS:-}" ]; then
    extra=$(mktemp -d)
    "$python" -m pip install -q --no-index --no-deps --target "$extra" "$WHEELS"/*.whl &&
        export PYTHONPATH=$extra${PYTHONPATH:+:$PYTHONPATH}
fi
"$python" -m pip install --quiet --no-deps --no-build-isolation -e . >"$out/install.txt" 2>&1 ||
    { echo "installing segkit failed:"; cat "$out/install.txt"; exit 1; }
if ! "$python" -c 'import pydensecrf.densecrf' 2>/dev/null && [ -n "${PYDENSECRF_SDIST:-}" ]; then
    site=$(mktemp -d)
    [ -n "${CYTHON_WHEEL:-}" ] &&
        "$python" -m pip install -q --no-index --no-deps --target "$site" "$CYTHON_WHEEL" \
            >>"$out/install.txt" 2>&1
    PYTHONPATH=$site timeout "$(budget 120)" "$python" -m pip install -q --no-index --no-deps \
        --no-build-isolation "$PYDENSECRF_SDIST" >>"$out/install.txt" 2>&1 ||
        echo "building pydensecrf failed (the quickstart's CRF rows will say so)"
fi
{
    nvidia-smi -L
    "$python" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'
    grep -m1 "model name" /proc/cpuinfo
    nproc
} | tee "$out/machine.txt"

echo "== benchmarks/crf.py"
timeout "$(budget 120)" "$python" benchmarks/crf.py --device cuda --batch 8 --sizes 0.25,1 \
    --iterations 5,10 --unaries network 2>&1 | tee "$out/crf.txt"

echo "== the CUDA tests"
timeout "$(budget 60)" "$python" -m pytest -q -p no:cacheprovider tests/test_densecrf.py \
    tests/test_crf_layer.py \
    tests/test_precision_paths.py 2>&1 | tail -n 15 | tee "$out/cuda_tests.txt"

echo "== benchmarks/training_paths.py"
timeout "$(budget 120)" "$python" benchmarks/training_paths.py --device cuda --crf --steps 20 \
    2>&1 | tee "$out/training_paths.txt"

echo "== the quickstart"
run_dir=$(mktemp -d)/quickstart
{ time timeout "$(budget 240)" "$python" -m segkit run configs/deeplab_crf.toml \
    --run-dir "$run_dir"; } >"$out/quickstart.txt" 2>&1
tail -n 30 "$out/quickstart.txt"
cp "$run_dir/summary.json" "$out/quickstart_summary.json" 2>/dev/null || true
