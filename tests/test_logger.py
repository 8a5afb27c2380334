"""
Ported from Stable-Baselines3's tests/test_logger.py: the parts that use A2C (logger setup, FPS), with ACKTR in
A2C's place, plus checks of the keys ACKTR logs.
"""

import math
import time
from unittest import mock

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.logger import (
    CSVOutputFormat,
    HumanOutputFormat,
    Logger,
    TensorBoardOutputFormat,
    configure,
)

from sb3_acktr import ACKTR

# The keys ACKTR.train() logs, whatever the trust region
ACKTR_TRAIN_KEYS = [
    "train/entropy_loss",
    "train/policy_loss",
    "train/value_loss",
    "train/explained_variance",
    "train/learning_rate",
    "train/n_updates",
    "train/pg_fisher_loss",
    "train/vf_fisher_loss",
    "train/quadratic_kl",
    "train/quadratic_kl_actor",
    "train/exact_kl",
    "train/kfac_skipped_steps",
    "train/kfac_skipped_curvature_updates",
    "train/kfac_reset_statistics",
]


def test_set_logger(tmp_path, monkeypatch):
    # set up logger
    new_logger = configure(str(tmp_path), ["stdout", "csv", "tensorboard"])
    # Default outputs with verbose=0
    model = ACKTR("MlpPolicy", "CartPole-v1", verbose=0).learn(4)
    assert model.logger.output_formats == []

    model = ACKTR("MlpPolicy", "CartPole-v1", verbose=0, tensorboard_log=str(tmp_path)).learn(4)
    assert str(tmp_path) in model.logger.dir
    assert isinstance(model.logger.output_formats[0], TensorBoardOutputFormat)

    # Check that env variable work
    new_tmp_path = str(tmp_path / "new_tmp")
    # monkeypatch (instead of SB3's os.environ) so that the variable does not leak into other tests
    monkeypatch.setenv("SB3_LOGDIR", new_tmp_path)
    model = ACKTR("MlpPolicy", "CartPole-v1", verbose=0).learn(4)
    assert model.logger.dir == new_tmp_path

    # Default outputs with verbose=1
    model = ACKTR("MlpPolicy", "CartPole-v1", verbose=1).learn(4)
    assert isinstance(model.logger.output_formats[0], HumanOutputFormat)
    # with tensorboard
    model = ACKTR("MlpPolicy", "CartPole-v1", verbose=1, tensorboard_log=str(tmp_path)).learn(4)
    assert isinstance(model.logger.output_formats[0], HumanOutputFormat)
    assert isinstance(model.logger.output_formats[1], TensorBoardOutputFormat)
    assert len(model.logger.output_formats) == 2
    model.learn(32)
    # set new logger
    model.set_logger(new_logger)
    # Check that the new logger is correctly setup
    assert isinstance(model.logger.output_formats[0], HumanOutputFormat)
    assert isinstance(model.logger.output_formats[1], CSVOutputFormat)
    assert isinstance(model.logger.output_formats[2], TensorBoardOutputFormat)
    assert len(model.logger.output_formats) == 3
    model.learn(32)

    model = ACKTR("MlpPolicy", "CartPole-v1", verbose=1)
    model.set_logger(new_logger)
    model.learn(32)
    # Check that the new logger is not overwritten
    assert isinstance(model.logger.output_formats[0], HumanOutputFormat)
    assert isinstance(model.logger.output_formats[1], CSVOutputFormat)
    assert isinstance(model.logger.output_formats[2], TensorBoardOutputFormat)
    assert len(model.logger.output_formats) == 3


