"""ACKTR-specific behaviour: the joint Fisher, trust-region modes, bad input, and lossless save/load."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv, IdentityEnv
from stable_baselines3.common.logger import configure

from sb3_acktr import ACKTR
from tests.helpers import ACKTR_TRAIN_KEYS, KFAC, BatchNormExtractor


def test_fisher_samples_the_model_distribution():
    """G of the action head is E_s[diag(p) - ppᵀ] (Categorical Fisher), G of the value head vf_fisher_coef²."""
    vf_fisher_coef = 2.0
    # lr = 0: the policy that sampled the Fisher is still the one evaluated below; decay 0: factors = this batch
    model = ACKTR(
        "MlpPolicy",
        "CartPole-v1",
        learning_rate=0.0,
        n_steps=2048,
        kfac_stats_decay=0.0,
        vf_fisher_coef=vf_fisher_coef,
        policy_kwargs=dict(net_arch=[8]),
        seed=0,
    )
    model.learn(2048)
    optimizer = model.policy.optimizer
    obs = th.as_tensor(model.rollout_buffer.observations.reshape(-1, 4))
    with th.no_grad():
        probs = model.policy.get_distribution(obs).distribution.probs
    expected_action_g = (th.diag_embed(probs) - probs[:, :, None] * probs[:, None, :]).mean(dim=0)
    action_g = optimizer.state[model.policy.action_net.weight]["G"]
    th.testing.assert_close(action_g, expected_action_g, atol=0.02, rtol=0)
    value_g = optimizer.state[model.policy.value_net.weight]["G"]
    assert value_g.item() == pytest.approx(vf_fisher_coef**2, rel=0.1)


def test_logs_kfac_keys():
    model = ACKTR("MlpPolicy", "Pendulum-v1", n_steps=16, policy_kwargs=dict(net_arch=[16]), seed=0)
    model.set_logger(configure(None, []))
    model.learn(32, log_interval=1)
    logged = model.logger.name_to_value
    for key in [*ACKTR_TRAIN_KEYS, "train/trust_region_scale", "train/std"]:
        assert key in logged, key
    assert 0 < logged["train/trust_region_scale"] <= 1
    # The quadratic model of the whole step never exceeds δ = kfac_clip / 2
    assert logged["train/quadratic_kl"] <= model.kfac_clip / 2 * (1 + 1e-6)
    assert math.isfinite(logged["train/exact_kl"]) and logged["train/exact_kl"] >= 0


def test_per_network_trust_region():
    model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=16, trust_region="per_network", seed=0)
    optimizer = model.policy.optimizer
    assert [group["name"] for group in optimizer.param_groups] == ["actor", "critic"]
    assert optimizer.trust_region == "per_group"
    critic = {id(p) for p in model.policy.value_net.parameters()} | {
        id(p) for p in model.policy.mlp_extractor.value_net.parameters()
    }
    assert {id(p) for p in optimizer.param_groups[1]["params"]} == critic
    model.set_logger(configure(None, []))
    model.learn(32, log_interval=1)
    logged = model.logger.name_to_value
    assert "train/trust_region_scale_actor" in logged and "train/trust_region_scale_critic" in logged
    # Each network fills at most its own region
    assert logged["train/quadratic_kl_actor"] <= model.kfac_clip / 2 * (1 + 1e-6)


def test_per_network_needs_disjoint_networks():
    with pytest.raises(ValueError, match="trust_region='per_network' needs an actor and a critic that share no parameter"):
        ACKTR("CnnPolicy", FakeImageEnv(screen_height=40, screen_width=40), n_steps=16, trust_region="per_network")
    # With separate features extractors it works
    model = ACKTR(
        "CnnPolicy",
        FakeImageEnv(screen_height=40, screen_width=40),
        n_steps=16,
        trust_region="per_network",
        policy_kwargs=dict(share_features_extractor=False, features_extractor_kwargs=dict(features_dim=8)),
    )
    assert len(model.policy.optimizer.param_groups) == 2


def test_shared_trunk_uses_one_group():
    model = ACKTR("CnnPolicy", FakeImageEnv(screen_height=40, screen_width=40), n_steps=16)
    assert [group["name"] for group in model.policy.optimizer.param_groups] == ["actor_critic"]


def test_optimizer_class_is_ignored_with_a_warning():
    with pytest.warns(UserWarning, match="ACKTR always optimizes with KFAC"):
        model = ACKTR("MlpPolicy", "CartPole-v1", policy_kwargs=dict(optimizer_class=th.optim.SGD))
    assert isinstance(model.policy.optimizer, KFAC)


def test_one_sample_rollouts():
    """A2C accepts n_steps * n_envs == 1: a rank-one curvature estimate, under damping and the running average."""
    model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=1)
    model.learn(20)
    optimizer = model.policy.optimizer
    assert optimizer.steps == 20 and optimizer.skipped_steps == 0 and optimizer.skipped_curvature_updates == 0
    assert all(th.isfinite(param).all() for param in model.policy.parameters())


def test_max_grad_norm_is_read_at_every_update_and_leaves_the_gradient_clipped():
    """As A2C's: ``max_grad_norm`` set after construction applies at the next update, and the gradient left in
    ``.grad`` after the update is the clipped one (K-FAC clips inside its step)."""
    model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=8, seed=0)
    model.max_grad_norm = 1e-3
    model.learn(16)
    assert model.policy.optimizer.max_grad_norm == 1e-3
    norm = th.linalg.vector_norm(th.cat([param.grad.flatten() for param in model.policy.parameters()]))
    assert float(norm) == pytest.approx(1e-3, rel=1e-4)


def test_numpy_scalars_are_accepted():
    """As A2C accepts them (e.g. values read from a numpy array or a sweep)."""
    model = ACKTR(
        "MlpPolicy",
        "CartPole-v1",
        n_steps=np.int64(8),
        kfac_update=np.int32(5),
        kfac_clip=np.float32(0.002),
        learning_rate=np.float64(0.1),
        gamma=np.float32(0.98),
    )
    model.learn(16)
    assert model.policy.optimizer.inverse_interval == 5
    assert model.policy.optimizer.param_groups[0]["kfac_clip"] == pytest.approx(0.002)


@pytest.mark.parametrize("learning_rate", [7e-4, lambda progress: 1e-4 * progress])
def test_adam_scale_learning_rate_warns(learning_rate):
    with pytest.warns(UserWarning, match=r"learning_rate=0\.000[71] is on Adam/RMSprop's scale .* Use 0\.001 to 1"):
        ACKTR("MlpPolicy", "CartPole-v1", learning_rate=learning_rate)


@pytest.mark.parametrize("learning_rate", [0.0, 0.001, 0.25])
def test_k_fac_scale_learning_rate_does_not_warn(learning_rate, recwarn):
    # 0: rl-zoo's enjoy loads models with learning_rate 0
    ACKTR("MlpPolicy", "CartPole-v1", learning_rate=learning_rate)
    assert not [w for w in recwarn if "Adam/RMSprop" in str(w.message)]


def test_schedule_returning_a_bad_learning_rate():
    message = r"learning_rate \(the schedule's value at progress_remaining=1\) must be in \[0, inf\)"
    with pytest.raises(ValueError, match=message):
        ACKTR("MlpPolicy", "CartPole-v1", n_steps=8, learning_rate=lambda progress: -progress)
    model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=8, learning_rate=lambda progress: progress - 0.5)
    message = r"learning_rate must be in \[0, inf\), but the schedule returned -0.0999.* at progress_remaining=0.400"
    with pytest.raises(ValueError, match=message):
        model.learn(80)


def test_linear_schedule_ends_at_zero_when_the_last_rollout_overshoots():
    """SB3's progress_remaining goes below 0 when total_timesteps is not a multiple of the rollout size."""
    model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=16, learning_rate=lambda progress: 0.25 * progress)
    model.set_logger(configure(None, []))
    model.learn(40)  # 3 rollouts of 16 steps: the last update runs at progress 1 - 48/40 < 0
    assert model.num_timesteps == 48
    assert model.logger.name_to_value["train/learning_rate"] == 0.0
    assert model.policy.optimizer.param_groups[0]["lr"] == 0.0


