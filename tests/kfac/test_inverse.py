"""Damped inverses: exact small-matrix results, π, and the Cholesky retry."""

import math

import pytest
import torch as th

from sb3_acktr.kfac.factors import BIAS_APART_FROM_WIDTH
from sb3_acktr.kfac.inverse import (
    cholesky_inverses,
    damped_cholesky_inverse,
    damping_pi,
    eigen_decomposition,
    precondition_cholesky,
    precondition_eigen,
)


def test_damping_pi():
    a_factor = th.diag(th.tensor([4.0, 2.0, 0.0]))  # tr/dim = 2
    g_factor = th.diag(th.tensor([0.5, 0.5]))  # tr/dim = 0.5
    assert damping_pi(a_factor, g_factor) == pytest.approx(2.0)
    # π is meaningless when a trace vanishes: fall back to 1
    assert damping_pi(th.zeros(2, 2), g_factor) == 1.0
    assert damping_pi(a_factor, th.full((2, 2), float("nan"))) == 1.0


def test_cholesky_inverses_exact():
    a_factor = th.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=th.float64)
    g_factor = th.tensor([[1.0]], dtype=th.float64)
    damping = 0.04
    a_inv, g_inv = cholesky_inverses(a_factor, g_factor, damping)
    pi = math.sqrt(2.0 / 1.0)
    th.testing.assert_close(a_inv, th.linalg.inv(a_factor + pi * 0.2 * th.eye(2, dtype=th.float64)))
    th.testing.assert_close(g_inv, th.tensor([[1.0 / (1.0 + 0.2 / pi)]], dtype=th.float64))


def test_cholesky_retries_with_more_damping():
    indefinite = -0.5 * th.eye(3)
    with pytest.warns(RuntimeWarning, match="succeeded in float64 with damping 1"):
        inverse = damped_cholesky_inverse(indefinite, 0.01)
    # 0.01 -> 0.1 -> 1: (-0.5 + 1)⁻¹ = 2, returned in the input dtype
    assert inverse.dtype == th.float32
    th.testing.assert_close(inverse, 2.0 * th.eye(3))


def test_cholesky_of_non_finite_factor_raises():
    with pytest.raises(RuntimeError, match="not finite"):
        damped_cholesky_inverse(th.full((2, 2), float("nan")), 0.01)


def test_eigen_preconditioning_is_the_damped_kronecker_inverse():
    th.manual_seed(0)
    a_root, g_root = th.randn(3, 3, dtype=th.float64), th.randn(2, 2, dtype=th.float64)
    a_factor, g_factor = a_root @ a_root.t(), g_root @ g_root.t()
    grad = th.randn(2, 3, dtype=th.float64)
    delta = precondition_eigen(grad, eigen_decomposition(a_factor), eigen_decomposition(g_factor), 0.1)
    expected = th.linalg.solve(th.kron(g_factor, a_factor) + 0.1 * th.eye(6, dtype=th.float64), grad.flatten())
    th.testing.assert_close(delta.flatten(), expected)


def test_eigen_decomposition_clamps_round_off():
    values, vectors = eigen_decomposition(th.tensor([[1.0, 0.0], [0.0, -1e-9]], dtype=th.float64))
    assert values.min() == 0.0
    th.testing.assert_close(vectors @ vectors.t(), th.eye(2, dtype=th.float64))


@pytest.mark.parametrize(
    "shape",
    [(3, 5), (4, 2), (1, 9), (3, BIAS_APART_FROM_WIDTH - 1), (3, BIAS_APART_FROM_WIDTH), (2, BIAS_APART_FROM_WIDTH + 7)],
)
def test_bias_blocks_give_the_same_preconditioned_gradient(shape):
    """Narrow or wide (A⁻¹ by blocks around the bias column), the result is G⁻¹ [∇W, ∇b] A⁻¹ as one product gives."""
    th.manual_seed(5)
    n_out, n_in = shape
    a_root = th.randn(n_in + 1, n_in + 1, dtype=th.float64)
    a_inv = a_root @ a_root.t()
    g_inv = th.randn(n_out, n_out, dtype=th.float64)
    grad = th.randn(n_out, n_in + 1, dtype=th.float64)
    th.testing.assert_close(precondition_cholesky(grad, a_inv, g_inv, bias=True), g_inv @ grad @ a_inv)