class TimeDelayEnv(gym.Env):
    """
    Gym env for testing FPS logging.
    """

    def __init__(self, delay: float = 0.01):
        super().__init__()
        self.delay = delay
        self.observation_space = spaces.Box(low=-20.0, high=20.0, shape=(4,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        time.sleep(self.delay)
        obs = self.observation_space.sample()
        return obs, 0.0, True, False, {}


class InMemoryLogger(Logger):
    """
    Logger that keeps key/value pairs in memory without any writers.
    """

    def __init__(self):
        super().__init__("", [])

    def dump(self, step: int = 0) -> None:
        pass


def test_fps_logger(tmp_path):
    logger = InMemoryLogger()
    max_fps = 1000
    env = TimeDelayEnv(1 / max_fps)
    model = ACKTR("MlpPolicy", env, verbose=1)
    model.set_logger(logger)

    # fps should be at most max_fps
    model.learn(100, log_interval=1)
    assert max_fps / 10 <= logger.name_to_value["time/fps"] <= max_fps

    # second time, FPS should be the same
    model.learn(100, log_interval=1)
    assert max_fps / 10 <= logger.name_to_value["time/fps"] <= max_fps

    # Artificially increase num_timesteps to check
    # that fps computation is reset at each call to learn()
    model.num_timesteps = 20_000

    # third time, FPS should be the same
    model.learn(100, log_interval=1, reset_num_timesteps=False)
    assert max_fps / 10 <= logger.name_to_value["time/fps"] <= max_fps


def test_fps_no_div_zero():
    """Set time to constant and train algorithm to check no division by zero error.

    Time can appear to be constant during short runs on platforms with low-precision
    timers. We should avoid division by zero errors e.g. when computing FPS in
    this situation."""
    with mock.patch("time.time", lambda: 42.0):
        with mock.patch("time.time_ns", lambda: 42.0):
            model = ACKTR("MlpPolicy", "CartPole-v1")
            model.learn(total_timesteps=100)


@pytest.mark.parametrize("trust_region", ["joint", "per_network"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_acktr_logged_keys(trust_region, env_id):
    """ACKTR logs its losses, Fisher losses, trust-region scale(s), KL figures and K-FAC counters."""
    logger = InMemoryLogger()
    n_steps, n_updates = 16, 3
    model = ACKTR("MlpPolicy", env_id, n_steps=n_steps, trust_region=trust_region, policy_kwargs=dict(net_arch=[16]))
    model.set_logger(logger)
    model.learn(n_steps * n_updates, log_interval=1)

    values = logger.name_to_value
    expected_keys = list(ACKTR_TRAIN_KEYS)
    if trust_region == "joint":
        expected_keys.append("train/trust_region_scale")
        assert "train/trust_region_scale_actor" not in values
    else:
        expected_keys += ["train/trust_region_scale_actor", "train/trust_region_scale_critic"]
        assert "train/trust_region_scale" not in values
    if env_id == "Pendulum-v1":
        expected_keys.append("train/std")
    missing = [key for key in expected_keys if key not in values]
    assert not missing, missing

    assert values["train/n_updates"] == n_updates
    assert values["train/learning_rate"] == model.learning_rate
    assert values["train/kfac_skipped_steps"] == 0
    assert values["train/kfac_skipped_curvature_updates"] == 0
    assert values["train/kfac_reset_statistics"] == 0
    for key in expected_keys:
        assert math.isfinite(values[key]), key
    # The trust region scale(s) are in (0, 1], the quadratic-model KL is within the trust region
    # (0.5 * kfac_clip, see KFAC), and the actor's part of it is at most the total
    scales = [value for key, value in values.items() if key.startswith("train/trust_region_scale")]
    assert scales and all(0 < scale <= 1 for scale in scales)
    max_kl = 0.5 * model.kfac_clip * (2 if trust_region == "per_network" else 1)
    assert 0 <= values["train/quadratic_kl"] <= max_kl * (1 + 1e-6)
    assert 0 <= values["train/quadratic_kl_actor"] <= values["train/quadratic_kl"] * (1 + 1e-6)
    assert values["train/exact_kl"] >= 0
    assert values["train/vf_fisher_loss"] >= 0


def test_acktr_fisher_losses_only_logged_when_curvature_is_updated():
    """With kfac_stats_update=2, the Fisher losses are logged at the updates that refresh the K-FAC statistics."""

    class RecordingLogger(InMemoryLogger):
        def __init__(self):
            super().__init__()
            self.history = []

        def record(self, key, value, exclude=None):
            self.history.append((key, value))
            super().record(key, value, exclude)

    logger = RecordingLogger()
    n_steps, n_updates = 16, 4
    model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=n_steps, kfac_stats_update=2)
    model.set_logger(logger)
    model.learn(n_steps * n_updates)
    n_fisher_logs = sum(1 for key, _ in logger.history if key == "train/pg_fisher_loss")
    n_policy_logs = sum(1 for key, _ in logger.history if key == "train/policy_loss")
    assert n_policy_logs == n_updates
    assert n_fisher_logs == n_updates // 2


def test_exact_kl_only_for_logged_updates():
    """The exact-KL forward pass runs once per log dump (each dump shows it), and skipping it changes nothing."""

    class DumpRecordingLogger(Logger):
        def __init__(self):
            super().__init__(None, [])
            self.dumps = []

        def dump(self, step: int = 0) -> None:
            self.dumps.append(dict(self.name_to_value))
            super().dump(step)

    n_steps, n_updates, log_interval = 8, 7, 3
    model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=n_steps, seed=0)
    logger = DumpRecordingLogger()
    model.set_logger(logger)
    get_distribution = model.policy.get_distribution
    calls = []
    model.policy.get_distribution = lambda obs: calls.append(len(obs)) or get_distribution(obs)
    model.learn(n_steps * n_updates, log_interval=log_interval)
    # SB3 dumps at iterations 3 and 6, before their train(): the values of updates 2 and 5
    assert [dump["train/n_updates"] for dump in logger.dumps] == [2, 5]
    assert all(dump["train/exact_kl"] >= 0 for dump in logger.dumps)
    assert calls == [n_steps, n_steps]
    # train() outside learn() always computes it, and so does every update when learn() never dumps
    model.train()
    assert len(calls) == 3 and logger.name_to_value["train/exact_kl"] >= 0
    model.learn(n_steps * n_updates, log_interval=None)
    assert len(calls) == 3 + n_updates and logger.name_to_value["train/exact_kl"] >= 0

    def trained(log_interval):
        model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=n_steps, seed=0)
        model.learn(n_steps * n_updates, log_interval=log_interval)
        return th.nn.utils.parameters_to_vector(model.policy.parameters())

    assert th.equal(trained(100), trained(1))  # 7 updates: never computed, and computed on each
