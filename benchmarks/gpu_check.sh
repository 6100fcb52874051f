#!/usr/bin/env bash
# The prepared GPU check (benchmarks/README.md, "GPU check"): installs what the GPU machine lacks
# from the wheels in .whl/ (made by benchmarks/gpu_wheels.sh), runs the `cuda` tests, times
# training throughput (fastgan_lite_256 and fastgan_256, batch 64: fp32 eager baseline, TF32, the
# default precision, + torch.compile) and profiles one step; prints ONE JSON, also written to
# $OUT (or ./gpu_check_out) as gpu_check.json beside gpu_check.log. About 9 minutes at most.
#
#   bash benchmarks/gpu_check.sh              # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --dry-run    # the same stages on the CPU at tiny size
#   GPU_CHECK_DRY_RUN=1 bash benchmarks/gpu_check.sh
#
# Options (see `python3 benchmarks/gpu_check.py --help`): --budget S, --stages deps,tests,...,
# --presets, --configs baseline,tf32,default,compile, --iters, --warmup, --out DIR.
# PYTHON=/path/to/python picks the interpreter (default: python3).
set -u
cd "$(dirname "$0")/.." || exit 1
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
