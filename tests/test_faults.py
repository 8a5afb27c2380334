"""
Fault injection: NaN/inf and huge values in what the environment returns, damage in every kind of K-FAC statistic,
bad group options set during training, a crashing worker, an interrupted run. After each, the weights are finite and
the outcome is either training that continued with the fault counted in the logger, or one clear error.
"""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnvBox
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import SubprocVecEnv

from sb3_acktr import ACKTR

N_STEPS = 8


class Corrupt(gym.Wrapper):
    """Replaces the reward or the observation of the env's ``at``-th step (early: not an episode's last) by ``value``."""

    def __init__(self, env: gym.Env, what: str, value: float, at: int = 3) -> None:
        super().__init__(env)
        self.what, self.value, self.at, self.steps = what, value, at, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps == self.at:
            if self.what == "reward":
                reward = self.value
            else:
                obs = np.full_like(obs, self.value)
        return obs, reward, terminated, truncated, info


def model_on(env, **kwargs) -> ACKTR:
    model = ACKTR("MlpPolicy", env, n_steps=N_STEPS, seed=0, policy_kwargs=dict(net_arch=[16]), **kwargs)
    model.set_logger(configure(None, []))
    return model


def weights_finite(model: ACKTR) -> bool:
    return all(bool(th.isfinite(param).all()) for param in model.policy.parameters())


def poison(tensor: th.Tensor) -> None:
    """Put a NaN in the first entry of a statistic."""
    tensor[(0,) * tensor.dim()] = float("nan")


def logged(model: ACKTR, key: str) -> float:
    """The last value train() recorded (learn() dumps before train(), so the last update's values stay)."""
    return model.logger.name_to_value[f"train/kfac_{key}"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_reward_is_skipped_and_counted(value):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0, wrapper_class=Corrupt, wrapper_kwargs=dict(what="reward", value=value))
    model = model_on(env)
    with pytest.warns(RuntimeWarning, match="skipped"):
        model.learn(20 * 2 * N_STEPS)
    assert model.num_timesteps == 20 * 2 * N_STEPS  # training went on to the end
    assert weights_finite(model)
    assert logged(model, "skipped_steps") + logged(model, "skipped_curvature_updates") >= 1


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_observation_stops_in_the_rollout(value):
    """Left to SB3: its policy cannot act on a NaN/inf observation (torch's distribution refuses NaN logits), so the
    rollout stops with that error, before any update could use it."""
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0, wrapper_class=Corrupt, wrapper_kwargs=dict(what="obs", value=value))
    model = model_on(env)
    with pytest.raises(ValueError, match=r"Expected parameter logits .* but found invalid values"):
        model.learn(20 * 2 * N_STEPS)
    assert weights_finite(model)


def test_huge_observations_skip_the_curvature_update():
    """Observations of 1e20 overflow the A factor in float32: that curvature update is skipped and counted."""
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0, wrapper_class=Corrupt, wrapper_kwargs=dict(what="obs", value=1e20))
    model = model_on(env)
    with pytest.warns(RuntimeWarning, match="curvature update is skipped"):
        model.learn(20 * 2 * N_STEPS)
    assert weights_finite(model) and logged(model, "skipped_curvature_updates") >= 1


@pytest.mark.parametrize(
    "inverse_method, key",
    [
        ("cholesky", "A"),
        ("cholesky", "G"),
        ("cholesky", "A_inv"),
        ("cholesky", "G_inv"),
        ("eigen", "A"),
        ("eigen", "G"),
        ("eigen", "A_eigenvectors"),
        ("eigen", "G_eigenvalues"),
    ],
)
def test_damaged_kronecker_statistic(inverse_method, key):
    """A damaged factor is reset and counted at the next inverse refresh; a damaged inverse or eigenbasis is recomputed
    from the (finite) factors at that refresh, before it moves anything."""
    model = model_on("CartPole-v1", kfac_inverse_method=inverse_method, kfac_update=2)
    model.learn(4 * N_STEPS)
    optimizer = model.policy.optimizer
    weight = model.policy.action_net.weight
    poison(optimizer.state[weight][key])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.learn(8 * N_STEPS, reset_num_timesteps=False)
    assert weights_finite(model) and optimizer.steps == 12 and optimizer.skipped_steps == 0
    assert all(bool(th.isfinite(value).all()) for value in optimizer.state[weight].values() if isinstance(value, th.Tensor))
    if key in ("A", "G"):
        assert logged(model, "reset_statistics") == 1
        assert any("they are reset" in str(warning.message) for warning in caught)
    else:
        assert logged(model, "reset_statistics") == 0


