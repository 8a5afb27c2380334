#!/usr/bin/env bash
# Stable-Baselines3's own tests with ACKTR in A2C's place: a copy of the checkout's tests/ gets a conftest.py that
# rebinds `stable_baselines3.A2C` to `sb3_acktr.ACKTR` before the test modules import it, and pytest runs the test
# files that use A2C (what they give: docs/guide/quickstart.md, "Swap A2C for ACKTR").
#
#   git clone https://github.com/DLR-RM/stable-baselines3 /tmp/sb3
#   bash scripts/sb3_tests_with_acktr.sh /tmp/sb3 [pytest options]
#
# Runs in the current Python environment (sb3_acktr and SB3's test dependencies installed), one torch thread.
set -euo pipefail

if [ $# -lt 1 ] || [ ! -d "$1/tests" ]; then
    echo "usage: bash scripts/sb3_tests_with_acktr.sh SB3_CHECKOUT [pytest options] (SB3_CHECKOUT must hold tests/)" >&2
    exit 2
fi
checkout=$(cd "$1" && pwd)
shift
work=$(mktemp -d)
cp -r "$checkout/tests" "$checkout/pyproject.toml" "$work/"
cat > "$work/tests/conftest.py" <<'EOF'
import stable_baselines3
import stable_baselines3.a2c

from sb3_acktr import ACKTR

stable_baselines3.A2C = ACKTR
stable_baselines3.a2c.A2C = ACKTR
EOF
cd "$work"
mapfile -t files < <(grep -l "A2C" tests/test_*.py)
echo "SB3's tests with ACKTR in A2C's place, in $work: ${files[*]}"
OMP_NUM_THREADS=1 python -m pytest -p no:cacheprovider -rf "${files[@]}" "$@"
