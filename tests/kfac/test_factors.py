"""Kronecker factors against their definition, computed independently with per-sample loops."""

import pytest
import torch as th
from torch import nn
from torch.nn import functional as F

import sb3_acktr.kfac.optimizer as optimizer_module
from sb3_acktr.kfac import KFAC
from sb3_acktr.kfac.factors import (
    BIAS_APART_FROM_WIDTH,
    conv2d_mean_patches,
    conv2d_patches,
    input_second_moment,
    row_second_moment,
)


def per_sample_output_grads(model: nn.Module, layer: nn.Module, x: th.Tensor, targets: th.Tensor) -> list[th.Tensor]:
    """∂ℓ_n/∂z_n of each sample's own loss (one forward per sample), ℓ_n = cross-entropy of the model's output."""
    grads = []
    for n in range(x.shape[0]):
        outputs: list[th.Tensor] = []
        handle = layer.register_forward_hook(lambda module, inputs, output, store=outputs: store.append(output))
        logits = model(x[n : n + 1])
        handle.remove()
        loss = F.cross_entropy(logits.flatten(1), targets[n : n + 1])
        (grad,) = th.autograd.grad(loss, outputs[0])
        grads.append(grad[0])
    return grads


def curvature_from_optimizer(model: nn.Module, x: th.Tensor, targets: th.Tensor, **kwargs) -> KFAC:
    optimizer = KFAC(model, **kwargs)
    with optimizer.record_curvature():
        logits = model(x)
    # Mean over the batch: KFAC rescales by N to per-sample gradients
    optimizer.update_curvature(F.cross_entropy(logits.flatten(1), targets))
    return optimizer


@pytest.mark.parametrize("bias", [True, False])
def test_linear_factors(bias):
    th.manual_seed(0)
    layer = nn.Linear(4, 3, bias=bias).double()
    model = nn.Sequential(layer)
    x, targets = th.randn(6, 4, dtype=th.float64), th.randint(0, 3, (6,))
    state = curvature_from_optimizer(model, x, targets).state[layer.weight]

    grads = per_sample_output_grads(model, layer, x, targets)
    a_expected = th.zeros(5 if bias else 4, 5 if bias else 4, dtype=th.float64)
    g_expected = th.zeros(3, 3, dtype=th.float64)
    for n in range(6):
        a_bar = th.cat([x[n], th.ones(1, dtype=th.float64)]) if bias else x[n]
        a_expected += th.outer(a_bar, a_bar) / 6
        g_expected += th.outer(grads[n], grads[n]) / 6
    th.testing.assert_close(state["A"], a_expected)
    th.testing.assert_close(state["G"], g_expected)


def explicit_patches(x: th.Tensor, kernel: int, stride: int, padding: int, dilation: int) -> th.Tensor:
    """Patches by explicit loops over output positions, zero padding, flattened as (C, kh, kw)."""
    n_samples, channels, height, width = x.shape
    padded = th.zeros(n_samples, channels, height + 2 * padding, width + 2 * padding, dtype=x.dtype)
    padded[:, :, padding : padding + height, padding : padding + width] = x
    span = dilation * (kernel - 1) + 1
    out_h = (height + 2 * padding - span) // stride + 1
    out_w = (width + 2 * padding - span) // stride + 1
    patches = th.zeros(n_samples, out_h * out_w, channels * kernel * kernel, dtype=x.dtype)
    for n in range(n_samples):
        for i in range(out_h):
            for j in range(out_w):
                window = padded[n, :, i * stride : i * stride + span : dilation, j * stride : j * stride + span : dilation]
                patches[n, i * out_w + j] = window.reshape(-1)
    return patches


CONV_CONFIGS = [
    dict(kernel_size=3, stride=1, padding=0, dilation=1, bias=True),
    dict(kernel_size=3, stride=2, padding=1, dilation=1, bias=True),
    dict(kernel_size=2, stride=1, padding=2, dilation=2, bias=False),
    dict(kernel_size=3, stride=3, padding=0, dilation=1, bias=True),
]


