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

conftest='import stable_baselines3
import stable_baselines3.a2c

from sb3_acktr import ACKTR

stable_baselines3.A2C = ACKTR
stable_baselines3.a2c.A2C = ACKTR'
exec bash "$(dirname "$0")/upstream_tests.sh" "bash scripts/sb3_tests_with_acktr.sh SB3_CHECKOUT [pytest options]" \
    "SB3's tests with ACKTR in A2C's place" A2C "$conftest" "$@"