def test_damaged_diagonal_fisher_and_momentum():
    """Gaussian policy: NaN in log_std's diagonal Fisher, then in a momentum buffer; each costs one skipped step."""
    model = model_on(IdentityEnvBox(eps=0.5))
    model.learn(4 * N_STEPS)
    optimizer = model.policy.optimizer
    for key, param in (("fisher_diag", model.policy.log_std), ("momentum_buffer", model.policy.value_net.weight)):
        poison(optimizer.state[param][key])
        skipped = optimizer.skipped_steps
        with pytest.warns(RuntimeWarning):
            model.learn(6 * N_STEPS, reset_num_timesteps=False)
        assert optimizer.skipped_steps == skipped + 1, key
        assert weights_finite(model)
        assert th.isfinite(optimizer.state[param][key]).all()
    assert logged(model, "skipped_steps") == 2


@pytest.mark.parametrize("option", ["kfac_clip", "damping", "momentum", "stats_decay"])
def test_group_option_set_to_nan_during_training_stops_with_one_error(option):
    model = model_on("CartPole-v1")
    model.learn(2 * N_STEPS)
    model.policy.optimizer.param_groups[0][option] = float("nan")
    before = [param.detach().clone() for param in model.policy.parameters()]
    with pytest.raises(ValueError, match=rf"param_groups\[0\]\['{option}'\] must be in .*, got nan"):
        model.learn(2 * N_STEPS, reset_num_timesteps=False)
    assert all(th.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))
    # Left in training mode, as A2C's train() leaves it when its step raises
    assert model.policy.training


class CrashingEnv(gym.Wrapper):
    """CartPole whose 5th step raises, as a buggy environment would."""

    def __init__(self) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.calls = 0

    def step(self, action):
        self.calls += 1
        if self.calls == 5:
            raise ValueError("the environment broke")
        return self.env.step(action)


def test_crashing_subprocess_worker_stops_with_one_clear_error():
    model = model_on(SubprocVecEnv([CrashingEnv, CrashingEnv], start_method="fork"))
    with pytest.raises(RuntimeError, match=r"A SubprocVecEnv worker process ended .* DummyVecEnv"):
        model.learn(64)
    assert weights_finite(model)


class InterruptAt(BaseCallback):
    """Raises KeyboardInterrupt at the ``at``-th environment step, as Ctrl-C would."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def _on_step(self) -> bool:
        if self.n_calls == self.at:
            raise KeyboardInterrupt
        return True


def test_interrupted_run_saves_and_continues(tmp_path):
    model = model_on("CartPole-v1")
    with pytest.raises(KeyboardInterrupt):
        model.learn(10 * N_STEPS, callback=InterruptAt(5 * N_STEPS + 3))
    steps = model.policy.optimizer.steps
    assert steps == 5 and weights_finite(model)
    model.save(tmp_path / "interrupted.zip")
    loaded = ACKTR.load(tmp_path / "interrupted.zip", env=make_vec_env("CartPole-v1", n_envs=1, seed=1))
    assert loaded.policy.optimizer.steps == steps
    loaded.learn(4 * N_STEPS, reset_num_timesteps=False)
    assert loaded.policy.optimizer.steps == steps + 4 and loaded.policy.optimizer.skipped_steps == 0
    assert weights_finite(loaded)
