#!/usr/bin/env bash
# sb3-contrib's own tests with RecurrentACKTR in RecurrentPPO's place: a copy of the checkout's tests/ gets a
# conftest.py that rebinds `sb3_contrib.RecurrentPPO` before the test modules import it, and pytest runs the test files
# that use RecurrentPPO (what they give: docs/modules/recurrent_acktr.md, "sb3-contrib's tests").
#
#   git clone https://github.com/Stable-Baselines-Team/stable-baselines3-contrib /tmp/sb3-contrib
#   bash scripts/contrib_tests_with_recurrent_acktr.sh /tmp/sb3-contrib [pytest options]
#
# The stand-in is RecurrentACKTR taking RecurrentPPO's arguments: the four that mean nothing to a single K-FAC step
# per rollout (n_epochs, batch_size, clip_range, clip_range_vf) are accepted and not used; every other argument,
# learning rates included, reaches RecurrentACKTR as given. Runs in the current Python environment (sb3_acktr and
# sb3-contrib's test dependencies installed), one torch thread.
set -euo pipefail

conftest='from typing import Any

import sb3_contrib
import sb3_contrib.ppo_recurrent

from sb3_acktr import RecurrentACKTR


class RecurrentACKTRForRecurrentPPO(RecurrentACKTR):
    """RecurrentACKTR called with the arguments of RecurrentPPO: the epochs, minibatches and clipping of PPO unused."""

    def __init__(
        self, *args: Any, n_epochs: Any = None, batch_size: Any = None, clip_range: Any = None, clip_range_vf: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)


sb3_contrib.RecurrentPPO = RecurrentACKTRForRecurrentPPO
sb3_contrib.ppo_recurrent.RecurrentPPO = RecurrentACKTRForRecurrentPPO'
exec bash "$(dirname "$0")/upstream_tests.sh" \
    "bash scripts/contrib_tests_with_recurrent_acktr.sh CONTRIB_CHECKOUT [pytest options]" \
    "sb3-contrib's tests with RecurrentACKTR in RecurrentPPO's place" RecurrentPPO "$conftest" "$@"