def test_unsupported_action_space_keeps_sb3_error():
    class TupleActionEnv(IdentityEnv):
        def __init__(self):
            super().__init__(dim=2)
            self.action_space = spaces.Tuple([spaces.Discrete(2), spaces.Discrete(2)])

    with pytest.raises(AssertionError, match="The algorithm only supports"):
        ACKTR("MlpPolicy", TupleActionEnv())


def kfac_state(model: ACKTR) -> dict[str, th.Tensor | int]:
    optimizer = model.policy.optimizer
    names = {id(param): name for name, param in model.policy.named_parameters()}
    return {
        f"{names[id(param)]}/{key}": value
        for group in optimizer.param_groups
        for param in group["params"]
        for key, value in optimizer.state[param].items()
    }


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_save_load_loses_nothing(tmp_path, env_id):
    model = ACKTR("MlpPolicy", env_id, n_steps=8, kfac_update=3, policy_kwargs=dict(net_arch=[16]), seed=0)
    model.learn(8 * 5)
    model.save(tmp_path / "model.zip")
    loaded = ACKTR.load(tmp_path / "model.zip", env=model.get_env())

    saved_state, loaded_state = kfac_state(model), kfac_state(loaded)
    assert saved_state.keys() == loaded_state.keys()
    assert any(key.endswith("/A_inv") for key in saved_state) and any(key.endswith("momentum_buffer") for key in saved_state)
    for key, value in saved_state.items():
        if isinstance(value, th.Tensor):
            assert loaded_state[key].dtype == value.dtype, key
            assert th.equal(loaded_state[key], value), key
        else:
            assert loaded_state[key] == value, key
    for counter in ("steps", "curvature_updates", "skipped_steps", "skipped_curvature_updates"):
        assert getattr(loaded.policy.optimizer, counter) == getattr(model.policy.optimizer, counter)

    # One train() on the same rollout buffer gives identical weights (step 5 recomputes no inverse: they were saved)
    loaded.rollout_buffer = model.rollout_buffer
    for agent in (model, loaded):
        agent.set_logger(configure(None, []))
        # Same Fisher samples (torch) and same batch order (the buffer permutes with numpy)
        th.manual_seed(1)
        np.random.seed(1)
        agent.train()
    for (name, param), loaded_param in zip(model.policy.named_parameters(), loaded.policy.parameters(), strict=True):
        assert th.equal(param, loaded_param), name


