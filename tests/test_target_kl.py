"""``target_kl``: the step size adapted to the exact KL of the updates (OpenAI baselines' continuous-control ACKTR)."""

import math

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_acktr import ACKTR
from sb3_acktr.acktr.acktr import KL_ADAPTATION_FACTOR, KL_MULTIPLIER_RANGE
from tests.helpers import RecordingLogger


def cartpole_acktr(**kwargs) -> ACKTR:
    return ACKTR("MlpPolicy", make_vec_env("CartPole-v1", n_envs=4, seed=0), n_steps=16, seed=0, device="cpu", **kwargs)


@pytest.mark.parametrize(
    "start, kl, expected",
    [
        (1.0, 0.0031, 1.0 / KL_ADAPTATION_FACTOR),  # above 2·target: smaller steps
        (0.5, 0.0003, 0.5 * KL_ADAPTATION_FACTOR),  # below target/2: larger steps
        (0.5, 0.0010, 0.5),  # inside [target/2, 2·target]: unchanged
        (0.5, 0.0030, 0.5),  # 2·target itself is inside
        (1.0, 0.0001, KL_MULTIPLIER_RANGE[1]),  # never above the learning rate
        (KL_MULTIPLIER_RANGE[0], 1.0, KL_MULTIPLIER_RANGE[0]),  # nor below the floor
        (0.5, math.nan, 0.5),  # a KL that is not a number changes nothing
    ],
)
def test_multiplier_follows_baselines_rule(start, kl, expected):
    model = cartpole_acktr(target_kl=0.0015)
    model.kl_lr_multiplier = start
    model._adapt_to_kl(kl)
    assert model.kl_lr_multiplier == pytest.approx(expected)


def test_learning_rate_is_the_schedule_times_the_multiplier_and_logged():
    model = cartpole_acktr(target_kl=0.001, learning_rate=lambda progress: 0.5 * progress)
    logger = RecordingLogger()
    model.set_logger(logger)
    model.kl_lr_multiplier = 0.25
    model._current_progress_remaining = 0.8
    model._update_learning_rate(model.policy.optimizer)
    assert [group["lr"] for group in model.policy.optimizer.param_groups] == pytest.approx([0.5 * 0.8 * 0.25] * 2)
    logged = dict(logger.history)
    assert logged["train/learning_rate"] == pytest.approx(0.1) and logged["train/kl_lr_multiplier"] == 0.25


def test_without_target_kl_the_multiplier_stays_one_and_is_not_logged():
    model = cartpole_acktr()
    logger = RecordingLogger()
    model.set_logger(logger)
    model.learn(3 * 64)
    assert model.kl_lr_multiplier == 1.0
    assert "train/kl_lr_multiplier" not in dict(logger.history)


@pytest.mark.parametrize("seed", [0, 1])
def test_target_kl_bounds_the_exact_kl_that_the_trust_region_lets_through(seed):
    """
    A wide trust region (kfac_clip 0.1, δ = 0.05) lets CartPole's updates reach an exact KL 5-12× the target (medians
    over updates 20-60; measured 0.0025-0.0062 for seeds 0-2); with ``target_kl`` the median lies in [target/2, 2·target]
    (measured 0.0004-0.00045).
    """
    target = 0.0005
    medians = {}
    for target_kl in (None, target):
        th.manual_seed(seed)
        model = ACKTR(
            "MlpPolicy",
            make_vec_env("CartPole-v1", n_envs=4, seed=seed),
            n_steps=16,
            kfac_clip=0.1,
            learning_rate=1.0,
            target_kl=target_kl,
            seed=seed,
            device="cpu",
        )
        logger = RecordingLogger()
        model.set_logger(logger)
        model.learn(60 * 64)
        exact = [value for key, value in logger.history if key == "train/exact_kl"]
        assert len(exact) == 60
        medians[target_kl] = float(np.median(exact[20:]))
    assert medians[None] > 4 * target
    assert target / 2 <= medians[target] <= 2 * target


def test_multiplier_is_saved_and_applied_at_load(tmp_path):
    model = cartpole_acktr(target_kl=0.001, learning_rate=0.4)
    model.kl_lr_multiplier = 0.3
    model.save(tmp_path / "model")
    loaded = ACKTR.load(tmp_path / "model", env=make_vec_env("CartPole-v1", n_envs=4, seed=0))
    assert loaded.target_kl == 0.001 and loaded.kl_lr_multiplier == 0.3
    # Both parameter groups (actor and critic)
    assert [group["lr"] for group in loaded.policy.optimizer.param_groups] == pytest.approx([0.4 * 0.3] * 2)


@pytest.mark.parametrize("target_kl", [0.0, -0.01, math.nan, math.inf, "0.01"])
def test_bad_target_kl_is_refused(target_kl):
    with pytest.raises(ValueError, match=r"target_kl must be in \(0, inf\), got .*kfac_clip / 2, or None"):
        cartpole_acktr(target_kl=target_kl)
