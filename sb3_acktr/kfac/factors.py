"""
Kronecker factors of the Fisher for the layers K-FAC covers.

Conventions (written once here, tested in ``tests/kfac/test_factors.py``):

* A weight ``W`` of shape ``(out, in)`` (a ``Conv2d`` weight is viewed as ``(out, C·kh·kw)``) is
  flattened row-major and the bias, if any, is appended as an extra input column: ``[W, b]``.
* ``ā`` is the layer input with a 1 appended (homogeneous coordinate), ``g`` the *per-sample* gradient of
  the Fisher loss with respect to the layer's output (pre-activation). The Fisher loss is assumed to be a
  mean over the batch (``loss_reduction="mean"``), so ``g = N · grad_output``; with ``"sum"``, ``g = grad_output``.
* ``nn.Linear`` (Martens & Grosse 2015, eq. 1): ``A = (1/N) Σ_n ā_n ā_nᵀ`` and ``G = (1/N) Σ_n g_n g_nᵀ`` over the
  N samples. An input with extra leading dimensions (``N × S × features``) applies the weight at S positions per
  sample, as a convolution does, and gets the expand form below: ``A = (1/N) Σ_n Σ_s ā ā ᵀ``,
  ``G = (1/(N·S)) Σ_n Σ_s g gᵀ``, the factors of the equivalent 1×1 ``Conv2d``.
* ``nn.Conv2d`` applies one weight at T output positions (weight sharing). Two forms (Eschenhagen et al. 2023,
  "Kronecker-Factored Approximate Curvature for Modern Neural Network Architectures", sec. 3):

  - ``"expand"`` (Grosse & Martens 2016, KFC, eqs. 20-21; Eschenhagen et al. eq. 7): positions are extra samples,
    ``A = Ω = (1/N) Σ_n Σ_t ā_{n,t} ā_{n,t}ᵀ`` (ā_{n,t}: the input patch at position t) and
    ``G = Γ = (1/(N·T)) Σ_n Σ_t g_{n,t} g_{n,t}ᵀ``. Cost ∝ N·T·d².
  - ``"reduce"`` (Eschenhagen et al. eq. 9): positions are aggregated per sample before the outer product,
    ``A = (1/N) Σ_n â_n â_nᵀ`` with the mean patch ``â_n = (1/T) Σ_t ā_{n,t}`` (its bias coordinate stays 1) and
    ``G = (1/N) Σ_n ĝ_n ĝ_nᵀ`` with the summed gradient ``ĝ_n = Σ_t g_{n,t}``, i.e. ``(1/(N·T²)) Σ_n (Σ_t ā)(Σ_t ā)ᵀ``
    as the paper writes A. Cost ∝ N·T·d (the sum) + N·d².

  Both coincide when T = 1. ``"reduce"`` is exact (``A ⊗ G`` equals the per-sample gradient's outer product) for a
  single sample of a layer followed by a linear map and a mean over positions; ``"expand"`` when the positions are
  independent outputs.

A and G are means of products ``rowsᵀ rows``, symmetric up to round-off; they are not symmetrised (a transposed copy
of NatureCNN's 3137-wide A costs half as much as computing it), since their consumers read one triangle: Cholesky and
``eigh`` the lower one, π the diagonal.

With these conventions ``A ⊗ G`` approximates the per-sample Fisher of ``[W, b]``, independently of N and T,
so ``damping`` and ``kfac_clip`` keep their meaning when the batch or the image size changes.
"""

import torch as th
import torch.nn.functional as F
from torch import nn

#: Layer types that get Kronecker factors. Every other parameter uses the diagonal fallback.
SUPPORTED_MODULES = (nn.Linear, nn.Conv2d)
#: The forms of the factors of a weight-sharing layer (``nn.Conv2d``), see the module docstring
WEIGHT_SHARING_FORMS = ("expand", "reduce")
#: Layer types to which the weight-sharing form applies: a convolution shares its weight across output positions, an
#: LSTM layer across the steps of a sequence (``sb3_acktr.kfac.recurrent``)
WEIGHT_SHARING_MODULES = (nn.Conv2d, nn.LSTM)


def append_bias_ones(x: th.Tensor) -> th.Tensor:
    """
    Append a column of ones to a 2D tensor (homogeneous coordinate for the bias).

    :param x: Tensor of shape ``(rows, features)``
    :return: Tensor of shape ``(rows, features + 1)``
    """
    return th.cat([x, x.new_ones(x.shape[0], 1)], dim=1)


def conv2d_padded_input(module: nn.Conv2d, x: th.Tensor) -> tuple[th.Tensor, int | tuple[int, ...]]:
    """
    The input padded as ``nn.Conv2d`` pads it when the padding is a string or its mode is not ``"zeros"``.

    :param module: The convolution
    :param x: Its input, shape ``(N, C, H, W)``
    :return: ``(input, padding still to apply with zeros)``
    """
    if isinstance(module.padding, str) or module.padding_mode != "zeros":
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        return F.pad(x, module._reversed_padding_repeated_twice, mode=mode), 0
    return x, module.padding