@pytest.mark.parametrize("config", CONV_CONFIGS)
def test_conv2d_factors(config):
    th.manual_seed(1)
    conv = nn.Conv2d(2, 3, **config).double()
    model = nn.Sequential(conv, nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x, targets = th.randn(4, 2, 7, 7, dtype=th.float64), th.randint(0, 3, (4,))
    state = curvature_from_optimizer(model, x, targets).state[conv.weight]

    kernel, stride, padding, dilation = config["kernel_size"], config["stride"], config["padding"], config["dilation"]
    patches = explicit_patches(x, kernel, stride, padding, dilation)
    if config["bias"]:
        patches = th.cat([patches, th.ones(*patches.shape[:2], 1, dtype=th.float64)], dim=2)
    grads = per_sample_output_grads(model, conv, x, targets)
    n_samples, n_positions = patches.shape[:2]
    omega = th.zeros(patches.shape[2], patches.shape[2], dtype=th.float64)
    gamma = th.zeros(3, 3, dtype=th.float64)
    for n in range(n_samples):
        g_positions = grads[n].reshape(3, -1)  # (out, T)
        assert g_positions.shape[1] == n_positions
        for t in range(n_positions):
            # Grosse & Martens 2016: Ω = E[Σ_t ā ā ᵀ], Γ = (1/T) E[Σ_t g gᵀ]
            omega += th.outer(patches[n, t], patches[n, t]) / n_samples
            gamma += th.outer(g_positions[:, t], g_positions[:, t]) / (n_samples * n_positions)
    th.testing.assert_close(state["A"], omega)
    th.testing.assert_close(state["G"], gamma)


@pytest.mark.parametrize(
    "config",
    [
        dict(kernel_size=3, padding="same", padding_mode="zeros"),
        dict(kernel_size=3, padding="valid"),
        dict(kernel_size=3, padding=1, padding_mode="reflect"),
        dict(kernel_size=3, padding=(1, 2), padding_mode="circular", stride=(1, 2)),
        dict(kernel_size=(2, 3), padding=1, padding_mode="replicate", dilation=(2, 1)),
    ],
)
def test_conv2d_patches_reproduce_the_convolution(config):
    """The patches times the weight matrix must give the layer's own output, whatever the padding."""
    th.manual_seed(2)
    conv = nn.Conv2d(2, 4, **config).double()
    x = th.randn(3, 2, 6, 7, dtype=th.float64)
    patches = conv2d_patches(conv, x)
    output = conv(x)
    expected = output.flatten(2).transpose(1, 2)
    th.testing.assert_close(patches @ conv.weight.reshape(4, -1).t() + conv.bias, expected)


@pytest.mark.parametrize("warm_up", [False, True])
def test_factors_running_average(warm_up):
    """The first batch initialises the factors, later ones are averaged with weight 1 - stats_decay; with the warm-up
    the first 1/(1 - stats_decay) = 4 batches are plainly averaged first."""
    th.manual_seed(3)
    layer = nn.Linear(3, 2).double()
    optimizer = KFAC(layer, stats_decay=0.75, stats_warm_up=warm_up)
    batch_as, expected = [], None
    for k in range(1, 7):
        x, y = th.randn(5, 3, dtype=th.float64), th.randint(0, 2, (5,))
        with optimizer.record_curvature():
            logits = layer(x)
        optimizer.update_curvature(F.cross_entropy(logits, y))
        a_bar = th.cat([x, th.ones(5, 1, dtype=th.float64)], dim=1)
        batch_as.append(a_bar.t() @ a_bar / 5)
        if k == 1:
            expected = batch_as[0]
        elif warm_up and k <= 4:
            expected = sum(batch_as) / k
        else:
            expected = 0.75 * expected + 0.25 * batch_as[-1]
        th.testing.assert_close(optimizer.state[layer.weight]["A"], expected)
    assert optimizer.curvature_updates == 6


def test_shared_layer_pools_calls():
    """A layer called twice in one forward pass counts each call's rows as extra samples."""
    th.manual_seed(4)
    layer = nn.Linear(3, 3, bias=False).double()
    optimizer = KFAC(layer)
    x = th.randn(4, 3, dtype=th.float64)
    with optimizer.record_curvature():
        hidden = layer(x)
        output = layer(th.tanh(hidden))
    optimizer.update_curvature(0.5 * (output**2).sum(dim=1).mean())
    inputs = th.cat([x, th.tanh(hidden).detach()])
    th.testing.assert_close(optimizer.state[layer.weight]["A"], inputs.t() @ inputs / 8)


class TwoHeads(nn.Module):
    """An actor's and a critic's heads on the same features."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.pi, self.vf = nn.Linear(4, 5), nn.Linear(5, 3), nn.Linear(5, 1)

    def forward(self, x: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        features = th.tanh(self.body(x))
        return self.pi(features), self.vf(features)


@pytest.mark.parametrize("stats_samples", [None, 4])
def test_layers_on_one_input_share_its_second_moment(monkeypatch, stats_samples):
    """Two heads fed the same tensor: each one's A is that tensor's second moment (of the drawn rows), computed once."""
    calls = []

    def counted(module: nn.Module, x: th.Tensor, **kwargs) -> tuple[th.Tensor, int]:
        calls.append(tuple(x.shape))
        return input_second_moment(module, x, **kwargs)

    monkeypatch.setattr(optimizer_module, "input_second_moment", counted)
    th.manual_seed(0)
    model = TwoHeads().double()
    x, targets = th.randn(10, 4, dtype=th.float64), th.randint(0, 3, (10,))
    optimizer = KFAC(model, stats_samples=stats_samples)
    with optimizer.record_curvature():
        logits, values = model(x)
    th.manual_seed(1)
    optimizer.update_curvature(F.cross_entropy(logits, targets) + 0.5 * (values**2).mean())
    features = th.tanh(model.body(x)).detach()
    if stats_samples is not None:
        th.manual_seed(1)
        features = features[th.randperm(10)[:stats_samples]]
    bordered = F.pad(features, (0, 1), value=1.0)
    expected = bordered.t() @ bordered / len(features)
    a_pi, a_vf = optimizer.state[model.pi.weight]["A"], optimizer.state[model.vf.weight]["A"]
    th.testing.assert_close(a_pi, expected)
    th.testing.assert_close(a_vf, expected)
    assert a_pi is not a_vf  # each layer's running average is its own
    assert calls == [(len(features), 4), (len(features), 5)]  # the body's input, then the shared features once


def test_sum_reduction_does_not_rescale():
    th.manual_seed(5)
    layer = nn.Linear(3, 2).double()
    x = th.randn(5, 3, dtype=th.float64)
    factors = {}
    for reduction in ("mean", "sum"):
        optimizer = KFAC(layer, loss_reduction=reduction)
        with optimizer.record_curvature():
            output = layer(x)
        per_sample = 0.5 * (output**2).sum(dim=1)
        optimizer.update_curvature(per_sample.mean() if reduction == "mean" else per_sample.sum())
        factors[reduction] = optimizer.state[layer.weight]["G"]
    th.testing.assert_close(factors["mean"], factors["sum"])


@pytest.mark.parametrize("config", CONV_CONFIGS)
@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_conv2d_second_moment_in_chunks(config, chunk_size):
    """Chunked unfolding, with the bias row and column from patch sums, gives Σ ā āᵀ of the explicit patches."""
    th.manual_seed(6)
    conv = nn.Conv2d(2, 3, **config).double()
    x = th.randn(7, 2, 7, 7, dtype=th.float64)
    total, normaliser = input_second_moment(conv, x, chunk_size=chunk_size)
    patches = explicit_patches(x, config["kernel_size"], config["stride"], config["padding"], config["dilation"])
    if config["bias"]:
        patches = th.cat([patches, th.ones(*patches.shape[:2], 1, dtype=th.float64)], dim=2)
    rows = patches.reshape(-1, patches.shape[-1])
    th.testing.assert_close(total, rows.t() @ rows)
    assert normaliser == 7


@pytest.mark.parametrize("conv", [False, True])
def test_stats_samples_use_the_drawn_rows(conv):
    """With stats_samples=m the factors are those of the m drawn samples (randperm from torch's RNG), with the
    per-sample gradients of the full batch's mean loss."""
    th.manual_seed(7)
    if conv:
        model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3)).double()
        x = th.randn(10, 2, 6, 6, dtype=th.float64)
    else:
        model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
        x = th.randn(10, 4, dtype=th.float64)
    targets = th.randint(0, 3, (10,))
    optimizer = KFAC(model, stats_samples=4)
    with optimizer.record_curvature():
        logits = model(x)
    th.manual_seed(123)
    optimizer.update_curvature(F.cross_entropy(logits, targets))
    th.manual_seed(123)
    chosen = th.randperm(10)[:4]
    expected = curvature_from_optimizer(model, x[chosen], targets[chosen])
    for layer in (model[0], model[-1]):
        for key in ("A", "G"):
            th.testing.assert_close(optimizer.state[layer.weight][key], expected.state[layer.weight][key])


