"""The layers K-FAC gives Kronecker factors: which they are in a model, their parameters and their recorded forward passes."""

import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import torch as th
from torch import nn

from sb3_acktr.kfac.factors import SUPPORTED_MODULES
from sb3_acktr.kfac.recurrent import lstm_layer_parameters, lstm_unsupported


@dataclass(eq=False)
class KroneckerLayer:
    """
    One Fisher block ``A ⊗ G`` over the parameter matrix ``[W₁, …, W_k, b]``: the weights' columns side by side (a
    ``Conv2d`` weight viewed as ``(out, C·kh·kw)``), then the bias coordinate. ``nn.Linear`` and ``nn.Conv2d``:
    ``[W, b]``; layer k of an ``nn.LSTM``: ``[W_ih, W_hh, b]`` with ``b = b_ih + b_hh`` (:mod:`sb3_acktr.kfac.recurrent`).
    The optimizer keeps the block's statistics in the state of its first weight.
    """

    name: str
    module: nn.Module
    weights: list[th.Tensor]
    #: The trainable biases summed into the bias coordinate (two for an LSTM layer)
    biases: list[th.Tensor]
    #: Whether the matrix has the bias coordinate (a frozen bias keeps it, with a zero gradient)
    bias_column: bool
    #: The layer's index in its ``nn.LSTM`` (None for ``nn.Linear`` and ``nn.Conv2d``)
    lstm_layer: int | None = None
    #: Form of the factors of a weight-sharing layer: "expand" or "reduce" (see sb3_acktr.kfac.factors)
    weight_sharing: str = "expand"
    records: list["Record"] = field(default_factory=list)

    @property
    def weight(self) -> th.Tensor:
        """The first weight, under which the optimizer's state keeps the block's statistics."""
        return self.weights[0]

    @property
    def params(self) -> list[th.Tensor]:
        """Every trainable parameter of the block."""
        return [*self.weights, *self.biases]

    @property
    def a_dim(self) -> int:
        """The size of A: the matrix's columns."""
        return sum(weight.shape[1:].numel() for weight in self.weights) + int(self.bias_column)

    @property
    def g_dim(self) -> int:
        """The size of G: the matrix's rows."""
        return self.weight.shape[0]

    def matrix(self, weights: list[th.Tensor], bias: th.Tensor | None) -> th.Tensor:
        """
        Tensors in the weights' shapes and a vector for the bias coordinate as the ``(g_dim, a_dim)`` matrix
        ``[W₁, …, W_k, b]`` of the block (the one place for its column layout).

        :param weights: One tensor per weight, in its shape
        :param bias: The bias coordinate's column (zeros if None; ignored without a bias column)
        :return: The matrix
        """
        # A Linear's or an LSTM's weight is its matrix already (no reshape: this runs for every layer at every step)
        columns = [weight if weight.dim() == 2 else weight.reshape(self.g_dim, -1) for weight in weights]
        if self.bias_column:
            columns.append((self.weight.new_zeros(self.g_dim) if bias is None else bias).reshape(-1, 1))
        return th.cat(columns, dim=1)

    def gradient_matrix(self) -> th.Tensor | None:
        """
        The gradient as the ``(g_dim, a_dim)`` matrix ``[∇W₁, …, ∇b]`` (a parameter without gradient counts zero; the
        bias coordinate's gradient is the biases' mean, each bias's own when they enter only through their sum).

        :return: The matrix, or None if no parameter of the block has a gradient
        """
        if all(param.grad is None for param in self.params):
            return None
        grads = [bias.grad for bias in self.biases if bias.grad is not None]
        # One bias (Linear, Conv2d): its own gradient, no copy
        bias_grad = None if not grads else grads[0] if len(grads) == 1 else sum(grads[1:], grads[0]) / len(grads)
        return self.matrix([th.zeros_like(w) if w.grad is None else w.grad for w in self.weights], bias_grad)

    def split_update(self, delta: th.Tensor) -> list[tuple[th.Tensor, th.Tensor]]:
        """
        The preconditioned matrix back in the parameters' shapes; the bias coordinate's step is split equally between
        the biases summed into it, so that their sum moves by it.

        :param delta: The ``(g_dim, a_dim)`` preconditioned gradient
        :return: ``(param, step direction)`` for every parameter with a gradient
        """
        updates = []
        start = 0
        for weight in self.weights:
            end = start + weight.shape[1:].numel()
            if weight.grad is not None:
                step = delta[:, start:end]
                updates.append((weight, step if weight.dim() == 2 else step.reshape(weight.shape)))
            start = end
        bias_step = delta[:, start] if len(self.biases) == 1 else delta[:, start] / len(self.biases)
        for bias in self.biases:
            if bias.grad is not None:
                updates.append((bias, bias_step))
        return updates


