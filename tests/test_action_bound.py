"""``action_bound_coef``: a penalty on a Gaussian policy's mean beyond the action bounds."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_acktr import ACKTR
from tests.helpers import RecordingLogger


def pendulum_acktr(**kwargs) -> ACKTR:
    return ACKTR("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), n_steps=8, seed=0, device="cpu", **kwargs)


def collect_one_rollout(model: ACKTR) -> None:
    _, callback = model._setup_learn(total_timesteps=model.n_steps * model.n_envs)
    callback.on_training_start(locals(), globals())
    env = model.get_env()
    assert env is not None
    model.collect_rollouts(env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)


def test_the_penalty_is_the_mean_squared_excess_over_the_bounds_and_pulls_the_mean_back():
    # The whole trust-region step at once (no momentum), large enough to see; advantages of unit scale, as the
    # penalty's weight assumes (Pendulum's raw returns are in the thousands), and no clipping by the critic's gradient
    model = pendulum_acktr(
        action_bound_coef=10.0, kfac_momentum=0.0, kfac_clip=0.1, normalize_advantage=True, max_grad_norm=float("inf")
    )
    with th.no_grad():  # a mean near 5 on every state, 2.5 half-widths beyond Pendulum's bound of 2
        model.policy.action_net.bias.fill_(5.0)
    logger = RecordingLogger()
    model.set_logger(logger)
    collect_one_rollout(model)
    observations = th.as_tensor(model.rollout_buffer.observations.reshape(-1, 3))
    with th.no_grad():
        before = model.policy.get_distribution(observations).distribution.mean.numpy().ravel()
    # Independently: Σ max(0, |μ - 0| / 2 - 1)² over Pendulum's one action dimension, averaged over the batch
    expected = np.mean(np.maximum(np.abs(before) / 2 - 1, 0) ** 2)
    assert expected > 1
    model.train()
    assert dict(logger.history)["train/action_bound_loss"] == pytest.approx(expected, rel=1e-5)
    with th.no_grad():
        after = model.policy.get_distribution(observations).distribution.mean.numpy().ravel()
    # With every action clipped, the policy gradient is noise; the penalty's (10 x 1.5 per sample) pulls the mean back
    assert np.all(after < before - 0.05)


def test_without_the_penalty_nothing_is_logged_or_added():
    model = pendulum_acktr()
    logger = RecordingLogger()
    model.set_logger(logger)
    collect_one_rollout(model)
    model.train()
    assert model.action_bound_coef == 0.0 and "train/action_bound_loss" not in dict(logger.history)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: ACKTR("MlpPolicy", "CartPole-v1", action_bound_coef=0.1),
            "action_bound_coef=0.1 penalizes a Gaussian mean beyond finite action bounds, but the action space is "
            "Discrete(2). Use action_bound_coef=0.0.",
        ),
        (
            lambda: pendulum_acktr(action_bound_coef=0.1, use_sde=True, policy_kwargs=dict(squash_output=True)),
            "action_bound_coef=0.1 penalizes a mean beyond the action bounds, but this policy squashes its actions into "
            "them (squash_output=True). Use action_bound_coef=0.0.",
        ),
        (lambda: pendulum_acktr(action_bound_coef=-1.0), "action_bound_coef"),
    ],
)
def test_the_penalty_needs_finite_bounds_and_unsquashed_actions(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        make()