def test_stats_samples_need_one_batch_size():
    layer = nn.Linear(3, 2)
    optimizer = KFAC(layer, stats_samples=2)
    with optimizer.record_curvature():
        output = th.cat([layer(th.randn(4, 3)), layer(th.randn(5, 3))])
    with pytest.raises(
        ValueError,
        match=r"selects rows of the batch \(stats_samples=2, or a sample_mask\), but .* have batch sizes \[4, 5\]",
    ):
        optimizer.update_curvature(0.5 * (output**2).sum(dim=1).mean())


@pytest.mark.parametrize("config", CONV_CONFIGS)
def test_conv2d_factors_reduce(config):
    """K-FAC-reduce (Eschenhagen et al. 2023, eq. 9) by explicit loops: A from each sample's mean patch, G from
    each sample's output gradient summed over positions."""
    th.manual_seed(8)
    conv = nn.Conv2d(2, 3, **config).double()
    model = nn.Sequential(conv, nn.Tanh(), nn.Flatten(), nn.LazyLinear(3)).double()
    x, targets = th.randn(5, 2, 7, 7, dtype=th.float64), th.randint(0, 3, (5,))
    model(x)  # materialise the lazy layer
    state = curvature_from_optimizer(model, x, targets, weight_sharing="reduce").state[conv.weight]

    kernel, stride, padding, dilation = config["kernel_size"], config["stride"], config["padding"], config["dilation"]
    patches = explicit_patches(x, kernel, stride, padding, dilation)
    grads = per_sample_output_grads(model, conv, x, targets)
    n_samples, n_positions, dim = patches.shape
    a_expected = th.zeros(dim + config["bias"], dim + config["bias"], dtype=th.float64)
    g_expected = th.zeros(3, 3, dtype=th.float64)
    for n in range(n_samples):
        mean_patch = th.zeros(dim, dtype=th.float64)
        summed_grad = th.zeros(3, dtype=th.float64)
        g_positions = grads[n].reshape(3, -1)
        for t in range(n_positions):
            mean_patch += patches[n, t] / n_positions
            summed_grad += g_positions[:, t]
        if config["bias"]:
            mean_patch = th.cat([mean_patch, th.ones(1, dtype=th.float64)])
        a_expected += th.outer(mean_patch, mean_patch) / n_samples
        g_expected += th.outer(summed_grad, summed_grad) / n_samples
    th.testing.assert_close(state["A"], a_expected)
    th.testing.assert_close(state["G"], g_expected)


