"""What ACKTR logs beyond A2C's keys: Fisher losses, trust-region scales, the quadratic and the exact KL, counters."""

import copy
import math

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import (
    CategoricalDistribution,
    DiagGaussianDistribution,
    MultiCategoricalDistribution,
    kl_divergence,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnvMultiBinary, IdentityEnvMultiDiscrete

from sb3_acktr import ACKTR
from sb3_acktr.acktr.acktr import EXACT_KL_SAMPLES, distribution_rows
from tests.helpers import ACKTR_TRAIN_KEYS, RecordingLogger, actor_kl_ratios, exact_kl_with_and_without_the_row_path

# The keys ACKTR.train() logs with the default joint trust region; train/n_updates is excluded from TensorBoard
TENSORBOARD_KEYS = [key for key in ACKTR_TRAIN_KEYS if key != "train/n_updates"] + ["train/trust_region_scale"]


@pytest.mark.parametrize("trust_region", ["joint", "per_network"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_acktr_logged_keys(trust_region, env_id):
    """ACKTR logs its losses, Fisher losses, trust-region scale(s), KL figures and K-FAC counters."""
    logger = RecordingLogger()
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

    logger = RecordingLogger()
    n_steps, n_updates = 16, 4
    model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=n_steps, kfac_stats_update=2)
    model.set_logger(logger)
    model.learn(n_steps * n_updates)
    n_fisher_logs = sum(1 for key, _ in logger.history if key == "train/pg_fisher_loss")
    n_policy_logs = sum(1 for key, _ in logger.history if key == "train/policy_loss")
    assert n_policy_logs == n_updates
    assert n_fisher_logs == n_updates // 2


class Snapshot(BaseCallback):
    """The observations of the last rollout and the policy's distribution on them, before its update."""

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        assert isinstance(self.model, ACKTR)
        buffer = self.model.rollout_buffer
        self.observations = th.as_tensor(buffer.observations).reshape(-1, *buffer.obs_shape)
        with th.no_grad():
            # A shallow copy: the next forward pass replaces the policy's action_dist in place
            self.before = copy.copy(self.model.policy.get_distribution(self.observations))


ENVS_BY_DISTRIBUTION = {
    "categorical": (lambda: make_vec_env("CartPole-v1", n_envs=4, seed=0), {}),
    "diagonal Gaussian": (lambda: make_vec_env("Pendulum-v1", n_envs=4, seed=0), {}),
    "gSDE": (lambda: make_vec_env("Pendulum-v1", n_envs=4, seed=0), dict(use_sde=True)),
    "multi-categorical": (lambda: make_vec_env(lambda: IdentityEnvMultiDiscrete(3), n_envs=4, seed=0), {}),
    "Bernoulli": (lambda: make_vec_env(lambda: IdentityEnvMultiBinary(3), n_envs=4, seed=0), {}),
}


@pytest.mark.parametrize("distribution", list(ENVS_BY_DISTRIBUTION))
def test_exact_kl_at_every_update_matches_an_independent_computation(distribution):
    """A batch of at most EXACT_KL_SAMPLES: train/exact_kl is the mean KL(π_before || π_after) over all of it."""
    make_env, kwargs = ENVS_BY_DISTRIBUTION[distribution]
    n_steps, n_envs = 8, 4
    assert n_steps * n_envs <= EXACT_KL_SAMPLES
    # A step large enough for a KL far above float32's rounding of the log-probabilities (~1e-9)
    model = ACKTR("MlpPolicy", make_env(), n_steps=n_steps, seed=0, learning_rate=1.0, kfac_clip=0.01, **kwargs)
    logger = RecordingLogger()
    model.set_logger(logger)
    snapshot = Snapshot()
    model.learn(3 * n_steps * n_envs, callback=snapshot)
    with th.no_grad():
        after = model.policy.get_distribution(snapshot.observations)
    sample_kl = kl_divergence(snapshot.before, after)
    expected = (sample_kl.sum(dim=1) if sample_kl.dim() > 1 else sample_kl).mean().item()
    assert expected > 1e-6
    assert logger.name_to_value["train/exact_kl"] == pytest.approx(expected, rel=1e-3)


def test_exact_kl_on_a_fixed_subsample_at_every_update():
    """A larger batch: the policy on EXACT_KL_SAMPLES rows, before the step from the training forward pass (the policy's
    mode does not matter here), after it from one forward pass per update."""
    n_steps, n_envs, n_updates = 40, 4, 3
    model = ACKTR("MlpPolicy", make_vec_env("CartPole-v1", n_envs=n_envs, seed=0), n_steps=n_steps, seed=0)
    logger = RecordingLogger()
    model.set_logger(logger)
    get_distribution = model.policy.get_distribution
    calls = []
    model.policy.get_distribution = lambda obs: calls.append(len(obs)) or get_distribution(obs)
    model.learn(n_steps * n_envs * n_updates, log_interval=1)
    assert calls == [EXACT_KL_SAMPLES] * n_updates
    # Every dump shows it (SB3 dumps before train(): the first dump comes before any update)
    assert [dump.get("train/exact_kl", -1.0) >= 0 for dump in logger.dumps] == [False, True, True]


def test_exact_kl_on_the_same_rows_as_with_two_forward_passes():
    """The rows taken from the training forward pass are those a forward pass before the step gives (same run)."""
    histories = exact_kl_with_and_without_the_row_path(
        lambda: ACKTR(
            "MlpPolicy", make_vec_env("CartPole-v1", n_envs=4, seed=0), n_steps=40, seed=0, learning_rate=1.0, kfac_clip=0.01
        ),
        160 * 10,
    )
    assert len(histories[0]) == 10 and min(histories[0]) > 1e-7
    # Up to float32 rounding of the log-probabilities (a few 1e-9); other rows would give KLs apart by ~1e-6
    assert histories[0] == pytest.approx(histories[1], rel=1e-3, abs=2e-8)


def test_distribution_rows():
    """Rows of each torch distribution SB3's action distributions hold; None for a kind without a known parametrisation."""
    logits, loc, scale = th.randn(5, 3, requires_grad=True), th.randn(5, 2), th.rand(5, 2) + 0.1
    categorical = CategoricalDistribution(3).proba_distribution(logits)
    rows = distribution_rows(categorical, slice(1, 3))
    assert rows is not None and rows is not categorical and categorical.distribution.logits.shape == (5, 3)
    th.testing.assert_close(rows.distribution.probs, categorical.distribution.probs[1:3].detach())
    assert not rows.distribution.logits.requires_grad
    gaussian = DiagGaussianDistribution(2)
    gaussian.distribution = th.distributions.Normal(loc, scale)
    rows = distribution_rows(gaussian, slice(0, 2))
    assert rows is not None
    th.testing.assert_close(rows.distribution.loc, loc[:2])
    th.testing.assert_close(rows.distribution.scale, scale[:2])
    multi = MultiCategoricalDistribution([2, 3]).proba_distribution(th.randn(5, 5))
    rows = distribution_rows(multi, slice(0, 4))
    assert rows is not None and [part.logits.shape for part in rows.distribution] == [(4, 2), (4, 3)]
    categorical.distribution = th.distributions.Beta(th.ones(5), th.ones(5))
    assert distribution_rows(categorical, slice(0, 2)) is None


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


@pytest.mark.parametrize("seed", [0, 1])
def test_trust_region_predicts_the_early_kl_at_the_defaults(seed):
    """Issue #13's target: at ACKTR's defaults (momentum 0, so that the applied step is the one the quadratic model
    describes) the median exact / quadratic-model KL of the first 100 updates is within [0.5, 2]; without the
    factors' warm-up the policy moves farther than the model says."""
    ratios = {
        warm_up: actor_kl_ratios(
            ACKTR("MlpPolicy", "CartPole-v1", kfac_momentum=0.0, kfac_stats_warm_up=warm_up, seed=seed), 100
        )
        for warm_up in (True, False)
    }
    assert 0.5 <= float(np.median(ratios[True])) <= 2.0
    assert float(np.median(ratios[False])) > float(np.median(ratios[True]))
