"""
Ported from Stable-Baselines3's tests/test_dict_env.py: the A2C (and on-policy) cases, with ACKTR in A2C's place.
"""

import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import BitFlippingEnv, SimpleMultiObsEnv
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecFrameStack, VecNormalize

from sb3_acktr import ACKTR


class DummyDictEnv(gym.Env):
    """Custom Environment for testing purposes only"""

    metadata = {"render_modes": ["human"]}

    def __init__(
        self,
        use_discrete_actions=False,
        channel_last=False,
        nested_dict_obs=False,
        vec_only=False,
    ):
        super().__init__()
        if use_discrete_actions:
            self.action_space = spaces.Discrete(3)
        else:
            self.action_space = spaces.Box(low=-1, high=1, shape=(2,), dtype=np.float32)
        N_CHANNELS = 1
        HEIGHT = 36
        WIDTH = 36

        if channel_last:
            obs_shape = (HEIGHT, WIDTH, N_CHANNELS)
        else:
            obs_shape = (N_CHANNELS, HEIGHT, WIDTH)

        self.observation_space = spaces.Dict(
            {
                # Image obs
                "img": spaces.Box(low=0, high=255, shape=obs_shape, dtype=np.uint8),
                # Vector obs
                "vec": spaces.Box(low=-1, high=1, shape=(2,), dtype=np.float32),
                # Discrete obs
                "discrete": spaces.Discrete(4),
            }
        )

        # For checking consistency with normal MlpPolicy
        if vec_only:
            self.observation_space = spaces.Dict(
                {
                    # Vector obs
                    "vec": spaces.Box(low=-1, high=1, shape=(2,), dtype=np.float32),
                }
            )

        if nested_dict_obs:
            # Add dictionary observation inside observation space
            self.observation_space.spaces["nested-dict"] = spaces.Dict({"nested-dict-discrete": spaces.Discrete(4)})

    def seed(self, seed=None):
        if seed is not None:
            self.observation_space.seed(seed)

    def step(self, action):
        reward = 0.0
        terminated = truncated = False
        return self.observation_space.sample(), reward, terminated, truncated, {}

    def compute_reward(self, achieved_goal, desired_goal, info):
        return np.zeros((len(achieved_goal),))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.observation_space.seed(seed)
        return self.observation_space.sample(), {}

    def render(self):
        pass


def test_goal_env():
    env = BitFlippingEnv(n_bits=4)
    # check that goal env works for ACKTR that cannot use HER replay buffer
    model = ACKTR("MultiInputPolicy", env, n_steps=64).learn(250)
    evaluate_policy(model, model.get_env())


def test_consistency():
    """
    Make sure that dict obs with vector only vs using flatten obs is equivalent.
    This ensures notable that the network architectures are the same.
    """
    dict_env = DummyDictEnv(use_discrete_actions=False, vec_only=True)
    dict_env.seed(10)
    dict_env = gym.wrappers.TimeLimit(dict_env, 100)
    env = gym.wrappers.FlattenObservation(dict_env)
    obs, _ = dict_env.reset()

    kwargs = dict(n_steps=128)
    n_steps = 256

    dict_model = ACKTR("MultiInputPolicy", dict_env, gamma=0.5, seed=1, **kwargs)
    action_before_learning_1, _ = dict_model.predict(obs, deterministic=True)
    dict_model.learn(total_timesteps=n_steps)

    normal_model = ACKTR("MlpPolicy", env, gamma=0.5, seed=1, **kwargs)
    action_before_learning_2, _ = normal_model.predict(obs["vec"], deterministic=True)
    normal_model.learn(total_timesteps=n_steps)

    action_1, _ = dict_model.predict(obs, deterministic=True)
    action_2, _ = normal_model.predict(obs["vec"], deterministic=True)

    assert np.allclose(action_before_learning_1, action_before_learning_2)
    assert np.allclose(action_1, action_2)