def test_reduce_is_exact_where_positions_are_pooled():
    """One sample, the convolution's output averaged over positions: every position gets the same output gradient,
    and A ⊗ G of the reduce form equals the outer product of the layer's gradient (computed by autograd)."""
    th.manual_seed(9)
    conv = nn.Conv2d(2, 3, kernel_size=3, stride=2, padding=1).double()
    model = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Tanh(), nn.Linear(3, 4)).double()
    x, target = th.randn(1, 2, 6, 6, dtype=th.float64), th.tensor([2])
    state = curvature_from_optimizer(model, x, target, weight_sharing="reduce").state[conv.weight]

    loss = F.cross_entropy(model(x), target)
    weight_grad, bias_grad = th.autograd.grad(loss, [conv.weight, conv.bias])
    # Row-major vec of [∇W, ∇b] (out, in + 1): vec(g aᵀ) = g ⊗ a, so its outer product is G ⊗ A
    flat = th.cat([weight_grad.reshape(3, -1), bias_grad[:, None]], dim=1).flatten()
    th.testing.assert_close(th.kron(state["G"], state["A"]), th.outer(flat, flat))


@pytest.mark.parametrize("bias", [True, False])
def test_forms_coincide_at_one_output_position(bias):
    """With a single output position (kernel as large as the input), expand and reduce are the same factors."""
    th.manual_seed(10)
    conv = nn.Conv2d(2, 4, kernel_size=5, bias=bias).double()
    model = nn.Sequential(conv, nn.Tanh(), nn.Flatten(), nn.Linear(4, 3)).double()
    x, targets = th.randn(6, 2, 5, 5, dtype=th.float64), th.randint(0, 3, (6,))
    expand = curvature_from_optimizer(model, x, targets, weight_sharing="expand").state[conv.weight]
    reduce = curvature_from_optimizer(model, x, targets, weight_sharing="reduce").state[conv.weight]
    th.testing.assert_close(reduce["A"], expand["A"])
    th.testing.assert_close(reduce["G"], expand["G"])


