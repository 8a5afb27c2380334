"""ACKTR learns CartPole-v1 with the package's own hyperparameters (hyperparams/acktr.yml)."""

from pathlib import Path

import pytest
import yaml
from rl_zoo3.utils import linear_schedule
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_acktr import ACKTR

HYPERPARAMS = Path(__file__).parent.parent / "hyperparams" / "acktr.yml"
THRESHOLD = 475
EVAL_EVERY = 5_000
BUDGET = 100_000
EVAL_SEED = 1_000


def steps_to_threshold(seed: int) -> tuple[int, float]:
    """
    Train with the yaml entry; evaluate every 5k env steps (10 deterministic episodes on a separate env).

    :return: the env steps when training stopped (at the first mean evaluation >= 475, else the budget) and the
        best mean evaluation return
    """
    with open(HYPERPARAMS) as file:
        hyperparams = dict(yaml.safe_load(file)["CartPole-v1"])
    n_envs = hyperparams.pop("n_envs")
    hyperparams.pop("n_timesteps")
    policy = hyperparams.pop("policy")
    learning_rate = hyperparams.get("learning_rate")
    if isinstance(learning_rate, str) and learning_rate.startswith("lin_"):
        # As rl-zoo's `train` reads the entry: lin_X decays linearly from X to 0 over the run
        hyperparams["learning_rate"] = linear_schedule(float(learning_rate.removeprefix("lin_")))
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed)
    # A seeded evaluation env: the same evaluation start states in every run
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=EVAL_SEED + seed)
    if hyperparams.pop("normalize", False):
        # As rl-zoo's `train` reads `normalize: true`: observations and rewards normalized in training; the evaluation
        # env normalizes observations with the training statistics (EvalCallback copies them before each evaluation)
        env = VecNormalize(env, **({"gamma": hyperparams["gamma"]} if "gamma" in hyperparams else {}))
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
    stop = StopTrainingOnRewardThreshold(reward_threshold=THRESHOLD)
    evaluation = EvalCallback(
        eval_env, callback_on_new_best=stop, eval_freq=EVAL_EVERY // n_envs, n_eval_episodes=10, deterministic=True
    )
    model = ACKTR(policy, env, seed=seed, **hyperparams)
    model.learn(BUDGET, callback=evaluation)
    return model.num_timesteps, evaluation.best_mean_reward


def test_cartpole_reaches_475_within_100k_steps():
    steps, best = steps_to_threshold(seed=0)
    assert best >= THRESHOLD, f"best mean evaluation return {best} < {THRESHOLD} after {steps} steps"
    assert steps <= BUDGET


@pytest.mark.expensive
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cartpole_reaches_475_within_100k_steps_all_seeds(seed):
    steps, best = steps_to_threshold(seed=seed)
    print(f"seed {seed}: best mean evaluation return {best} after {steps} steps")
    assert best >= THRESHOLD, f"best mean evaluation return {best} < {THRESHOLD} after {steps} steps"
    assert steps <= BUDGET
