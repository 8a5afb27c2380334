"""RecurrentACKTR: sb3-contrib's recurrent policies and buffers under a K-FAC update, as RecurrentPPO is tested."""

import argparse

import gymnasium as gym
import numpy as np
import pytest
import rl_zoo3.import_envs  # noqa: F401  (registers the NoVel envs)
import torch as th
from gymnasium import spaces
from rl_zoo3.exp_manager import ExperimentManager
from sb3_contrib.ppo_recurrent.policies import MlpLstmPolicy
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from torch import nn

from sb3_acktr import ACKTR, RecurrentACKTR
from sb3_acktr.acktr.acktr import EXACT_KL_SAMPLES
from sb3_acktr.zoo import RECURRENT_HYPERPARAMS, register
from tests.helpers import actor_kl_ratios, exact_kl_with_and_without_the_row_path

LSTM_VARIANTS = [
    {},
    dict(shared_lstm=True, enable_critic_lstm=False),
    dict(enable_critic_lstm=True, lstm_hidden_size=4, lstm_kwargs=dict(dropout=0.5), n_lstm_layers=2),
    dict(enable_critic_lstm=False, lstm_hidden_size=4, lstm_kwargs=dict(dropout=0.5), n_lstm_layers=2),
]


class DictObservation(gym.ObservationWrapper):
    """CartPole's observation inside a Dict, for MultiInputLstmPolicy."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = spaces.Dict({"obs": env.observation_space})

    def observation(self, observation: np.ndarray) -> dict[str, np.ndarray]:
        return {"obs": observation}


@pytest.mark.parametrize("policy_kwargs", LSTM_VARIANTS)
@pytest.mark.parametrize("trust_region", ["joint", "per_network"])
def test_mlp_lstm_policies(policy_kwargs, trust_region):
    model = RecurrentACKTR(
        "MlpLstmPolicy", "CartPole-v1", n_steps=16, seed=0, policy_kwargs=policy_kwargs, trust_region=trust_region
    )
    model.learn(total_timesteps=64)
    assert model.policy.optimizer.steps == 4
    for param in model.policy.parameters():
        assert th.isfinite(param).all()


@pytest.mark.parametrize(
    "policy_kwargs",
    [*LSTM_VARIANTS[:3], {"share_features_extractor": False}, dict(enable_critic_lstm=False, share_features_extractor=False)],
)
def test_cnn_lstm_policies(policy_kwargs):
    env = FakeImageEnv(screen_height=40, screen_width=40, n_channels=3)
    kwargs = dict(**policy_kwargs, features_extractor_kwargs=dict(features_dim=32))
    model = RecurrentACKTR("CnnLstmPolicy", env, n_steps=16, seed=0, policy_kwargs=kwargs, kfac_weight_sharing="reduce")
    model.learn(total_timesteps=32)
    assert model.policy.optimizer.steps == 2


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_run(env_id):
    RecurrentACKTR("MlpLstmPolicy", env_id, n_steps=16, seed=0).learn(total_timesteps=32)


def test_run_gsde():
    model = RecurrentACKTR("MlpLstmPolicy", "Pendulum-v1", n_steps=16, seed=0, use_sde=True, sde_sample_freq=4)
    model.learn(total_timesteps=200)


@pytest.mark.parametrize("policy_kwargs", LSTM_VARIANTS)
def test_dict_observations(policy_kwargs):
    env = make_vec_env("CartPole-v1", n_envs=1, wrapper_class=DictObservation)
    model = RecurrentACKTR("MultiInputLstmPolicy", env, n_steps=32, policy_kwargs=policy_kwargs).learn(64)
    evaluate_policy(model, env, warn=False)


def trained_on_cartpole_without_velocities() -> tuple[RecurrentACKTR, VecEnv]:
    """A small RecurrentACKTR after 8 updates on 2 CartPoleNoVel-v1 envs, and its env."""
    env = make_vec_env("CartPoleNoVel-v1", n_envs=2, seed=0)
    model = RecurrentACKTR("MlpLstmPolicy", env, n_steps=8, seed=0, policy_kwargs=dict(lstm_hidden_size=8))
    return model.learn(64), env


def test_predict_carries_and_resets_the_states():
    model, env = trained_on_cartpole_without_velocities()
    obs = env.reset()
    starts = np.ones(2, dtype=bool)
    _, states = model.predict(obs, episode_start=starts, deterministic=True)
    assert states[0].shape == (1, 2, 8)
    _, carried = model.predict(obs, state=states, episode_start=np.zeros(2, dtype=bool), deterministic=True)
    _, reset = model.predict(obs, state=states, episode_start=starts, deterministic=True)
    _, fresh = model.predict(obs, episode_start=starts, deterministic=True)
    # A reset at an episode start forgets the state; carrying it does not
    np.testing.assert_allclose(reset[0], fresh[0])
    assert not np.allclose(carried[0], fresh[0])


def test_save_load_continue(tmp_path):
    model, env = trained_on_cartpole_without_velocities()
    obs = env.reset()
    starts = np.ones(2, dtype=bool)
    action, states = model.predict(obs, episode_start=starts, deterministic=True)
    model.save(tmp_path / "model")
    loaded = RecurrentACKTR.load(tmp_path / "model", env=env)
    loaded_action, loaded_states = loaded.predict(obs, episode_start=starts, deterministic=True)
    np.testing.assert_array_equal(action, loaded_action)
    np.testing.assert_allclose(states[0], loaded_states[0])
    for key in ("A", "G", "A_inv"):
        weight = loaded.policy.action_net.weight
        th.testing.assert_close(
            loaded.policy.optimizer.state[weight][key], model.policy.optimizer.state[model.policy.action_net.weight][key]
        )
    loaded.learn(32, reset_num_timesteps=False)
    assert loaded.policy.optimizer.steps == model.policy.optimizer.steps + 2


def test_curvature_counts_only_the_real_steps_of_the_padded_sequences():
    """After one update, the action layer's A is the mean of [x, 1][x, 1]ᵀ over the real steps of the rollout (the
    buffer pads its sequences when episodes end inside it), computed here from the inputs the layer saw."""
    env = make_vec_env("CartPoleNoVel-v1", n_envs=3, seed=0)
    model = RecurrentACKTR("MlpLstmPolicy", env, n_steps=40, seed=0, policy_kwargs=dict(lstm_hidden_size=8))
    inputs: list[th.Tensor] = []
    masks: list[th.Tensor] = []
    handle = model.policy.action_net.register_forward_hook(
        lambda module, args, output: inputs.append(args[0].detach()) if th.is_grad_enabled() else None
    )
    sample_mask = model._sample_mask
    model._sample_mask = lambda data: masks.append(sample_mask(data)) or masks[-1]  # type: ignore[method-assign]
    model.learn(40 * 3)
    handle.remove()
    (x,), (mask,) = inputs, masks
    assert x.shape[0] > mask.sum() == 120  # padding rows exist, and are left out
    real = th.cat([x[mask], th.ones(120, 1)], dim=1)
    th.testing.assert_close(model.policy.optimizer.state[model.policy.action_net.weight]["A"], real.t() @ real / 120)


def test_exact_kl_on_whole_sequences():
    """train/exact_kl runs the LSTM over the first whole sequences of the batch holding >= EXACT_KL_SAMPLES rows."""
    env = make_vec_env("CartPole-v1", n_envs=4, seed=0)
    model = RecurrentACKTR("MlpLstmPolicy", env, n_steps=64, seed=0)
    get_distribution = model.policy.get_distribution
    calls = []

    def recording(observations, lstm_states, episode_starts):
        calls.append((len(observations), lstm_states[0].shape[1], len(episode_starts)))
        return get_distribution(observations, lstm_states, episode_starts)

    model.policy.get_distribution = recording
    model.learn(256)
    # The policy after the step (before it: the training forward pass's rows, an LSTM without dropout)
    ((rows, sequences, starts),) = calls
    assert rows == starts
    # Sequences of one padded length: the fewest whole ones holding EXACT_KL_SAMPLES rows (or all of them)
    length = rows // sequences
    assert rows == sequences * length and (rows >= EXACT_KL_SAMPLES or sequences * length == 256)
    assert (sequences - 1) * length < EXACT_KL_SAMPLES
    # A KL (up to rounding: the first update barely moves the policy, ~1e-9)
    assert model.logger.name_to_value["train/exact_kl"] > -1e-7


def test_exact_kl_on_the_same_sequences_as_with_two_forward_passes():
    """The training forward pass's rows of the first whole sequences are the policy a forward pass before the step
    gives (same run; the curvature pass runs the LSTM step by step, the forward pass the fused kernel: round-off)."""
    histories = exact_kl_with_and_without_the_row_path(
        lambda: RecurrentACKTR(
            "MlpLstmPolicy",
            make_vec_env("CartPole-v1", n_envs=4, seed=0),
            n_steps=64,
            seed=0,
            learning_rate=1.0,
            kfac_clip=0.01,
        ),
        256 * 8,
    )
    assert len(histories[0]) == 8 and max(histories[0]) > 1e-6
    assert histories[0] == pytest.approx(histories[1], rel=1e-3, abs=2e-8)


def test_lstm_weights_get_kronecker_factors(recwarn):
    """By default each LSTM layer is one block over [W_ih, W_hh, b]: A of 4 + 64 + 1 (CartPole, the hidden size, the
    bias), G of the 4 gates."""
    model = RecurrentACKTR("MlpLstmPolicy", "CartPole-v1", n_steps=8, seed=0, policy_kwargs=dict(lstm_hidden_size=64))
    assert not [warning for warning in recwarn if "Kronecker" in str(warning.message)]
    optimizer = model.policy.optimizer
    assert [layer.name for layer in optimizer.layers if layer.lstm_layer is not None] == ["lstm_actor.l0", "lstm_critic.l0"]
    lstm_params = {id(param) for param in [*model.policy.lstm_actor.parameters(), *model.policy.lstm_critic.parameters()]}
    assert not lstm_params & {id(param) for param in optimizer.fallback_params}
    model.learn(16)
    state = optimizer.state[model.policy.lstm_actor.weight_ih_l0]
    assert state["A"].shape == (69, 69) and state["G"].shape == (256, 256)
    assert "fisher_diag" not in optimizer.state[model.policy.lstm_actor.weight_hh_l0]


def test_lstm_weights_on_the_diagonal_fisher_without_a_warning(recwarn):
    model = RecurrentACKTR("MlpLstmPolicy", "CartPole-v1", n_steps=8, seed=0, kfac_lstm_curvature="diagonal")
    assert not [warning for warning in recwarn if "Kronecker" in str(warning.message)]
    fallback = {id(param) for param in model.policy.optimizer.fallback_params}
    assert {id(param) for param in model.policy.lstm_actor.parameters()} <= fallback
    model.learn(16)
    assert "fisher_diag" in model.policy.optimizer.state[model.policy.lstm_actor.weight_hh_l0]


def test_per_network_trust_region_puts_each_lstm_with_its_network():
    model = RecurrentACKTR("MlpLstmPolicy", "CartPole-v1", n_steps=8, seed=0, trust_region="per_network")
    actor, critic = (group["params"] for group in model.policy.optimizer.param_groups)
    assert {id(p) for p in model.policy.lstm_actor.parameters()} <= {id(p) for p in actor}
    assert {id(p) for p in model.policy.lstm_critic.parameters()} <= {id(p) for p in critic}


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(policy="MlpPolicy"), TypeError, "MlpPolicy has no memory: use MlpLstmPolicy with RecurrentACKTR, or MlpPolicy"),
        (dict(policy=ActorCriticPolicy), TypeError, "RecurrentACKTR needs a recurrent policy .* got ActorCriticPolicy"),
        (dict(rollout_buffer_class=VecNormalize), ValueError, "RecurrentACKTR uses sb3-contrib's recurrent rollout buffers"),
        (
            dict(policy_kwargs=dict(lstm_kwargs=dict(bidirectional=True))),
            ValueError,
            r"a bidirectional LSTM \(lstm_kwargs=dict\(bidirectional=True\)\) cannot run step by step",
        ),
    ],
)
def test_bad_input(kwargs, error, message):
    arguments = dict(policy="MlpLstmPolicy", env="CartPole-v1", n_steps=8)
    with pytest.raises(error, match=message):
        RecurrentACKTR(**{**arguments, **kwargs})


def test_acktr_refuses_a_recurrent_policy():
    with pytest.raises(
        TypeError,
        match="ACKTR does not carry LSTM states; RecurrentActorCriticPolicy is a recurrent policy: use RecurrentACKTR",
    ):
        ACKTR(MlpLstmPolicy, "CartPole-v1")


def test_learns_cartpole_without_velocities(tmp_path):
    """The zoo's CartPoleNoVel-v1 entry, built by rl-zoo as `train` builds it, reaches 475 within its 100k steps
    (memoryless policies stay near 50)."""
    register()
    manager = ExperimentManager(
        argparse.Namespace(),
        "acktr_lstm",
        "CartPoleNoVel-v1",
        str(tmp_path),
        config=str(RECURRENT_HYPERPARAMS),
        seed=0,
        verbose=0,
    )
    model, _ = manager.setup_experiment()
    assert isinstance(model, RecurrentACKTR)
    eval_env = VecNormalize(make_vec_env("CartPoleNoVel-v1", n_envs=5, seed=1_000), training=False, norm_reward=False)
    stop = StopTrainingOnRewardThreshold(reward_threshold=475)
    evaluation = EvalCallback(eval_env, callback_on_new_best=stop, eval_freq=5_000 // model.n_envs, n_eval_episodes=10)
    model.learn(100_000, callback=evaluation)
    assert evaluation.best_mean_reward >= 475


def test_tensorboard_run_is_named_after_the_class(tmp_path):
    model = RecurrentACKTR("MlpLstmPolicy", "CartPole-v1", n_steps=8, tensorboard_log=str(tmp_path))
    model.learn(8)
    ACKTR("MlpPolicy", "CartPole-v1", n_steps=8, tensorboard_log=str(tmp_path)).learn(8)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ACKTR_1", "RecurrentACKTR_1"]


def test_lstm_factors_predict_the_kl_better_than_the_diagonal():
    """The trust region's quadratic model on the recurrent policy (the zoo's CartPoleNoVel settings, momentum 0 so that
    the applied step is the modelled one): with the LSTM on Kronecker factors the exact KL of the first updates is
    far closer to the model than with the LSTM on the diagonal Fisher (docs/benchmark.md, "Recurrent ACKTR": medians
    4.4-6.9 against 15.7-17.8 over 100 updates, seeds 0-2; the MLP at the same settings 1.4-1.9)."""
    policy_kwargs = dict(ortho_init=False, activation_fn=nn.ReLU, lstm_hidden_size=64, net_arch=dict(pi=[64], vf=[64]))
    medians = {}
    for form in ("kronecker", "diagonal"):
        env = VecNormalize(make_vec_env("CartPoleNoVel-v1", n_envs=8, seed=0))
        model = RecurrentACKTR(
            "MlpLstmPolicy", env, ent_coef=0.0, vf_coef=0.5, trust_region="per_network", kfac_clip=0.02, seed=0,
            kfac_momentum=0.0, kfac_lstm_curvature=form, policy_kwargs=policy_kwargs,
        )  # fmt: skip
        medians[form] = float(np.median(actor_kl_ratios(model, 60)))
    assert medians["kronecker"] < medians["diagonal"] / 2
