#!/usr/bin/env bash
# Recreate the bench venv for the RecBole peer benchmark (separate from the project's venv).
#   bash benchmarks/peers/setup_recbole_env.sh [VENV_DIR]      (default /work/bench-venv)
# Then: $VENV_DIR/bin/python benchmarks/peers/recbole_sasrec.py --data ../shared/data/amazon-beauty-2014 --out /tmp/recbole.json
set -euo pipefail
VENV="${1:-/work/bench-venv}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python3 -m venv "$VENV"
# torch pinned, installed first: resolves to the local CPU wheel (torch-2.13.0+cpu). Never unpinned.
"$VENV/bin/pip" install "torch==2.13.0"
if "$VENV/bin/pip" freeze | grep -qi '^nvidia-'; then
    echo "error: a CUDA package was installed; expected the CPU torch wheel" >&2
    exit 1
fi
# Everything else without dependency resolution, so nothing can pull another torch.
"$VENV/bin/pip" install --no-deps -r "$HERE/requirements-recbole.txt"
"$VENV/bin/python" - <<'PY'
import numpy, torch, recbole
assert torch.__version__.startswith("2.13.0"), torch.__version__
import recbole.config, recbole.data, recbole.trainer, recbole.model.sequential_recommender  # noqa: F401
from torch.utils.tensorboard import SummaryWriter  # noqa: F401
print(f"ok: torch {torch.__version__}, recbole {recbole.__version__}, numpy {numpy.__version__}")
PY
