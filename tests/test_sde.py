"""
Ported from Stable-Baselines3's tests/test_sde.py: generalized State-Dependent Exploration (gSDE) with ACKTR in
A2C's place (the gSDE ``log_std`` matrix is not a Linear/Conv2d weight: K-FAC preconditions it with its diagonal
Fisher fallback).
"""

import pytest
import torch as th
from torch.distributions import Normal

from sb3_acktr import ACKTR


def test_state_dependent_exploration_grad():
    """
    Check that the gradient correspond to the expected one
    """
    n_states = 2
    state_dim = 3
    action_dim = 10
    sigma_hat = th.ones(state_dim, action_dim, requires_grad=True)
    # Reduce the number of parameters
    # sigma_ = th.ones(state_dim, action_dim) * sigma_
    # weights_dist = Normal(th.zeros_like(log_sigma), th.exp(log_sigma))
    th.manual_seed(2)
    weights_dist = Normal(th.zeros_like(sigma_hat), sigma_hat)
    weights = weights_dist.rsample()

    state = th.rand(n_states, state_dim)
    mu = th.ones(action_dim)
    noise = th.mm(state, weights)

    action = mu + noise

    variance = th.mm(state**2, sigma_hat**2)
    action_dist = Normal(mu, th.sqrt(variance))

    # Sum over the action dimension because we assume they are independent
    loss = action_dist.log_prob(action.detach()).sum(dim=-1).mean()
    loss.backward()

    # From Rueckstiess paper: check that the computed gradient
    # correspond to the analytical form
    grad = th.zeros_like(sigma_hat)
    for j in range(action_dim):
        # sigma_hat is the std of the gaussian distribution of the noise matrix weights
        # sigma_j = sum_j(state_i **2 * sigma_hat_ij ** 2)
        # sigma_j is the standard deviation of the policy gaussian distribution
        sigma_j = th.sqrt(variance[:, j])
        for i in range(state_dim):
            # Derivative of the log probability of the jth component of the action
            # w.r.t. the standard deviation sigma_j
            d_log_policy_j = (noise[:, j] ** 2 - sigma_j**2) / sigma_j**3
            # Derivative of sigma_j w.r.t. sigma_hat_ij
            d_log_sigma_j = (state[:, i] ** 2 * sigma_hat[i, j]) / sigma_j
            # Chain rule, average over the minibatch
            grad[i, j] = (d_log_policy_j * d_log_sigma_j).mean()

    # sigma.grad should be equal to grad
    assert sigma_hat.grad.allclose(grad)


def test_sde_check():
    with pytest.raises(ValueError):
        ACKTR("MlpPolicy", "CartPole-v1", use_sde=True)


@pytest.mark.parametrize("use_expln", [False, True])
def test_state_dependent_noise(use_expln):
    kwargs = {"n_steps": 64}
    model = ACKTR(
        "MlpPolicy",
        "Pendulum-v1",
        use_sde=True,
        seed=None,
        verbose=1,
        policy_kwargs=dict(log_std_init=-2, use_expln=use_expln, net_arch=[64]),
        **kwargs,
    )
    model.learn(total_timesteps=255)
    model.policy.reset_noise()


@pytest.mark.parametrize("sde_sample_freq", [-1, 4])
@pytest.mark.parametrize("full_std", [True, False])
def test_sde_log_std_is_trained(sde_sample_freq, full_std):
    """The gSDE log_std (diagonal fallback of K-FAC) and the policy layers move; no K-FAC step is skipped."""
    model = ACKTR(
        "MlpPolicy",
        "Pendulum-v1",
        use_sde=True,
        sde_sample_freq=sde_sample_freq,
        n_steps=16,
        seed=0,
        policy_kwargs=dict(log_std_init=-2, full_std=full_std, net_arch=[32]),
    )
    optimizer = model.policy.optimizer
    log_std = model.policy.log_std
    # log_std is not a Linear/Conv2d parameter: it is preconditioned by the diagonal fallback
    assert any(param is log_std for param in optimizer.fallback_params)
    log_std_before = log_std.detach().clone()
    action_net_before = model.policy.action_net.weight.detach().clone()

    model.learn(16 * 4)

    assert optimizer.steps == 4
    assert optimizer.skipped_steps == 0
    assert optimizer.skipped_curvature_updates == 0
    assert "fisher_diag" in optimizer.state[log_std]
    assert th.isfinite(log_std).all()
    assert not th.allclose(log_std_before, log_std)
    assert not th.allclose(action_net_before, model.policy.action_net.weight)
