"""
Ported from Stable-Baselines3's tests/test_spaces.py: the A2C (and on-policy) cases, with ACKTR in A2C's place.
"""

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from gymnasium.spaces.space import Space
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_acktr import ACKTR

BOX_SPACE_FLOAT64 = spaces.Box(low=-1, high=1, shape=(2,), dtype=np.float64)
BOX_SPACE_FLOAT32 = spaces.Box(low=-1, high=1, shape=(2,), dtype=np.float32)


@dataclass
class DummyEnv(gym.Env):
    observation_space: Space
    action_space: Space

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            super().reset(seed=seed)
        return self.observation_space.sample(), {}


class DummyMultidimensionalAction(DummyEnv):
    def __init__(self):
        super().__init__(
            BOX_SPACE_FLOAT32,
            spaces.Box(low=-1, high=1, shape=(2, 2), dtype=np.float32),
        )


class DummyMultiBinary(DummyEnv):
    def __init__(self, n):
        super().__init__(
            spaces.MultiBinary(n),
            BOX_SPACE_FLOAT32,
        )


class DummyMultiDiscreteSpace(DummyEnv):
    def __init__(self, nvec):
        super().__init__(
            spaces.MultiDiscrete(nvec),
            BOX_SPACE_FLOAT32,
        )


@pytest.mark.parametrize(
    "env",
    [
        DummyMultiDiscreteSpace([4, 3]),
        DummyMultiBinary(8),
        DummyMultiBinary((3, 2)),
        DummyMultidimensionalAction(),
    ],
)
def test_env(env):
    # Check the env used for testing
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize("env", [DummyMultiDiscreteSpace([4, 3]), DummyMultiBinary(8), DummyMultiBinary((3, 2))])
def test_identity_spaces(env):
    """
    Additional tests for ACKTR (SB3 runs them for DQN/SAC/TD3) to check observation space support
    for MultiDiscrete and MultiBinary.
    """
    env = gym.wrappers.TimeLimit(env, max_episode_steps=100)

    model = ACKTR("MlpPolicy", env, gamma=0.5, seed=1, policy_kwargs=dict(net_arch=[64]))
    model.learn(total_timesteps=500)

    evaluate_policy(model, env, n_eval_episodes=5, warn=False)


@pytest.mark.parametrize("env", ["Pendulum-v1", "CartPole-v1", DummyMultidimensionalAction()])
def test_action_spaces(env):
    # ACKTR, as A2C, supports every action space here
    kwargs = dict(n_steps=64)
    model = ACKTR("MlpPolicy", env, **kwargs)
    if isinstance(env, DummyMultidimensionalAction):
        model.learn(64)


# SB3 uses Taxi-v3, deprecated in favour of Taxi-v4 by recent Gymnasium versions
@pytest.mark.parametrize("env", ["Taxi-v4"])
def test_discrete_obs_space(env):
    env = make_vec_env(env, n_envs=2, seed=0)
    kwargs = dict(n_steps=256)
    ACKTR("MlpPolicy", env, **kwargs).learn(256)


@pytest.mark.parametrize(
    "obs_space",
    [
        BOX_SPACE_FLOAT32,
        BOX_SPACE_FLOAT64,
        spaces.Dict({"a": BOX_SPACE_FLOAT32, "b": BOX_SPACE_FLOAT32}),
        spaces.Dict({"a": BOX_SPACE_FLOAT32, "b": BOX_SPACE_FLOAT64}),
    ],
)
@pytest.mark.parametrize(
    "action_space",
    [
        BOX_SPACE_FLOAT32,
        BOX_SPACE_FLOAT64,
    ],
)
def test_float64_action_space(obs_space, action_space):
    env = DummyEnv(obs_space, action_space)
    env = gym.wrappers.TimeLimit(env, max_episode_steps=200)
    if isinstance(env.observation_space, spaces.Dict):
        policy = "MultiInputPolicy"
    else:
        policy = "MlpPolicy"

    kwargs = dict(n_steps=64, policy_kwargs=dict(net_arch=[12]))

    model = ACKTR(policy, env, **kwargs)
    model.learn(64)
    initial_obs, _ = env.reset()
    action, _ = model.predict(initial_obs, deterministic=False)
    assert action.dtype == env.action_space.dtype


def test_multidim_binary_not_supported():
    env = DummyEnv(BOX_SPACE_FLOAT32, spaces.MultiBinary([2, 3]))
    with pytest.raises(AssertionError, match=r"Multi-dimensional MultiBinary\(.*\) action space is not supported"):
        ACKTR("MlpPolicy", env)


@pytest.mark.parametrize(
    "action_space",
    [spaces.Discrete(3), spaces.MultiDiscrete([3, 2]), spaces.MultiBinary(3), spaces.Box(-1, 1, shape=(2,))],
)
def test_action_space_distributions(action_space):
    """
    ACKTR samples the Fisher's targets from the policy's own distribution: every supported action space
    (Categorical, MultiCategorical, Bernoulli, DiagGaussian) trains.
    """
    env = gym.wrappers.TimeLimit(DummyEnv(BOX_SPACE_FLOAT32, action_space), max_episode_steps=50)
    model = ACKTR("MlpPolicy", env, n_steps=16, seed=0, policy_kwargs=dict(net_arch=[16]))
    before = {name: param.clone() for name, param in model.policy.named_parameters()}
    model.learn(32)
    assert model.policy.optimizer.steps == 2
    assert model.policy.optimizer.skipped_steps == 0
    # The actor moved
    assert any(not th.equal(before[name], param) for name, param in model.policy.named_parameters() if "action_net" in name)
