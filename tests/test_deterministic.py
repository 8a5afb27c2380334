"""
Ported from Stable-Baselines3's tests/test_deterministic.py: two ACKTR runs (in A2C's place) with the same seed
give the same actions, rewards and weights (the Fisher's sampled targets included).
"""

import numpy as np
import pytest
import torch as th

from sb3_acktr import ACKTR
from tests.helpers import assert_kfac_states_equal

N_STEPS_TRAINING = 500
SEED = 0


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_deterministic_training_common(env_id):
    results = [[], []]
    rewards = [[], []]
    weights = [None, None]
    optimizer_states = [None, None]
    # Smaller network
    kwargs = {"policy_kwargs": dict(net_arch=[64])}

    for i in range(2):
        model = ACKTR("MlpPolicy", env_id, seed=SEED, **kwargs)
        model.learn(N_STEPS_TRAINING)
        weights[i] = {name: tensor.clone() for name, tensor in model.policy.state_dict().items()}
        optimizer_states[i] = model.policy.optimizer.state_dict()
        env = model.get_env()
        obs = env.reset()
        for _ in range(100):
            action, _ = model.predict(obs, deterministic=False)
            obs, reward, _, _ = env.step(action)
            results[i].append(action)
            rewards[i].append(reward)
    assert sum(results[0]) == sum(results[1]), results
    assert sum(rewards[0]) == sum(rewards[1]), rewards
    assert np.array_equal(np.array(results[0]), np.array(results[1]))
    assert np.array_equal(np.array(rewards[0]), np.array(rewards[1]))
    # The weights, and the K-FAC statistics, are identical too
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert th.equal(weights[0][name], weights[1][name]), name
    assert_kfac_states_equal(*optimizer_states)


def test_different_seeds_differ():
    """Sanity check of the test above: another seed gives other weights."""
    kwargs = {"policy_kwargs": dict(net_arch=[64])}
    model_1 = ACKTR("MlpPolicy", "Pendulum-v1", seed=SEED, **kwargs).learn(100)
    model_2 = ACKTR("MlpPolicy", "Pendulum-v1", seed=SEED + 1, **kwargs).learn(100)
    params_1, params_2 = model_1.policy.state_dict(), model_2.policy.state_dict()
    assert any(not th.equal(params_1[name], params_2[name]) for name in params_1)
