"""
Ported from Stable-Baselines3's tests/test_train_eval_mode.py: the A2C (on-policy) cases, with ACKTR in A2C's place
(the BatchNorm parameters are not Linear/Conv2d ones: K-FAC preconditions them with its diagonal Fisher fallback,
checked in test_acktr.py).
"""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import torch.nn as nn
from sb3_contrib.common.torch_layers import BatchRenorm1d
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from sb3_acktr import ACKTR
from sb3_acktr.acktr.policies import training_mode_matters


class FlattenBatchNormDropoutExtractor(BaseFeaturesExtractor):
    """
    Feature extract that flatten the input and applies batch normalization and dropout.
    Used as a placeholder when feature extraction is not needed.

    :param observation_space:
    """

    def __init__(self, observation_space: gym.Space):
        super().__init__(
            observation_space,
            get_flattened_obs_dim(observation_space),
        )
        self.flatten = nn.Flatten()
        self.batch_norm = nn.BatchNorm1d(self._features_dim)
        self.dropout = nn.Dropout(0.5)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        result = self.flatten(observations)
        result = self.batch_norm(result)
        result = self.dropout(result)
        return result


def clone_batch_norm_stats(batch_norm: nn.BatchNorm1d) -> tuple[th.Tensor, th.Tensor]:
    """
    Clone the bias and running mean from the given batch norm layer.

    :param batch_norm:
    :return: the bias and running mean
    """
    assert batch_norm.running_mean is not None
    return batch_norm.bias.clone(), batch_norm.running_mean.clone()


def clone_on_policy_batch_norm(model: ACKTR) -> tuple[th.Tensor, th.Tensor]:
    batch_norm = model.policy.features_extractor.batch_norm
    assert isinstance(batch_norm, nn.BatchNorm1d)
    return clone_batch_norm_stats(batch_norm)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_acktr_train_with_batch_norm(env_id):
    model = ACKTR(
        "MlpPolicy",
        env_id,
        policy_kwargs=dict(net_arch=[16, 16], features_extractor_class=FlattenBatchNormDropoutExtractor),
        seed=1,
    )

    bias_before, running_mean_before = clone_on_policy_batch_norm(model)

    model.learn(total_timesteps=200)

    bias_after, running_mean_after = clone_on_policy_batch_norm(model)

    assert ~th.isclose(bias_before, bias_after).all()
    assert ~th.isclose(running_mean_before, running_mean_after).all()


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_acktr_collect_rollouts_with_batch_norm(env_id):
    model = ACKTR(
        "MlpPolicy",
        env_id,
        policy_kwargs=dict(net_arch=[16, 16], features_extractor_class=FlattenBatchNormDropoutExtractor),
        seed=1,
        n_steps=64,
    )

    bias_before, running_mean_before = clone_on_policy_batch_norm(model)

    _, callback = model._setup_learn(total_timesteps=2 * 64)

    for _ in range(2):
        model.collect_rollouts(model.get_env(), callback, model.rollout_buffer, n_rollout_steps=model.n_steps)

    bias_after, running_mean_after = clone_on_policy_batch_norm(model)

    assert th.isclose(bias_before, bias_after).all()
    assert th.isclose(running_mean_before, running_mean_after).all()


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_predict_with_dropout_batch_norm(env_id):
    model_kwargs = dict(seed=1)
    clone_helper = clone_on_policy_batch_norm

    model_kwargs["n_steps"] = 64

    policy_kwargs = dict(
        features_extractor_class=FlattenBatchNormDropoutExtractor,
        net_arch=[16, 16],
    )
    model = ACKTR("MlpPolicy", env_id, policy_kwargs=policy_kwargs, verbose=1, **model_kwargs)

    batch_norm_stats_before = clone_helper(model)

    env = model.get_env()
    observation = env.reset()
    first_prediction, _ = model.predict(observation, deterministic=True)
    for _ in range(5):
        prediction, _ = model.predict(observation, deterministic=True)
        np.testing.assert_allclose(first_prediction, prediction)

    batch_norm_stats_after = clone_helper(model)

    # No change in batch norm params
    for param_before, param_after in zip(batch_norm_stats_before, batch_norm_stats_after, strict=True):
        assert th.isclose(param_before, param_after).all()


class ScaledLinear(nn.Linear):
    """A module of no known package: whether its forward reads ``self.training`` cannot be known."""


class TrainSwitchedLinear(nn.Linear):
    """A torch module overriding train() (its __module__ set to torch's, as if it were one of them)."""

    __module__ = "torch.nn.modules.linear"

    def train(self, mode: bool = True) -> "TrainSwitchedLinear":
        return super().train(mode)


@pytest.mark.parametrize(
    "module, matters",
    [
        (nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.ReLU(), nn.Flatten(), nn.LayerNorm(2)), False),
        (nn.LSTM(2, 2, num_layers=2), False),
        (nn.LSTM(2, 2, num_layers=2, dropout=0.1), True),
        (nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0)), True),
        (nn.Sequential(nn.Linear(2, 2), nn.RReLU()), True),
        (nn.BatchNorm1d(2), True),
        (nn.InstanceNorm1d(2), True),
        (nn.TransformerEncoderLayer(4, 2), True),
        (BatchRenorm1d(2), True),
        (nn.Sequential(ScaledLinear(2, 2)), True),
        (TrainSwitchedLinear(2, 2), True),
    ],
)
def test_training_mode_matters(module, matters):
    assert training_mode_matters(module) is matters


def test_sb3_policies_compute_the_same_in_both_modes():
    box = gym.spaces.Box(0, 255, (3, 36, 36), dtype=np.uint8)
    assert not training_mode_matters(ActorCriticPolicy(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), lambda _: 0.1))
    assert not training_mode_matters(ActorCriticCnnPolicy(box, gym.spaces.Discrete(2), lambda _: 0.1))


@pytest.mark.parametrize("extractor", [None, FlattenBatchNormDropoutExtractor])
def test_exact_kl_in_eval_mode_where_the_mode_matters(extractor):
    """The exact KL's forward passes run in eval mode with BatchNorm/Dropout; without, the mode is not switched."""
    policy_kwargs = dict(net_arch=[16]) if extractor is None else dict(net_arch=[16], features_extractor_class=extractor)
    model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=8, policy_kwargs=policy_kwargs, seed=0)
    switches, modes = [], []
    set_training_mode, get_distribution = model.policy.set_training_mode, model.policy.get_distribution
    model.policy.set_training_mode = lambda mode: switches.append(mode) or set_training_mode(mode)  # type: ignore[method-assign]
    model.policy.get_distribution = lambda obs: modes.append(model.policy.training) or get_distribution(obs)  # type: ignore[method-assign]
    model.learn(16)
    # Two updates, each with the policy after its step (and before it, in eval mode, where the mode matters)
    assert modes == ([True] * 2 if extractor is None else [False] * 4)
    # SB3: eval mode for the rollout, train mode for the update; ACKTR: eval mode around the exact KL if it matters
    per_update = [False, True, False, True] if extractor is not None else [False, True]
    assert switches == per_update * 2
    assert model.policy.training