def conv2d_patches(module: nn.Conv2d, x: th.Tensor) -> th.Tensor:
    """
    Extract the input patches a ``Conv2d`` layer multiplies with its weight.

    Handles stride, dilation, numeric or string (``"same"``/``"valid"``) padding and every ``padding_mode``.

    :param module: The convolution (``groups=1``)
    :param x: Its input, shape ``(N, C, H, W)``
    :return: Patches of shape ``(N, T, C·kh·kw)``, T the number of output positions
    """
    x, padding = conv2d_padded_input(module, x)
    patches = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=padding, stride=module.stride)
    # (N, C·kh·kw, T) -> (N, T, C·kh·kw)
    return patches.transpose(1, 2)


def conv2d_mean_patches(module: nn.Conv2d, x: th.Tensor) -> th.Tensor:
    """
    The mean over output positions of the patches of :func:`conv2d_patches`, without extracting them.

    Entry ``(c, i, j)`` of a patch at output position ``(p, q)`` is ``x[c, s_h·p + d_h·i, s_w·q + d_w·j]`` (padded
    input, stride s, dilation d): its sum over positions is a sum over a strided grid of rows, then of columns.
    Reads ``N·C·kh·W·Oh`` elements instead of writing the ``N·T·C·kh·kw`` patches.

    :param module: The convolution (``groups=1``)
    :param x: Its input, shape ``(N, C, H, W)``
    :return: Mean patches of shape ``(N, C·kh·kw)``
    """
    x, padding = conv2d_padded_input(module, x)
    if padding != 0:
        pad_h, pad_w = (padding, padding) if isinstance(padding, int) else padding
        x = F.pad(x, (pad_w, pad_w, pad_h, pad_h))
    (kernel_h, kernel_w), (stride_h, stride_w), (dilation_h, dilation_w) = (
        module.kernel_size,
        module.stride,
        module.dilation,
    )
    height, width = x.shape[-2:]
    out_h = (height - dilation_h * (kernel_h - 1) - 1) // stride_h + 1
    out_w = (width - dilation_w * (kernel_w - 1) - 1) // stride_w + 1
    # Windows of out_h strided rows starting at d_h·i: (N, C, windows, W, span) -> (N, C, kh, W)
    rows = x.unfold(2, stride_h * (out_h - 1) + 1, dilation_h)[:, :, :kernel_h, :, ::stride_h].sum(dim=-1)
    # The same over columns: (N, C, kh, windows, span) -> (N, C, kh, kw)
    sums = rows.unfold(3, stride_w * (out_w - 1) + 1, dilation_w)[:, :, :, :kernel_w, ::stride_w].sum(dim=-1)
    return sums.reshape(x.shape[0], -1) / (out_h * out_w)


def layer_input_rows(module: nn.Module, x: th.Tensor) -> tuple[th.Tensor, int]:
    """
    Rows ``ā`` (input with bias column if the layer has a bias) whose second moment is the A factor.

    :param module: ``nn.Linear`` or ``nn.Conv2d``
    :param x: The layer's input
    :return: ``(rows, normaliser)``: A = rowsᵀ rows / normaliser
    """
    if isinstance(module, nn.Conv2d):
        patches = conv2d_patches(module, x)
        n_samples = patches.shape[0]
        rows = patches.reshape(-1, patches.shape[-1])
    else:
        rows = x.reshape(-1, x.shape[-1])
        n_samples = linear_samples(x)
    if module.bias is not None:
        rows = append_bias_ones(rows)
    return rows, n_samples


def linear_samples(x: th.Tensor) -> int:
    """
    The number of samples in an ``nn.Linear`` input: its first dimension; further leading dimensions are positions
    sharing the weight (see the module docstring), and an unbatched vector is one sample.

    :param x: The layer's input
    :return: N
    """
    return x.shape[0] if x.dim() >= 2 else 1


#: The width from which the bias coordinate is handled apart from the weights' columns (A's border from row sums,
#: A⁻¹ applied by blocks): a product of odd width ``d + 1`` was measured slower than one of width ``d`` on wide layers
#: (docs/benchmark.md, "The wide linear layer"). Below it, one product with the column of ones takes fewer operations,
#: which is what a small layer's time is made of (docs/benchmark.md, "How to read it", CartPole).
BIAS_APART_FROM_WIDTH = 128


def bias_bordered(total: th.Tensor, sums: th.Tensor, n_rows: int) -> th.Tensor:
    """
    ``Σ ā āᵀ`` for rows ``ā = [a, 1]`` from ``Σ a aᵀ``, ``Σ a`` and the row count, without the column of ones:
    the product of ``d``-wide rows is cheaper than that of ``d + 1`` (an odd width halves BLAS's speed at d = 1024).

    :param total: ``Σ a aᵀ``, shape ``(d, d)``
    :param sums: ``Σ a``, shape ``(d,)``
    :param n_rows: The number of rows
    :return: The ``(d + 1, d + 1)`` matrix
    """
    dim = total.shape[0]
    bordered = total.new_empty(dim + 1, dim + 1)
    bordered[:dim, :dim] = total
    bordered[:dim, dim] = sums
    bordered[dim, :dim] = sums
    bordered[dim, dim] = n_rows
    return bordered


