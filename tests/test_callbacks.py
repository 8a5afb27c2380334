"""
Ported from Stable-Baselines3's tests/test_callbacks.py: the A2C (and on-policy) cases, with ACKTR in A2C's place.
"""

import os
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    EveryNTimesteps,
    LogEveryNTimesteps,
    StopTrainingOnMaxEpisodes,
    StopTrainingOnNoModelImprovement,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnv
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_acktr import ACKTR


def select_env() -> str:
    return "Pendulum-v1"


def test_callbacks(tmp_path):
    log_folder = tmp_path / "logs/callbacks/"

    env_id = select_env()
    # Create RL model
    # Small network for fast test
    model = ACKTR("MlpPolicy", env_id, policy_kwargs=dict(net_arch=[32]))

    checkpoint_callback = CheckpointCallback(save_freq=1000, save_path=log_folder)

    eval_env = gym.make(env_id)
    # Stop training if the performance is good enough
    callback_on_best = StopTrainingOnRewardThreshold(reward_threshold=-1200, verbose=1)

    # Stop training if there is no model improvement after 2 evaluations
    callback_no_model_improvement = StopTrainingOnNoModelImprovement(max_no_improvement_evals=2, min_evals=1, verbose=1)

    eval_callback = EvalCallback(
        eval_env,
        callback_on_new_best=callback_on_best,
        callback_after_eval=callback_no_model_improvement,
        best_model_save_path=log_folder,
        log_path=log_folder,
        eval_freq=100,
        warn=False,
    )
    # Equivalent to the `checkpoint_callback`
    # but here in an event-driven manner
    checkpoint_on_event = CheckpointCallback(save_freq=1, save_path=log_folder, name_prefix="event")

    event_callback = EveryNTimesteps(n_steps=500, callback=checkpoint_on_event)

    # Stop training if max number of episodes is reached
    callback_max_episodes = StopTrainingOnMaxEpisodes(max_episodes=100, verbose=1)

    log_callback = LogEveryNTimesteps(n_steps=250)

    callback = CallbackList([checkpoint_callback, eval_callback, event_callback, callback_max_episodes, log_callback])
    model.learn(500, callback=callback)

    # Check access to local variables
    assert model.env.observation_space.contains(callback.locals["new_obs"][0])
    assert len(callback.locals["new_obs"]) == model.n_envs
    # Check that the child callback was called
    assert checkpoint_callback.locals["new_obs"] is callback.locals["new_obs"]
    assert event_callback.locals["new_obs"] is callback.locals["new_obs"]
    assert checkpoint_on_event.locals["new_obs"] is callback.locals["new_obs"]
    # Check that internal callback counters match models' counters
    assert event_callback.num_timesteps == model.num_timesteps
    assert event_callback.n_calls == model.num_timesteps

    model.learn(500, callback=None)
    # Transform callback into a callback list automatically
    model.learn(500, callback=[checkpoint_callback, eval_callback])
    # Automatic wrapping, old way of doing callbacks
    model.learn(500, callback=lambda _locals, _globals: True)

    # Testing models that support multiple envs
    max_episodes = 1
    n_envs = 2
    # Pendulum-v1 has a timelimit of 200 timesteps
    max_episode_length = 200
    envs = make_vec_env(env_id, n_envs=n_envs, seed=0)

    model = ACKTR("MlpPolicy", envs, policy_kwargs=dict(net_arch=[32]))

    callback_max_episodes = StopTrainingOnMaxEpisodes(max_episodes=max_episodes, verbose=1)
    callback = CallbackList([callback_max_episodes])
    model.learn(1000, callback=callback)

    # Check that the actual number of episodes and timesteps per env matches the expected one
    episodes_per_env = callback_max_episodes.n_episodes // n_envs
    assert episodes_per_env == max_episodes
    timesteps_per_env = model.num_timesteps // n_envs
    assert timesteps_per_env == max_episode_length

    if os.path.exists(log_folder):
        shutil.rmtree(log_folder)


def test_eval_callback_vec_env():
    # tests that eval callback does not crash when given a vector
    n_eval_envs = 3
    train_env = IdentityEnv()
    eval_env = DummyVecEnv([lambda: IdentityEnv()] * n_eval_envs)
    model = ACKTR("MlpPolicy", train_env, seed=0)

    eval_callback = EvalCallback(
        eval_env,
        eval_freq=100,
        warn=False,
    )
    model.learn(300, callback=eval_callback)
    assert eval_callback.last_mean_reward == 100.0