class Record(NamedTuple):
    """One forward pass of a layer recorded for the curvature."""

    layer: KroneckerLayer
    #: The layer's input (detached; an LSTM layer's ``[x_t, h_{t-1}]``, ``(T, B, ·)``) and output (its pre-activation;
    #: an LSTM layer's zero probe added to ``z_t``)
    inputs: th.Tensor
    output: th.Tensor
    #: Their version counters when recorded: an in-place change after the forward pass shows there
    input_version: int
    output_version: int


def find_layers(model: nn.Module, lstm_curvature: str, max_factor_dim: int | None) -> list[KroneckerLayer]:
    """
    The trainable ``nn.Linear``/``nn.Conv2d`` (``groups=1``) layers of ``model``, and with ``lstm_curvature="kronecker"``
    every layer of its unidirectional ``nn.LSTM`` without projections; a warning names the modules left to the diagonal
    Fisher.

    :param model: The model
    :param lstm_curvature: ``"kronecker"`` or ``"diagonal"`` (the LSTMs on the diagonal Fisher, without a warning)
    :param max_factor_dim: A layer whose A or G would be wider than this is left to the diagonal Fisher, with a warning
        (:func:`oversized_layers`); an LSTM with such a layer, all of its layers. None: no limit
    :return: The layers, in ``named_modules()`` order
    :raises ValueError: If a covered weight is shared (tied), or nothing gets Kronecker factors
    """
    layers: list[KroneckerLayer] = []
    seen: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.LSTM) and lstm_curvature == "kronecker":
            layers += lstm_layers(name, module)
            continue
        if not isinstance(module, SUPPORTED_MODULES) or not module.weight.requires_grad:
            continue
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            warnings.warn(
                f"KFAC: Conv2d layer '{name}' has groups={module.groups}; Kronecker factors need groups=1, "
                "so its parameters use the diagonal fallback.",
                UserWarning,
            )
            continue
        if id(module.weight) in seen:
            raise ValueError(
                f"KFAC: the weight of layer '{name}' is shared with another layer (tied weights), "
                "which K-FAC does not support. Untie the weights or optimize them with another optimizer."
            )
        seen.add(id(module.weight))
        biases = [module.bias] if module.bias is not None and module.bias.requires_grad else []
        layers.append(KroneckerLayer(name, module, [module.weight], biases, bias_column=module.bias is not None))
    oversized = {layer.module for layer in oversized_layers(layers, max_factor_dim)}
    layers = [layer for layer in layers if layer.module not in oversized]
    if not layers and oversized:
        raise ValueError(
            f"KFAC: every layer of {type(model).__name__} is wider than max_factor_dim={max_factor_dim}: there is "
            "nothing to precondition with Kronecker factors. Raise max_factor_dim (None: no limit), or use a "
            "first-order optimizer for this model."
        )
    if not layers:
        raise ValueError(
            f"KFAC found no trainable nn.Linear, nn.Conv2d (groups=1) or nn.LSTM layer in {type(model).__name__}: "
            "there is nothing to precondition. Use a first-order optimizer for this model."
        )
    covered = {id(param): layer.name for layer in layers for param in layer.params}
    on_diagonal = []
    for name, module in model.named_modules():
        if module in oversized or any(module is layer.module for layer in layers):
            continue
        own = [param for param in module.parameters(recurse=False) if param.requires_grad]
        tied = [covered[id(param)] for param in own if id(param) in covered]
        if tied:
            raise ValueError(
                f"KFAC: layer '{tied[0]}' shares a parameter with '{name}' ({type(module).__name__}), e.g. an "
                "embedding tied to an output layer: its Kronecker factors would ignore that use. Untie the weights "
                "or optimize them with another optimizer."
            )
        # Grouped convolutions and LSTMs without factors were named above, or are on the diagonal as asked
        named = isinstance(module, nn.LSTM) or (isinstance(module, nn.Conv2d) and module.groups != 1)
        if own and module is not model and not named:
            on_diagonal.append(f"'{name}' ({type(module).__name__})")
    if on_diagonal:
        warnings.warn(
            f"KFAC: no Kronecker factors for {', '.join(on_diagonal)} (only nn.Linear, nn.Conv2d with groups=1 and "
            "unidirectional nn.LSTM without projections get them): their parameters use the diagonal Fisher fallback.",
            UserWarning,
        )
    return layers


