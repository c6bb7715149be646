#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv and install pannjax with test extras.
# Idempotent: a second run only checks that everything is installed. Needs Python >= 3.11.
# GPU: after this, `.venv/bin/pip install -e ".[gpu]"` installs jax[cuda12].
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pannjax needs Python >= 3.11; set PYTHON=/path/to/python3.11")'
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
echo "pannjax environment ready: .venv ($(.venv/bin/python -c 'import jax; print("jax", jax.__version__, jax.default_backend())'))"