def test_eval_callback_logs_are_written_with_the_correct_timestep(tmp_path):
    # Skip if no tensorboard installed
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    env_id = "CartPole-v1"
    model = ACKTR(
        "MlpPolicy",
        env_id,
        policy_kwargs=dict(net_arch=[32]),
        tensorboard_log=tmp_path,
        verbose=1,
        seed=1,
    )

    eval_env = gym.make(env_id)
    eval_freq = 101
    eval_callback = EvalCallback(eval_env, eval_freq=eval_freq, warn=False)
    model.learn(500, callback=eval_callback)

    acc = EventAccumulator(str(tmp_path / "ACKTR_1"))
    acc.Reload()
    for event in acc.scalars.Items("eval/mean_reward"):
        assert event.step % eval_freq == 0


def test_eval_friendly_error():
    # tests that eval callback does not crash when given a vector
    train_env = VecNormalize(DummyVecEnv([lambda: gym.make("CartPole-v1")]))
    eval_env = DummyVecEnv([lambda: gym.make("CartPole-v1")])
    eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
    _ = train_env.reset()
    original_obs = train_env.get_original_obs()
    model = ACKTR("MlpPolicy", train_env, n_steps=50, seed=0)

    eval_callback = EvalCallback(
        eval_env,
        eval_freq=100,
        warn=False,
    )
    model.learn(100, callback=eval_callback)

    # Check synchronization
    assert np.allclose(train_env.normalize_obs(original_obs), eval_env.normalize_obs(original_obs))

    wrong_eval_env = gym.make("CartPole-v1")
    eval_callback = EvalCallback(
        wrong_eval_env,
        eval_freq=100,
        warn=False,
    )

    with pytest.warns(Warning):
        with pytest.raises(AssertionError):
            model.learn(100, callback=eval_callback)


def test_eval_callback_chaining(tmp_path):
    class DummyCallback(BaseCallback):
        def _on_step(self):
            # Check that the parent callback is an EvalCallback
            assert isinstance(self.parent, EvalCallback)
            assert hasattr(self.parent, "best_mean_reward")
            return True

    stop_on_threshold_callback = StopTrainingOnRewardThreshold(reward_threshold=-200, verbose=1)

    eval_callback = EvalCallback(
        gym.make("Pendulum-v1"),
        n_eval_episodes=1,
        eval_freq=100,
        callback_on_new_best=stop_on_threshold_callback,
        callback_after_eval=DummyCallback(),
        verbose=1,
    )

    model = ACKTR(
        "MlpPolicy",
        "Pendulum-v1",
        n_steps=64,
    )
    model.learn(500, callback=eval_callback)


class AlwaysFailCallback(BaseCallback):
    def __init__(self, *args, callback_false_value, **kwargs):
        super().__init__(*args, **kwargs)
        self.callback_false_value = callback_false_value

    def _on_step(self) -> bool:
        return self.callback_false_value


@pytest.mark.parametrize("callback_false_value", [False, np.bool_(0), th.tensor(0, dtype=th.bool)])
def test_callbacks_can_cancel_runs(callback_false_value):
    """SB3's case for A2C as it is: one env and n_steps=1, a one-sample rollout."""
    assert not callback_false_value  # Sanity check to ensure parametrized values are valid
    model = ACKTR("MlpPolicy", "Pendulum-v1", n_steps=1, stats_window_size=1, policy_kwargs=dict(net_arch=[2]))
    alwaysfailcallback = AlwaysFailCallback(callback_false_value=callback_false_value)
    model.learn(10, callback=alwaysfailcallback)

    assert alwaysfailcallback.n_calls == 1
    # The rollout was cut short: no update was made
    assert model._n_updates == 0
    assert model.policy.optimizer.steps == 0


class CallsCounter(BaseCallback):
    """Counts the calls of each event, to check ACKTR.learn() triggers them as SB3's A2C does."""

    def __init__(self):
        super().__init__()
        self.calls = dict(training_start=0, rollout_start=0, step=0, rollout_end=0, training_end=0)

    def _on_training_start(self) -> None:
        self.calls["training_start"] += 1

    def _on_rollout_start(self) -> None:
        self.calls["rollout_start"] += 1

    def _on_step(self) -> bool:
        self.calls["step"] += 1
        return True

    def _on_rollout_end(self) -> None:
        self.calls["rollout_end"] += 1

    def _on_training_end(self) -> None:
        self.calls["training_end"] += 1


def test_callback_events():
    n_steps, n_rollouts = 16, 3
    callback = CallsCounter()
    model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=n_steps, policy_kwargs=dict(net_arch=[16]))
    model.learn(n_steps * n_rollouts, callback=callback)
    assert callback.calls == dict(
        training_start=1, rollout_start=n_rollouts, step=n_steps * n_rollouts, rollout_end=n_rollouts, training_end=1
    )
    assert model._n_updates == n_rollouts
