"""
Ported from Stable-Baselines3's tests/test_run.py: the A2C runs, with ACKTR in A2C's place.
"""

import pytest

from sb3_acktr import ACKTR


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_acktr(env_id):
    model = ACKTR("MlpPolicy", env_id, seed=0, policy_kwargs=dict(net_arch=[16]), verbose=1)
    model.learn(total_timesteps=64)


@pytest.mark.parametrize("normalize_advantage", [False, True])
def test_advantage_normalization(normalize_advantage):
    model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=64, normalize_advantage=normalize_advantage)
    model.learn(64)


@pytest.mark.parametrize("stats_window_size", [1, 42])
def test_ep_buffers_stats_window_size(stats_window_size):
    """Set stats_window_size for logging to non-default value and check if
    ep_info_buffer and ep_success_buffer are initialized to the correct length"""
    model = ACKTR("MlpPolicy", "CartPole-v1", stats_window_size=stats_window_size)
    model.learn(total_timesteps=10)
    assert model.ep_info_buffer.maxlen == stats_window_size
    assert model.ep_success_buffer.maxlen == stats_window_size