def test_weight_sharing_per_layer():
    """A dict gives each named convolution its form; the others stay on expand."""
    th.manual_seed(11)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 3, 3), nn.Flatten(), nn.Linear(3 * 3 * 3, 2)).double()
    x, targets = th.randn(4, 2, 7, 7, dtype=th.float64), th.randint(0, 2, (4,))
    mixed = curvature_from_optimizer(model, x, targets, weight_sharing={"2": "reduce"})
    expand = curvature_from_optimizer(model, x, targets, weight_sharing="expand")
    reduce = curvature_from_optimizer(model, x, targets, weight_sharing="reduce")
    for key in ("A", "G"):
        th.testing.assert_close(mixed.state[model[0].weight][key], expand.state[model[0].weight][key])
        th.testing.assert_close(mixed.state[model[2].weight][key], reduce.state[model[2].weight][key])
        assert not th.allclose(reduce.state[model[2].weight][key], expand.state[model[2].weight][key])


@pytest.mark.parametrize(
    "weight_sharing, error, message",
    [
        ("sum", ValueError, r"weight_sharing must be one of \('expand', 'reduce'\), got 'sum'"),
        (["reduce"], TypeError, r"weight_sharing must be one of \('expand', 'reduce'\) or a dict .* got list"),
        ({"0": "mean"}, ValueError, r"weight_sharing\['0'\] must be one of \('expand', 'reduce'\), got 'mean'"),
        (
            {"3": "reduce"},
            ValueError,
            r"weight_sharing names layer '3', which is not an nn\.Conv2d or nn\.LSTM layer .*: \['0'\]",
        ),
        ({"9": "reduce"}, ValueError, r"weight_sharing names layer '9'"),
    ],
)
def test_weight_sharing_bad_input(weight_sharing, error, message):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(error, match=message):
        KFAC(model, weight_sharing=weight_sharing)


def test_reduce_for_a_convolution_on_the_diagonal_says_why():
    """A convolution max_factor_dim left to the diagonal Fisher is named as such when weight_sharing names it."""
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4, 2))  # the convolution's A is 19 x 19
    with pytest.warns(UserWarning, match="max_factor_dim=10"):
        with pytest.raises(
            ValueError,
            match=r"weight_sharing names layer '0', .* \(Conv2d '0' is on the diagonal Fisher: .*max_factor_dim.*\)",
        ):
            KFAC(model, weight_sharing={"0": "reduce"}, max_factor_dim=10)


@pytest.mark.parametrize(
    "frozen, reason",
    [
        (("weight", "bias"), r"Conv2d '0' is frozen: KFAC does not optimize it"),
        (("weight",), r"Conv2d '0' is on the diagonal Fisher: .*a frozen weight"),
    ],
)
def test_reduce_for_a_frozen_convolution_says_so(frozen, reason):
    """A frozen convolution is not optimized at all; one with a frozen weight leaves its bias to the diagonal Fisher."""
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    for name in frozen:
        getattr(model[0], name).requires_grad_(False)
    with pytest.raises(ValueError, match=rf"weight_sharing names layer '0', .* \({reason}\)"):
        KFAC(model, weight_sharing={"0": "reduce"})


