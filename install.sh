#!/usr/bin/env bash
# Install ventkit and everything it needs into ./.venv (or the active virtual environment).
# torch is pinned to the CPU build found on this project's machines; the rest comes from pyproject.toml
# through ventkit.requirements, the list the Slicer panels install too (nnU-Net v2 with --no-deps: its
# dependency chain, timm -> torchvision, would pull a multi-GB CUDA torch).
set -euo pipefail
cd "$(dirname "$0")"
if [[ -z "${VIRTUAL_ENV:-}" ]]; then
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  PY=.venv/bin/python
else
  PY=python
fi
$PY -m pip install -q --upgrade pip
$PY -m pip install -q "torch==2.13.0"
$PY -m pip install -q -e ".[models,test]"
$PY -m ventkit.requirements --install
$PY -c "import torch, monai, nnunetv2, ventkit; print(f'installed ventkit {ventkit.__version__} (torch {torch.__version__}, monai {monai.__version__})')"
