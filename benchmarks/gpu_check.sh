#!/usr/bin/env bash
# The GPU figures the README still lacks, in one run on a machine with a CUDA GPU and
# PyTorch already installed (no downloads needed; pydensecrf is not needed):
#
#     bash benchmarks/gpu_check.sh OUT_DIR
#
# 1. benchmarks/crf.py on the GPU: densecrf_torch and convcrf, batches of 8 of the
#    example photographs at 0.25 and 1 megapixels, 21 classes, 5 and 10 iterations;
# 2. benchmarks/training_paths.py on the GPU: float32, channels_last, float16 AMP,
#    torch.compile, and the crf_rnn model in float32 and AMP;
# 3. the quickstart, `segkit run configs/deeplab_crf.toml`, as a user runs it.
# Each writes its output to OUT_DIR (at most seven files, none nested); a step that
# fails does not stop the others.
set -uo pipefail
out=${1:-gpu_check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

"$python" -m pip install --quiet --no-deps --no-build-isolation -e . >"$out/install.txt" 2>&1 ||
    { echo "installing segkit failed:"; cat "$out/install.txt"; exit 1; }
{ nvidia-smi -L; "$python" -c 'import torch; print("torch", torch.__version__)'; } |
    tee "$out/machine.txt"

echo "== benchmarks/crf.py"
"$python" benchmarks/crf.py --device cuda --batch 8 --sizes 0.25,1 --iterations 5,10 \
    2>&1 | tee "$out/crf.txt"

echo "== benchmarks/training_paths.py"
"$python" benchmarks/training_paths.py --device cuda --crf --steps 20 \
    2>&1 | tee "$out/training_paths.txt"

echo "== the quickstart"
run_dir=$(mktemp -d)/quickstart
{ time timeout 600 "$python" -m segkit run configs/deeplab_crf.toml --run-dir "$run_dir"; } \
    >"$out/quickstart.txt" 2>&1
tail -n 30 "$out/quickstart.txt"
cp "$run_dir/summary.json" "$out/quickstart_summary.json" 2>/dev/null || true
