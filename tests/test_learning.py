"""ACKTR learns CartPole-v1 with the package's own hyperparameters (hyperparams/acktr.yml), run as rl-zoo's train runs it."""

import argparse
from pathlib import Path

import pytest
from rl_zoo3.exp_manager import ExperimentManager
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold

from sb3_acktr.zoo import register

HYPERPARAMS = Path(__file__).parent.parent / "hyperparams" / "acktr.yml"
THRESHOLD = 475
EVAL_EVERY = 5_000
BUDGET = 100_000


def steps_to_threshold(seed: int, log_folder: Path) -> tuple[int, float]:
    """
    Train with the yaml entry, the env and the model built by rl-zoo's ``ExperimentManager`` (its reading of the entry:
    ``lin_X`` schedules, ``normalize``, ``n_envs``); evaluate every 5k env steps (10 deterministic episodes on rl-zoo's
    evaluation env, whose observation normalization EvalCallback syncs with the training env's before each evaluation).

    :param seed: The run's seed
    :param log_folder: Where rl-zoo writes the run's configuration
    :return: the env steps when training stopped (at the first mean evaluation >= 475, else the budget) and the
        best mean evaluation return
    """
    register()
    manager = ExperimentManager(
        argparse.Namespace(),
        "acktr",
        "CartPole-v1",
        str(log_folder),
        n_timesteps=BUDGET,
        eval_freq=-1,
        save_freq=-1,
        seed=seed,
        verbose=0,
        device="cpu",
        config=str(HYPERPARAMS),
    )
    setup = manager.setup_experiment()
    assert setup is not None
    model, _ = setup
    stop = StopTrainingOnRewardThreshold(reward_threshold=THRESHOLD)
    evaluation = EvalCallback(
        manager.create_envs(1, eval_env=True, no_log=True),
        callback_on_new_best=stop,
        eval_freq=EVAL_EVERY // model.n_envs,
        n_eval_episodes=10,
        deterministic=True,
    )
    model.learn(BUDGET, callback=evaluation)
    return model.num_timesteps, evaluation.best_mean_reward


def test_cartpole_reaches_475_within_100k_steps(tmp_path):
    steps, best = steps_to_threshold(seed=0, log_folder=tmp_path)
    assert best >= THRESHOLD, f"best mean evaluation return {best} < {THRESHOLD} after {steps} steps"
    assert steps <= BUDGET


@pytest.mark.expensive
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cartpole_reaches_475_within_100k_steps_all_seeds(seed, tmp_path):
    steps, best = steps_to_threshold(seed=seed, log_folder=tmp_path)
    print(f"seed {seed}: best mean evaluation return {best} after {steps} steps")
    assert best >= THRESHOLD, f"best mean evaluation return {best} < {THRESHOLD} after {steps} steps"
    assert steps <= BUDGET
