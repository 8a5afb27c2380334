"""``sb3_acktr.kfac`` needs torch only: importing it loads neither SB3 nor gymnasium."""

import subprocess
import sys

import pytest

import sb3_acktr

HEAVY = ("stable_baselines3", "gymnasium", "sb3_contrib", "rl_zoo3")


def test_importing_kfac_loads_neither_sb3_nor_gymnasium():
    code = f"import sys, sb3_acktr.kfac; print([name for name in {HEAVY!r} if name in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_package_still_exports_the_algorithms():
    code = "from sb3_acktr import ACKTR, KFAC, RecurrentACKTR, MlpPolicy, CnnPolicy, MultiInputPolicy; print(ACKTR.__module__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "sb3_acktr.acktr.acktr"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'sb3_acktr' has no attribute 'A2C'"):
        sb3_acktr.A2C  # noqa: B018