def test_reduce_for_an_lstm_by_its_module_name_names_its_layers():
    with pytest.raises(
        ValueError, match=r"weight_sharing names layer '0', .* \(the layers of nn\.LSTM '0' are \['0\.l0', '0\.l1'\]\)"
    ):
        KFAC(nn.Sequential(nn.LSTM(3, 4, num_layers=2), nn.Linear(4, 2)), weight_sharing={"0": "reduce"})


def test_reduce_without_a_convolution_is_rejected():
    with pytest.raises(
        ValueError, match=r"weight_sharing='reduce' applies to nn\.Conv2d and nn\.LSTM layers, but Sequential has none"
    ):
        KFAC(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)), weight_sharing="reduce")


@pytest.mark.parametrize(
    "config",
    [
        *CONV_CONFIGS,
        dict(kernel_size=3, padding="same", padding_mode="zeros"),
        dict(kernel_size=(3, 2), padding="valid", stride=(2, 1)),
        dict(kernel_size=3, padding=1, padding_mode="reflect"),
        dict(kernel_size=3, padding=(1, 2), padding_mode="circular", stride=(1, 2)),
        dict(kernel_size=(2, 3), padding=1, padding_mode="replicate", dilation=(2, 1)),
        dict(kernel_size=(2, 3), padding=(2, 0), dilation=(1, 3), stride=(3, 2)),
        dict(kernel_size=8, stride=4),  # NatureCNN's first layer
    ],
)
def test_mean_patches_without_extracting_them(config):
    """The strided row-and-column sums equal the mean of the extracted patches, whatever the geometry."""
    th.manual_seed(12)
    conv = nn.Conv2d(2, 3, **config).double()
    x = th.randn(3, 2, 13, 11, dtype=th.float64)
    th.testing.assert_close(conv2d_mean_patches(conv, x), conv2d_patches(conv, x).mean(dim=1))


def vgg_block(inplace: bool) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(inplace=inplace),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(inplace=inplace),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 3),
    ).double()


def test_in_place_activation_is_refused():
    """nn.ReLU(inplace=True) overwrites the convolution's output: G would be built from ∂L/∂relu(h), not ∂L/∂h."""
    th.manual_seed(13)
    model = vgg_block(inplace=True)
    x, targets = th.randn(4, 2, 6, 6, dtype=th.float64), th.randint(0, 3, (4,))
    optimizer = KFAC(model)
    with optimizer.record_curvature():
        logits = model(x)
    with pytest.raises(RuntimeError, match=r"the output of layer '0' was modified in place .* \(inplace=False\)"):
        optimizer.update_curvature(F.cross_entropy(logits, targets))
    assert optimizer.curvature_updates == 0 and "A" not in optimizer.state[model[0].weight]
    # The same network without in-place activations: factors as their definition gives them
    reference = vgg_block(inplace=False)
    reference.load_state_dict(model.state_dict())
    state = curvature_from_optimizer(reference, x, targets).state[reference[2].weight]
    grads = per_sample_output_grads(reference, reference[2], x, targets)
    gamma = sum(th.einsum("ct,dt->cd", g.reshape(4, -1), g.reshape(4, -1)) for g in grads) / (4 * 36)
    th.testing.assert_close(state["G"], gamma)


def test_input_modified_in_place_is_refused():
    layer = nn.Linear(3, 2)
    optimizer = KFAC(layer)
    x = th.randn(5, 3)
    with optimizer.record_curvature():
        output = layer(x)
    x.mul_(4.0)  # A would be built from the changed input
    with pytest.raises(RuntimeError, match=r"the input of layer '' was modified in place"):
        optimizer.update_curvature(0.5 * (output**2).sum(dim=1).mean())


