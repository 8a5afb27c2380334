"""
Damped inverses of the Kronecker factors and the preconditioned gradient.

Two modes:

* ``"cholesky"`` (default): factored Tikhonov damping (Martens & Grosse 2015, sec. 6.3; ACKTR paper sec. 3.1),
  ``ΔW = (G + √λ/π I)⁻¹ ∇W (A + π√λ I)⁻¹`` with ``π = √((tr A / dim A) / (tr G / dim G))``,
  both inverses by Cholesky.
* ``"eigen"``: the eigen-basis form of OpenAI baselines / ikostrikov, where λ is added to the products of the
  factors' eigenvalues: ``ΔW = Q_G [(Q_Gᵀ ∇W Q_A) / (d_G d_Aᵀ + λ)] Q_Aᵀ``, i.e. exactly ``(A ⊗ G + λI)⁻¹ vec(∇W)``.
"""

import warnings

import torch as th

from sb3_acktr.kfac.factors import BIAS_APART_FROM_WIDTH

#: How many times a failed Cholesky factorisation is retried, each time with 10x more damping
CHOLESKY_RETRIES = 4


def damping_pi(a_factor: th.Tensor, g_factor: th.Tensor) -> float:
    """
    π of factored Tikhonov damping: ``√((tr A / dim A) / (tr G / dim G))`` (Martens & Grosse 2015, eq. 25).

    :param a_factor: The A factor
    :param g_factor: The G factor
    :return: π, or 1.0 when either trace is not positive and finite (π is then meaningless)
    """
    a_mean = th.trace(a_factor).item() / a_factor.shape[0]
    g_mean = th.trace(g_factor).item() / g_factor.shape[0]
    if not (a_mean > 0 and g_mean > 0) or a_mean == float("inf") or g_mean == float("inf"):
        return 1.0
    return (a_mean / g_mean) ** 0.5


def damped_cholesky_inverse(factor: th.Tensor, damping: float, name: str = "factor") -> th.Tensor:
    """
    ``(factor + damping·I)⁻¹`` by Cholesky.

    A failing factorisation is retried in float64, then with 10x more damping each time
    (:data:`CHOLESKY_RETRIES` times) with a warning, rather than crashing.

    :param factor: Symmetric positive semi-definite matrix
    :param damping: Added to the diagonal, > 0
    :param name: Name used in warnings and errors
    :return: The inverse, in the dtype of ``factor``
    :raises RuntimeError: If every retry failed (the factor holds NaN or inf)
    """
    eye = th.eye(factor.shape[0], dtype=factor.dtype, device=factor.device)
    chol, info = th.linalg.cholesky_ex(factor + damping * eye)
    if info.item() == 0:
        return th.cholesky_inverse(chol)
    factor64, eye64 = factor.double(), eye.double()
    for retry in range(CHOLESKY_RETRIES + 1):
        retry_damping = damping * 10**retry
        chol, info = th.linalg.cholesky_ex(factor64 + retry_damping * eye64)
        if info.item() == 0:
            if retry > 0:
                warnings.warn(
                    f"Cholesky of the K-FAC {name} failed with damping {damping:g}; "
                    f"succeeded in float64 with damping {retry_damping:g}. Consider a larger `damping`.",
                    RuntimeWarning,
                )
            return th.cholesky_inverse(chol).to(factor.dtype)
    raise RuntimeError(
        f"Cholesky of the K-FAC {name} failed even with damping {retry_damping:g} in float64: "
        "the factor is not finite. Check the inputs and the Fisher loss for NaN/inf."
    )


def cholesky_inverses(a_factor: th.Tensor, g_factor: th.Tensor, damping: float) -> tuple[th.Tensor, th.Tensor]:
    """
    Factored Tikhonov damped inverses ``((A + π√λ I)⁻¹, (G + √λ/π I)⁻¹)`` (ACKTR paper sec. 3.1).

    :param a_factor: The A factor
    :param g_factor: The G factor
    :param damping: λ
    :return: ``(A_inv, G_inv)``
    """
    pi = damping_pi(a_factor, g_factor)
    sqrt_damping = damping**0.5
    a_inv = damped_cholesky_inverse(a_factor, pi * sqrt_damping, name="A factor")
    g_inv = damped_cholesky_inverse(g_factor, sqrt_damping / pi, name="G factor")
    return a_inv, g_inv


def eigen_decomposition(factor: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """
    Eigen-decomposition of a symmetric factor, negative round-off eigenvalues clamped to 0.

    :param factor: Symmetric positive semi-definite matrix
    :return: ``(eigenvalues, eigenvectors)``
    :raises RuntimeError: If ``eigh`` fails in float64 too
    """
    try:
        values, vectors = th.linalg.eigh(factor)
    except RuntimeError:
        # eigh may fail to converge on ill-conditioned float32 input
        values, vectors = th.linalg.eigh(factor.double())
        values, vectors = values.to(factor.dtype), vectors.to(factor.dtype)
    return values.clamp(min=0), vectors


def precondition_cholesky(grad: th.Tensor, a_inv: th.Tensor, g_inv: th.Tensor, bias: bool = False) -> th.Tensor:
    """
    ``G_inv [∇W, ∇b] A_inv`` (the preconditioned gradient of the damped ``A ⊗ G``).

    With a bias column, ``A_inv = [[P, q], [qᵀ, r]]`` is applied by blocks, ``[X P + x_b qᵀ, X q + x_b r]`` for
    ``[X, x_b] = G_inv [∇W, ∇b]``: the large product then has the layer's own width ``in``, not ``in + 1``
    (an odd width is much slower: docs/benchmark.md, "The wide linear layer"), from
    :data:`~sb3_acktr.kfac.factors.BIAS_APART_FROM_WIDTH` on.

    :param grad: Gradient matrix of shape ``(out, in [+ 1])``
    :param a_inv: Damped inverse of A
    :param g_inv: Damped inverse of G
    :param bias: Whether the last column of ``grad`` (and of A) is the bias's
    :return: The preconditioned gradient, same shape as ``grad``
    """
    left = g_inv @ grad
    if not bias or a_inv.shape[0] <= BIAS_APART_FROM_WIDTH:
        return left @ a_inv
    dim = a_inv.shape[0] - 1
    result = th.empty_like(left)
    th.addmm(th.outer(left[:, dim], a_inv[dim, :dim]), left[:, :dim], a_inv[:dim, :dim], out=result[:, :dim])
    th.mv(left, a_inv[:, dim], out=result[:, dim])
    return result


def precondition_eigen(
    grad: th.Tensor, a_eig: tuple[th.Tensor, th.Tensor], g_eig: tuple[th.Tensor, th.Tensor], damping: float
) -> th.Tensor:
    """
    ``Q_G [(Q_Gᵀ ∇ Q_A) / (d_G d_Aᵀ + λ)] Q_Aᵀ`` = ``(A ⊗ G + λI)⁻¹ vec(∇)`` (OpenAI baselines' damping).

    :param grad: Gradient matrix of shape ``(out, in [+ 1])``
    :param a_eig: ``(d_A, Q_A)``, eigenvalues and eigenvectors of A
    :param g_eig: ``(d_G, Q_G)``, eigenvalues and eigenvectors of G
    :param damping: λ
    :return: The preconditioned gradient, same shape as ``grad``
    """
    d_a, q_a = a_eig
    d_g, q_g = g_eig
    rotated = q_g.t() @ grad @ q_a
    return q_g @ (rotated / (th.outer(d_g, d_a) + damping)) @ q_a.t()