def oversized_layers(layers: list[KroneckerLayer], max_factor_dim: int | None) -> list[KroneckerLayer]:
    """
    The layers of the modules that have a layer whose Kronecker factor would be wider than ``max_factor_dim``; a
    warning names them. Such a factor (a flattened image's pixels as a Linear's inputs, for one) costs ``d²`` memory
    twice (the factor and its inverse), ``N·d²`` per statistics update and ``d³`` per inverse: minutes per update,
    where the diagonal Fisher costs what the gradient does.

    :param layers: The candidate layers
    :param max_factor_dim: The widest factor allowed (None: no limit)
    :return: The layers left to the diagonal Fisher (every layer of an LSTM that has one)
    """
    if max_factor_dim is None:
        return []
    wide = {layer.module for layer in layers if max(layer.a_dim, layer.g_dim) > max_factor_dim}
    oversized = [layer for layer in layers if layer.module in wide]
    if oversized:
        described = [
            f"'{layer.name}' ({type(layer.module).__name__}, A {layer.a_dim} x {layer.a_dim}, G {layer.g_dim} x "
            f"{layer.g_dim}: {2 * (layer.a_dim**2 + layer.g_dim**2) * layer.weight.element_size() / 1e9:.2g} GB with "
            "the inverses)"
            for layer in oversized
        ]
        warnings.warn(
            f"KFAC: no Kronecker factors for {', '.join(described)}: a factor wider than max_factor_dim={max_factor_dim} "
            "would cost its width squared in memory and its cube at every inverse. Their parameters use the diagonal "
            "Fisher fallback. A layer this wide usually takes a flattened image: a convolutional network (SB3's "
            "CnnPolicy) gives the image Kronecker factors at a small cost. Raise max_factor_dim (ACKTR's "
            "kfac_max_factor_dim; None: no limit) to keep their Kronecker factors.",
            UserWarning,
        )
    return oversized


def lstm_layers(name: str, module: nn.LSTM) -> list[KroneckerLayer]:
    """
    One block per layer of an LSTM, named ``"<name>.l<k>"``; none (with a warning saying why) if it cannot have them.

    :param name: The LSTM's name in the model
    :param module: The LSTM
    :return: Its layers
    """
    reason = lstm_unsupported(module)
    if reason is not None:
        warnings.warn(
            f"KFAC: no Kronecker factors for nn.LSTM '{name}' because {reason}: its parameters use the diagonal Fisher "
            "fallback (lstm_curvature='diagonal' does so without this warning).",
            UserWarning,
        )
        return []
    layers = []
    for index in range(module.num_layers):
        weights, biases = lstm_layer_parameters(module, index)
        layers.append(KroneckerLayer(f"{name}.l{index}", module, weights, biases, bool(module.bias), lstm_layer=index))
    return layers
