"""
Ported from Stable-Baselines3's tests/test_tensorboard.py: the A2C case, with ACKTR in A2C's place, plus a check
that ACKTR's own training keys reach TensorBoard.
"""

import os

import pytest
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HParam

from sb3_acktr import ACKTR
from tests.helpers import ACKTR_TRAIN_KEYS

N_STEPS = 100

# The keys ACKTR.train() logs with the default joint trust region; train/n_updates is excluded from TensorBoard
TENSORBOARD_KEYS = [key for key in ACKTR_TRAIN_KEYS if key != "train/n_updates"] + ["train/trust_region_scale"]


class HParamCallback(BaseCallback):
    """
    Saves the hyperparameters and metrics at the start of the training, and logs them to TensorBoard.
    """

    def _on_training_start(self) -> None:
        hparam_dict: dict[str, str | float] = {
            "algorithm": self.model.__class__.__name__,
            # Ignore type checking for gamma, see https://github.com/DLR-RM/stable-baselines3/pull/1194/files#r1035006458
            "gamma": self.model.gamma,  # type: ignore[attr-defined]
        }
        if isinstance(self.model.learning_rate, float):  # Can also be Schedule, in that case, we don't report
            hparam_dict["learning rate"] = self.model.learning_rate
        # define the metrics that will appear in the `HPARAMS` Tensorboard tab by referencing their tag
        # Tensorbaord will find & display metrics from the `SCALARS` tab
        metric_dict: dict[str, float] = {
            "rollout/ep_len_mean": 0,
        }
        self.logger.record(
            "hparams",
            HParam(hparam_dict, metric_dict),
            exclude=("stdout", "log", "json", "csv"),
        )

    def _on_step(self) -> bool:
        return True


def test_tensorboard(tmp_path):
    # Skip if no tensorboard installed
    pytest.importorskip("tensorboard")

    logname = "ACKTR"
    model = ACKTR("MlpPolicy", "CartPole-v1", verbose=1, tensorboard_log=tmp_path)
    model.learn(N_STEPS, callback=HParamCallback())
    model.learn(N_STEPS, reset_num_timesteps=False)

    assert os.path.isdir(tmp_path / str(logname + "_1"))
    assert not os.path.isdir(tmp_path / str(logname + "_2"))

    logname = "tb_multiple_runs_acktr"
    model.learn(N_STEPS, tb_log_name=logname)
    model.learn(N_STEPS, tb_log_name=logname)

    assert os.path.isdir(tmp_path / str(logname + "_1"))
    # Check that the log dir name increments correctly
    assert os.path.isdir(tmp_path / str(logname + "_2"))


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_tensorboard_acktr_keys(tmp_path, env_id):
    """ACKTR's training figures (losses, Fisher losses, trust region, KL, K-FAC counters) are written to TensorBoard."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    n_steps = 16
    model = ACKTR("MlpPolicy", env_id, n_steps=n_steps, tensorboard_log=tmp_path, policy_kwargs=dict(net_arch=[16]))
    # Logs are dumped before each update: three rollouts write the keys of the first two updates
    model.learn(3 * n_steps, log_interval=1)
    model.logger.close()

    accumulator = EventAccumulator(str(tmp_path / "ACKTR_1"))
    accumulator.Reload()
    scalar_keys = set(accumulator.scalars.Keys())
    expected_keys = set(TENSORBOARD_KEYS)
    if env_id == "Pendulum-v1":
        expected_keys.add("train/std")
    assert expected_keys <= scalar_keys, expected_keys - scalar_keys
    # n_updates is excluded from TensorBoard, as for A2C
    assert "train/n_updates" not in scalar_keys
    # One value of each train key per update already dumped: the first two updates, dumped after rollouts 2 and 3
    for key in TENSORBOARD_KEYS:
        assert [event.step for event in accumulator.scalars.Items(key)] == [2 * n_steps, 3 * n_steps], key