def test_load_overrides_kfac_hyperparameters(tmp_path):
    ACKTR("MlpPolicy", "CartPole-v1", n_steps=8).save(tmp_path / "model.zip")
    loaded = ACKTR.load(tmp_path / "model.zip", kfac_clip=0.01, kfac_damping=0.1, kfac_momentum=0.5, kfac_update=4)
    group = loaded.policy.optimizer.param_groups[0]
    assert (group["kfac_clip"], group["damping"], group["momentum"]) == (0.01, 0.1, 0.5)
    assert loaded.policy.optimizer.inverse_interval == 4


def test_stats_samples_subsample_the_rollout():
    """kfac_stats_samples reaches KFAC; the factors then come from that many rows of the 32-sample rollout."""
    model = ACKTR("MlpPolicy", make_vec_env("CartPole-v1", n_envs=4), n_steps=8, kfac_stats_samples=8, seed=0)
    optimizer = model.policy.optimizer
    assert optimizer.stats_samples == 8
    first_layer = optimizer.layers[0]
    recorded = []
    update = optimizer._batch_factors

    def spy(records, output_grads, scale, samples):
        recorded.extend(record.inputs.shape[0] for record in records if record.layer is first_layer)
        return update(records, output_grads, scale, samples)

    optimizer._batch_factors = spy
    model.learn(64)
    assert recorded == [8, 8]


def test_load_for_evaluation_with_zero_learning_rate(tmp_path):
    """rl-zoo's enjoy/record_video load with learning_rate 0 and lr_schedule lambda _: 0.0."""
    model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=8, seed=0)
    model.learn(16)
    model.save(tmp_path / "model.zip")
    custom_objects = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0}
    loaded = ACKTR.load(tmp_path / "model.zip", custom_objects=custom_objects)
    obs = np.zeros((1, 4), dtype=np.float32)
    assert loaded.predict(obs, deterministic=True)[0] == model.predict(obs, deterministic=True)[0]


def test_rollouts_and_predict_leave_no_hooks():
    model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=8, seed=0)
    model.learn(16)
    model.predict(gym.make("CartPole-v1").reset(seed=0)[0])
    assert all(not module._forward_hooks for module in model.policy.modules())


def test_learning_rate_override_shows_at_load(tmp_path):
    """ACKTR.load(path, learning_rate=...) shows the new rate in the optimizer at once, not after the first update."""
    ACKTR("MlpPolicy", "CartPole-v1", n_steps=8, learning_rate=0.25).save(tmp_path / "model.zip")
    model = ACKTR.load(tmp_path / "model.zip", learning_rate=0.1)
    assert [group["lr"] for group in model.policy.optimizer.param_groups] == [0.1] * len(model.policy.optimizer.param_groups)


