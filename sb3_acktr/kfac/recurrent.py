"""
Kronecker factors for ``nn.LSTM`` (Martens, Ba & Johnson 2018, "Kronecker-factored curvature approximations for
recurrent neural networks", ICLR, sec. 3, under independence across time steps).

Layer k of an LSTM computes its gate pre-activations at every step t from one weight matrix applied to the
concatenated input ``ā_t = [x_t, h_{t-1}, 1]``::

    z_t = W_ih x_t + W_hh h_{t-1} + b_ih + b_hh = [W_ih, W_hh, b] ā_t,    b = b_ih + b_hh

(torch's gate order i, f, g, o; ``c_t = σ(f)·c_{t-1} + σ(i)·tanh(g)``, ``h_t = σ(o)·tanh(c_t)``). The weight is
shared across the steps of a sequence, as a convolution's across positions; with the steps taken as independent
(Martens et al.'s first approximation) the Fisher block of ``[W_ih, W_hh, b]`` is ``A ⊗ G`` with ``A`` the second
moment of ``ā_t`` and ``G`` that of the per-step gradient ``g_t`` of the Fisher loss with respect to ``z_t``, both
averaged over every real step: the factors of ``nn.Linear`` with the steps as rows (``sb3_acktr.kfac.factors``'s
conventions; ``A`` is normalised by the samples of the Fisher loss, so a loss averaging over sequences rather than
steps gets the expand form's ``T·Ā``). The approximation is exact for sequences of one step.

The biases enter only through their sum ``b``: its gradient is either bias's, and its step is split equally
between them, so that the sum moves by the preconditioned step.

This is the expand form of weight sharing (Eschenhagen et al. 2023), the steps as extra samples. It leaves out the
cross-time terms of each sequence's gradient ``Σ_t g_t ā_tᵀ``, which are large for an LSTM (its G at step t gathers the
gradients of every later output): on CartPoleNoVel the LSTM's Fisher along the update was 3-3.7× what the expand form
gives (medians). The reduce form (``weight_sharing="reduce"``) takes each sequence as one sample instead, with its mean input
``â_s`` (bias coordinate 1) and its summed gradient ``ĝ_s = Σ_t g_t`` over its real steps:
``A = (1/S) Σ_s â_s â_sᵀ`` over the S sequences and ``G = (1/N) Σ_s ĝ_s ĝ_sᵀ`` over the N samples of the Fisher loss, so
that ``A ⊗ G`` is ``(1/N) Σ_s (â_s ⊗ ĝ_s)(â_s ⊗ ĝ_s)ᵀ`` Kronecker-factored: exact for one sequence whose inputs are
constant, 0.69-1.00 of the LSTM's Fisher along the update on CartPoleNoVel (medians).

``nn.LSTM``'s fused kernel exposes neither ``h_{t-1}`` per step nor ``z_t``: inside ``KFAC.record_curvature()`` the
LSTM's output is replaced by that of :func:`lstm_forward`, which runs the same cell step by step with the same
parameters and exposes both (a forward hook, so rollouts and predictions keep the fused kernel).
"""

import torch as th
import torch.nn.functional as F
from torch import nn

from sb3_acktr.kfac.factors import row_second_moment

#: The forms of curvature of ``nn.LSTM`` weights: Kronecker factors (this module) or the diagonal Fisher
LSTM_CURVATURES = ("kronecker", "diagonal")


def lstm_unsupported(module: nn.LSTM) -> str | None:
    """
    Why an LSTM cannot get Kronecker factors, or None if it can.

    :param module: The LSTM
    :return: The reason, as a phrase
    """
    if module.bidirectional:
        return "it is bidirectional"
    if module.proj_size > 0:
        return f"it has projections (proj_size={module.proj_size})"
    if not all(param.requires_grad for param in module.parameters()):
        return "some of its parameters are frozen"
    if type(module).forward is not nn.LSTM.forward or "forward" in vars(module):
        return "its forward is not nn.LSTM's (the curvature pass runs nn.LSTM's cell in its place)"
    return None


def lstm_layer_parameters(module: nn.LSTM, layer: int) -> tuple[list[th.Tensor], list[th.Tensor]]:
    """
    The weights (``[W_ih, W_hh]``, whose columns are side by side in the layer's matrix) and biases of one layer.

    :param module: The LSTM
    :param layer: The layer's index
    :return: ``(weights, biases)``, biases empty if the LSTM has none
    """
    weights = [getattr(module, f"weight_ih_l{layer}"), getattr(module, f"weight_hh_l{layer}")]
    biases = [getattr(module, f"bias_ih_l{layer}"), getattr(module, f"bias_hh_l{layer}")] if module.bias else []
    return weights, biases