@pytest.mark.parametrize("bias", [True, False])
def test_linear_on_positions_has_the_factors_of_a_1x1_convolution(bias):
    """A Linear on (N, S, features) shares its weight over S positions per sample, as a 1x1 Conv2d on
    (N, features, S, 1): the same expand-form factors (checked against loops by the convolution tests)."""
    th.manual_seed(14)
    linear = nn.Linear(4, 3, bias=bias).double()
    conv = nn.Conv2d(4, 3, kernel_size=1, bias=bias).double()
    conv.weight.data.copy_(linear.weight.data[:, :, None, None])
    if bias:
        conv.bias.data.copy_(linear.bias.data)
    x = th.randn(5, 6, 4, dtype=th.float64)
    targets = th.randint(0, 3, (5,))
    head = nn.Linear(6 * 3, 3).double()
    linear_model = nn.Sequential(linear, nn.Tanh(), nn.Flatten(), head)
    conv_model = nn.Sequential(conv, nn.Tanh(), Permute(), nn.Flatten(), head)
    th.testing.assert_close(linear_model(x), conv_model(x.transpose(1, 2)[..., None]))
    linear_state = curvature_from_optimizer(linear_model, x, targets).state[linear.weight]
    conv_state = curvature_from_optimizer(conv_model, x.transpose(1, 2)[..., None], targets).state[conv.weight]
    th.testing.assert_close(linear_state["A"], conv_state["A"])
    th.testing.assert_close(linear_state["G"], conv_state["G"])


class Permute(nn.Module):
    """(N, out, S, 1) -> (N, S, out), the layout of the Linear's output."""

    def forward(self, x: th.Tensor) -> th.Tensor:
        return x[..., 0].transpose(1, 2)


class Temperature(nn.Module):
    """A free parameter (the diagonal fallback)."""

    def __init__(self) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(th.zeros(1, dtype=th.float64))

    def forward(self, x: th.Tensor) -> th.Tensor:
        return x * self.log_scale.exp()


@pytest.mark.filterwarnings("ignore:KFAC. no Kronecker factors")
@pytest.mark.parametrize("stats_samples", [None, 3])
def test_sample_mask_uses_only_the_kept_rows(stats_samples):
    """A padded batch with a mask gives the statistics of the batch without the padding rows."""
    th.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2), Temperature()).double()
    x, targets = th.randn(7, 3, dtype=th.float64), th.randint(0, 2, (7,))
    mask = th.tensor([True, False, True, True, False, True, True])
    masked, reference = KFAC(model, stats_samples=stats_samples), KFAC(model, stats_samples=stats_samples)
    th.manual_seed(5)
    with masked.record_curvature():
        logits = model(x)
    masked.update_curvature(F.cross_entropy(logits[mask], targets[mask]), sample_mask=mask)
    th.manual_seed(5)
    with reference.record_curvature():
        logits = model(x[mask])
    reference.update_curvature(F.cross_entropy(logits, targets[mask]))
    for param in (model[0].weight, model[2].weight):
        for key in ("A", "G"):
            th.testing.assert_close(masked.state[param][key], reference.state[param][key])
    th.testing.assert_close(
        masked.state[model[3].log_scale]["fisher_diag"], reference.state[model[3].log_scale]["fisher_diag"]
    )


@pytest.mark.parametrize(
    "mask, message",
    [
        (
            th.ones(4, dtype=th.bool),
            r"sample_mask must be a boolean tensor of shape \(5,\) \(the recorded batch\), got torch.bool \(4,\)",
        ),
        (th.ones(5), r"sample_mask must be a boolean tensor of shape \(5,\) \(the recorded batch\), got torch.float32 \(5,\)"),
        (th.zeros(5, dtype=th.bool), "sample_mask keeps no row of the batch"),
    ],
)
def test_bad_sample_mask(mask, message):
    layer = nn.Linear(3, 2)
    optimizer = KFAC(layer)
    with optimizer.record_curvature():
        output = layer(th.randn(5, 3))
    with pytest.raises(ValueError, match=message):
        optimizer.update_curvature(output.square().mean(), sample_mask=mask)


@pytest.mark.parametrize("width", [1, 7, BIAS_APART_FROM_WIDTH - 1, BIAS_APART_FROM_WIDTH, BIAS_APART_FROM_WIDTH + 3])
def test_row_second_moment_with_and_without_the_bias_border(width):
    """Narrow (a column of ones) or wide (the border from row sums), Σ ā āᵀ over ā = [a, 1]; without a bias Σ a aᵀ."""
    th.manual_seed(width)
    rows = th.randn(11, width, dtype=th.float64)
    homogeneous = th.cat([rows, th.ones(11, 1, dtype=th.float64)], dim=1)
    th.testing.assert_close(row_second_moment(rows, bias=True), homogeneous.t() @ homogeneous)
    th.testing.assert_close(row_second_moment(rows, bias=False), rows.t() @ rows)