def input_second_moment(
    module: nn.Module, x: th.Tensor, chunk_size: int = 64, weight_sharing: str = "expand"
) -> tuple[th.Tensor, int]:
    """
    ``Σ ā āᵀ`` over the rows of :func:`layer_input_rows`, and its normaliser (A = total / normaliser).

    The bias row and column (the homogeneous coordinate) come from the row sums and count
    (:func:`bias_bordered`). For ``nn.Conv2d`` the ``(N·T, C·kh·kw)`` patch matrix is never materialised: patches are
    unfolded ``chunk_size`` samples at a time. With ``weight_sharing="reduce"`` the rows are the mean patches ``â_n``
    of each sample (:func:`conv2d_mean_patches`, one row per sample).

    :param module: ``nn.Linear`` or ``nn.Conv2d``
    :param x: The layer's input
    :param chunk_size: Samples unfolded at once (``nn.Conv2d`` only)
    :param weight_sharing: ``"expand"`` or ``"reduce"`` (``nn.Conv2d`` only, see the module docstring)
    :return: ``(total, normaliser)``
    """
    if isinstance(module, nn.Conv2d) and weight_sharing == "expand":
        return expanded_patch_moment(module, x, chunk_size)
    # One row per sample (reduce: its mean patch), or per input row of a Linear
    rows = conv2d_mean_patches(module, x) if isinstance(module, nn.Conv2d) else x.reshape(-1, x.shape[-1])
    n_samples = rows.shape[0] if isinstance(module, nn.Conv2d) else linear_samples(x)
    return row_second_moment(rows, module.bias is not None), n_samples


def row_second_moment(rows: th.Tensor, bias: bool) -> th.Tensor:
    """
    ``Σ ā āᵀ`` over rows ``ā = [a, 1]`` (``[a]`` without a bias); from :data:`BIAS_APART_FROM_WIDTH` on, the column of
    ones comes from :func:`bias_bordered`.

    :param rows: The rows ``a``, shape ``(rows, d)``
    :param bias: Whether to append the homogeneous coordinate
    :return: The ``(d [+ 1], d [+ 1])`` sum
    """
    if not bias:
        return rows.t() @ rows
    if rows.shape[1] < BIAS_APART_FROM_WIDTH:
        bordered = F.pad(rows, (0, 1), value=1.0)
        return bordered.t() @ bordered
    return bias_bordered(rows.t() @ rows, rows.sum(dim=0), rows.shape[0])


def expanded_patch_moment(module: nn.Conv2d, x: th.Tensor, chunk_size: int = 64) -> tuple[th.Tensor, int]:
    """
    :func:`input_second_moment` of a convolution in the expand form: ``Σ_n Σ_t ā_{n,t} ā_{n,t}ᵀ`` over every patch,
    unfolded ``chunk_size`` samples at a time, and the number of samples N.

    :param module: The convolution
    :param x: Its input
    :param chunk_size: Samples unfolded at once
    :return: ``(total, N)``
    """
    total = sums = None
    n_rows = 0
    for part in x.split(chunk_size):
        patches = conv2d_patches(module, part)
        flat = patches.reshape(-1, patches.shape[-1])
        total = flat.t() @ flat if total is None else total.addmm_(flat.t(), flat)
        sums = flat.sum(dim=0) if sums is None else sums.add_(flat.sum(dim=0))
        n_rows += flat.shape[0]
    assert total is not None and sums is not None, "empty input"
    if module.bias is None:
        return total, x.shape[0]
    return bias_bordered(total, sums, n_rows), x.shape[0]


def layer_output_grad_rows(
    module: nn.Module, grad_output: th.Tensor, batch_size: int, weight_sharing: str = "expand"
) -> tuple[th.Tensor, int]:
    """
    Rows ``g`` (per-sample output gradients) whose second moment is the G factor.

    :param module: ``nn.Linear`` or ``nn.Conv2d``
    :param grad_output: Gradient of the Fisher loss w.r.t. the layer's output
    :param batch_size: Multiplier turning ``grad_output`` into per-sample gradients
        (the batch size for a mean-reduced loss, 1 for a sum)
    :param weight_sharing: ``"expand"`` or ``"reduce"`` (``nn.Conv2d`` only, see the module docstring)
    :return: ``(rows, normaliser)``: G = rowsᵀ rows / normaliser (the rows may be a view of ``grad_output``)
    """
    if isinstance(module, nn.Conv2d) and weight_sharing == "reduce":
        # (N, out, Oh, Ow) -> (N, out): ĝ_n = Σ_t g_{n,t}
        rows = grad_output.sum(dim=(2, 3))
    elif isinstance(module, nn.Conv2d):
        # (N, out, Oh, Ow) -> (N·T, out); Γ is averaged over samples and positions
        rows = grad_output.flatten(2).transpose(1, 2).reshape(-1, grad_output.shape[1])
    else:
        rows = grad_output.reshape(-1, grad_output.shape[-1])
    # No copy for a multiplier of 1 (a sum-reduced loss; KFAC applies the batch size with the normalisation)
    return (rows if batch_size == 1 else rows * batch_size), rows.shape[0]