def lstm_forward(
    module: nn.LSTM, inputs: th.Tensor, hx: tuple[th.Tensor, th.Tensor] | None = None
) -> tuple[th.Tensor, tuple[th.Tensor, th.Tensor], list[tuple[th.Tensor, th.Tensor]]]:
    """
    ``module(inputs, hx)`` computed step by step, with what the Kronecker factors need of each layer.

    Every layer's gate pre-activations get a zero-valued ``probe`` added, a leaf requiring grad: the gradient of a
    loss with respect to it is the gradient with respect to ``z_t``. Dropout between layers is applied as
    ``nn.LSTM`` applies it (with other random masks).

    :param module: A unidirectional LSTM without projections
    :param inputs: The input, ``(T, B, input_size)`` (``(B, T, input_size)`` if ``batch_first``) or unbatched
        ``(T, input_size)``
    :param hx: The initial hidden and cell states, each ``(num_layers, B, hidden_size)`` (unbatched:
        ``(num_layers, hidden_size)``); None for zeros
    :return: ``(output, (h_n, c_n), layers)`` as ``nn.LSTM`` returns them, with for each layer ``(rows, probe)``:
        the inputs ``[x_t, h_{t-1}]`` (detached, ``(T, B, input + hidden)``) and the probe (``(T, B, 4·hidden)``)
    """
    if isinstance(inputs, nn.utils.rnn.PackedSequence):
        raise TypeError(
            "KFAC's Kronecker factors for nn.LSTM need a padded tensor input, not a PackedSequence. Pass the padded "
            "sequences (with a sample_mask for update_curvature), or use lstm_curvature='diagonal'."
        )
    unbatched = inputs.dim() == 2
    if unbatched:
        inputs = inputs.unsqueeze(1)
        hx = None if hx is None else (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
    elif module.batch_first:
        inputs = inputs.transpose(0, 1)
    batch, hidden_size = inputs.shape[1], module.hidden_size
    if hx is None:
        zeros = inputs.new_zeros(module.num_layers, batch, hidden_size)
        hx = (zeros, zeros)
    layer_input, final_h, final_c, layers = inputs, [], [], []
    for layer in range(module.num_layers):
        if layer > 0 and module.dropout > 0:
            layer_input = F.dropout(layer_input, module.dropout, module.training)
        (weight_ih, weight_hh), biases = lstm_layer_parameters(module, layer)
        bias_ih, bias_hh = biases if biases else (None, None)
        probe = layer_input.new_zeros(*layer_input.shape[:2], 4 * hidden_size, requires_grad=True)
        # The input part of every step at once, then the recurrence
        input_part = F.linear(layer_input, weight_ih, bias_ih) + probe
        h, c = hx[0][layer], hx[1][layer]
        previous, outputs = [], []
        for step in range(layer_input.shape[0]):
            previous.append(h)
            gates = input_part[step] + F.linear(h, weight_hh, bias_hh)
            in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, dim=1)
            c = th.sigmoid(forget_gate) * c + th.sigmoid(in_gate) * th.tanh(cell_gate)
            h = th.sigmoid(out_gate) * th.tanh(c)
            outputs.append(h)
        rows = th.cat([layer_input, th.stack(previous)], dim=2).detach()
        layers.append((rows, probe))
        layer_input = th.stack(outputs)
        final_h.append(h)
        final_c.append(c)
    output, h_n, c_n = layer_input, th.stack(final_h), th.stack(final_c)
    if unbatched:
        return output.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1)), layers
    return (output.transpose(0, 1) if module.batch_first else output), (h_n, c_n), layers


def sequence_rows(calls: list[th.Tensor]) -> th.Tensor:
    """
    The per-step rows of an LSTM's successive calls, one row per (sequence, step), sequence-major: the calls are
    successive steps of the same sequences (as sb3-contrib runs a batch of sequences one step at a time), so row
    ``s·T + t`` is step t of sequence s, the order of a ``(sequences, steps)`` batch flattened. Calls on different
    numbers of sequences are pooled (their rows are then in no particular order).

    :param calls: One ``(T_i, B, features)`` tensor per call
    :return: The ``(Σ T_i · B, features)`` rows
    """
    if len({call.shape[1] for call in calls}) > 1:
        return th.cat([call.reshape(-1, call.shape[-1]) for call in calls])
    steps = th.cat(calls) if len(calls) > 1 else calls[0]
    return steps.transpose(0, 1).reshape(-1, steps.shape[-1])


def reduced_sequence_factors(
    rows: th.Tensor, grads: th.Tensor, steps: int, real: th.Tensor | None, bias: bool, samples: int
) -> tuple[th.Tensor, th.Tensor]:
    """
    A and G of an LSTM layer in the reduce form (module docstring): each sequence's mean input and summed gradient
    over its real steps.

    :param rows: The inputs ``[x_t, h_{t-1}]`` of every step, sequence-major ``(sequences · steps, d)``
    :param grads: The per-sample gradients ``g_t`` of the gate pre-activations, same order
    :param steps: Steps per sequence
    :param real: Which rows are real steps (None: all)
    :param bias: Whether to append the bias coordinate
    :param samples: N, the samples of the Fisher loss
    :return: ``(A, G)``
    """
    inputs, gradients = rows.reshape(-1, steps, rows.shape[-1]), grads.reshape(-1, steps, grads.shape[-1])
    weights = th.ones(inputs.shape[:2], dtype=rows.dtype, device=rows.device) if real is None else real.reshape(-1, steps)
    weights = weights.to(rows.dtype)
    lengths = weights.sum(dim=1)
    kept = lengths > 0
    mean_inputs = (inputs * weights[..., None]).sum(dim=1)[kept] / lengths[kept, None]
    summed_grads = (gradients * weights[..., None]).sum(dim=1)[kept]
    return row_second_moment(mean_inputs, bias) / mean_inputs.shape[0], summed_grads.t() @ summed_grads / samples