def test_vf_fisher_coef_enters_the_critic_fisher_squared():
    """The critic's block of the Fisher is vf_fisher_coef²·JᵀJ, as the docstring says: with the same batch and the same
    sampled noise, the value head's G factor grows 4x from coef 1 to coef 2 and 0.25x to coef 0.5; the actor's
    factors do not move."""
    factors = {}
    for coef in (0.5, 1.0, 2.0):
        model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=16, vf_fisher_coef=coef, seed=0)
        optimizer = model.policy.optimizer
        obs = th.as_tensor(np.random.default_rng(0).normal(size=(16, 4)), dtype=th.float32)
        with optimizer.record_curvature():
            values, _, _ = model.policy.evaluate_actions(obs, th.zeros(16, dtype=th.long))
        th.manual_seed(1)
        optimizer.update_curvature(sum(model._fisher_losses(model.policy.action_dist, values.flatten())))
        factors[coef] = (
            optimizer.state[model.policy.value_net.weight]["G"],
            optimizer.state[model.policy.action_net.weight]["G"],
        )
    for coef in (0.5, 2.0):
        th.testing.assert_close(factors[coef][0], coef**2 * factors[1.0][0])
        th.testing.assert_close(factors[coef][1], factors[1.0][1])


@pytest.mark.parametrize("seed", [0, 1])
def test_log_std_fisher_matches_the_closed_form(seed):
    """
    The diagonal Fisher of gSDE's log_std against its closed form. The policy is N(μ, v) per action dimension j with
    v_j = Σ_i z_i² σ_ij² + ε (z: the latent features, σ = exp(log_std)), so
    F(log_std_ij) = E_s[½ (∂v_j/∂log_std_ij)² / v_j²] = E_s[2 z_i⁴ σ_ij⁴ / v_j²]. Sampling the Fisher's actions with
    gSDE's shared exploration matrix made it 21-51x too large.
    """
    th.manual_seed(seed)
    model = ACKTR("MlpPolicy", "Pendulum-v1", use_sde=True, n_steps=8, seed=seed, policy_kwargs=dict(log_std_init=-1.0))
    policy, optimizer = model.policy, model.policy.optimizer
    obs = th.rand(512, 3) * 2 - 1
    for _ in range(60):  # the diagonal fallback averages its first 100 estimates plainly
        policy.reset_noise(1)
        with optimizer.record_curvature():
            values, _, _ = policy.evaluate_actions(obs, th.zeros(512, 1))
        optimizer.update_curvature(sum(model._fisher_losses(policy.action_dist, values.flatten())))
    estimate = optimizer.state[policy.log_std]["fisher_diag"]

    with th.no_grad():
        latent = policy.mlp_extractor.forward_actor(policy.extract_features(obs))
        sigma = policy.action_dist.get_std(policy.log_std)
        variance = latent**2 @ sigma**2 + policy.action_dist.epsilon
        closed_form = (2 * latent[:, :, None] ** 4 * sigma[None] ** 4 / variance[:, None, :] ** 2).mean(dim=0)
    ratio = (estimate / closed_form).mean().item()
    assert 0.8 < ratio < 1.25, ratio


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_batch_norm_is_trained_by_the_diagonal_fallback(env_id):
    """
    The BatchNorm affine parameters get a diagonal Fisher and K-FAC steps (none skipped); train() leaves the policy in
    training mode and predict() switches it to eval mode, as A2C.
    """
    kwargs = dict(net_arch=[16, 16], features_extractor_class=BatchNormExtractor)
    model = ACKTR("MlpPolicy", env_id, policy_kwargs=kwargs, seed=1, n_steps=32)
    optimizer, batch_norm = model.policy.optimizer, model.policy.features_extractor.batch_norm
    assert {id(batch_norm.weight), id(batch_norm.bias)} <= {id(param) for param in optimizer.fallback_params}
    model.learn(32 * 3)
    assert (optimizer.steps, optimizer.skipped_steps, optimizer.skipped_curvature_updates) == (3, 0, 0)
    assert "fisher_diag" in optimizer.state[batch_norm.weight]
    assert all(th.isfinite(param).all() for param in model.policy.parameters())
    assert model.policy.training
    model.predict(model.get_env().reset())
    assert not model.policy.training