@pytest.mark.parametrize("use_discrete_actions", [True, False])
@pytest.mark.parametrize("channel_last", [False, True])
def test_dict_spaces(use_discrete_actions, channel_last):
    """
    Additional tests for ACKTR to check observation space support
    with mixed observation.
    """
    env = DummyDictEnv(use_discrete_actions=use_discrete_actions, channel_last=channel_last)
    env = gym.wrappers.TimeLimit(env, 100)

    n_steps = 256

    kwargs = dict(
        n_steps=128,
        policy_kwargs=dict(
            net_arch=[32],
            features_extractor_kwargs=dict(cnn_output_dim=32),
        ),
    )

    model = ACKTR("MultiInputPolicy", env, gamma=0.5, seed=1, **kwargs)

    model.learn(total_timesteps=n_steps)

    evaluate_policy(model, env, n_eval_episodes=5, warn=False)


def test_multiprocessing():
    def make_env():
        env = DummyDictEnv(use_discrete_actions=True, channel_last=False)
        env = gym.wrappers.TimeLimit(env, 100)
        return env

    # fork (Linux) starts the workers in a fraction of the time of SB3's default forkserver
    start_method = "fork" if sys.platform == "linux" else None
    env = make_vec_env(make_env, n_envs=2, vec_env_cls=SubprocVecEnv, vec_env_kwargs=dict(start_method=start_method))

    # Tiny budget: one rollout of 2 x 64 steps and one update
    n_steps = 128

    kwargs = dict(
        n_steps=64,
        policy_kwargs=dict(
            net_arch=[32],
            features_extractor_kwargs=dict(cnn_output_dim=32),
        ),
    )

    model = ACKTR("MultiInputPolicy", env, gamma=0.5, seed=1, **kwargs)

    model.learn(total_timesteps=n_steps)
    env.close()


@pytest.mark.parametrize("use_discrete_actions", [True, False])
@pytest.mark.parametrize("channel_last", [False, True])
def test_dict_vec_framestack(use_discrete_actions, channel_last):
    """
    Additional tests for ACKTR to check observation space support
    for Dictionary spaces and VecEnvWrapper using MultiInputPolicy.
    """
    channels_order = {"vec": None, "img": "last" if channel_last else "first"}
    env = DummyVecEnv(
        [lambda: SimpleMultiObsEnv(random_start=True, discrete_actions=use_discrete_actions, channel_last=channel_last)]
    )

    env = VecFrameStack(env, n_stack=3, channels_order=channels_order)

    n_steps = 256

    kwargs = dict(
        n_steps=128,
        policy_kwargs=dict(
            net_arch=[32],
            features_extractor_kwargs=dict(cnn_output_dim=32),
        ),
    )

    model = ACKTR("MultiInputPolicy", env, gamma=0.5, seed=1, **kwargs)

    model.learn(total_timesteps=n_steps)

    evaluate_policy(model, env, n_eval_episodes=5, warn=False)


def test_vec_normalize():
    """
    Additional tests for ACKTR to check observation space support
    for Dict observations and VecNormalize using MultiInputPolicy.
    """
    env = DummyVecEnv([lambda: gym.wrappers.TimeLimit(DummyDictEnv(use_discrete_actions=False), 100)])
    env = VecNormalize(env, norm_obs_keys=["vec"])

    n_steps = 256

    kwargs = dict(
        n_steps=128,
        policy_kwargs=dict(
            net_arch=[32],
        ),
    )

    model = ACKTR("MultiInputPolicy", env, gamma=0.5, seed=1, **kwargs)

    model.learn(total_timesteps=n_steps)

    evaluate_policy(model, env, n_eval_episodes=5, warn=False)


def test_dict_nested():
    """
    Make sure we throw an appropriate error with nested Dict observation spaces
    """
    # Test without manual wrapping to vec-env
    env = DummyDictEnv(nested_dict_obs=True)

    with pytest.raises(NotImplementedError):
        _ = ACKTR("MultiInputPolicy", env, seed=1)

    # Test with manual vec-env wrapping

    with pytest.raises(NotImplementedError):
        env = DummyVecEnv([lambda: DummyDictEnv(nested_dict_obs=True)])
