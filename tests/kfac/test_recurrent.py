"""Kronecker factors of nn.LSTM layers against their definition, computed with explicit per-sequence, per-step loops."""

import pytest
import torch as th
from torch import nn
from torch.nn import functional as F

from sb3_acktr.kfac import KFAC
from sb3_acktr.kfac.recurrent import lstm_forward, sequence_rows

INPUT, HIDDEN, CLASSES = 3, 4, 3
#: Real steps of each of the 3 padded sequences of length 4
LENGTHS = [4, 2, 3]


class LSTMClassifier(nn.Module):
    """An LSTM and a linear head on every step, over a batch of padded sequences ``(B, T, input)``, as sb3-contrib runs
    it: one call on the whole sequences, or one call per step (time-first), with the head on the sequence-major rows."""

    def __init__(self, num_layers: int = 1, bias: bool = True, step_by_step: bool = False) -> None:
        super().__init__()
        self.lstm = nn.LSTM(INPUT, HIDDEN, num_layers=num_layers, bias=bias)
        self.head = nn.Linear(HIDDEN, CLASSES)
        self.step_by_step = step_by_step

    def forward(self, x: th.Tensor, hx: tuple[th.Tensor, th.Tensor]) -> th.Tensor:
        sequences = x.transpose(0, 1)  # (T, B, input)
        if self.step_by_step:
            outputs = []
            for step in sequences:
                output, hx = self.lstm(step.unsqueeze(0), hx)
                outputs.append(output)
            output = th.cat(outputs)
        else:
            output, _ = self.lstm(sequences, hx)
        return self.head(output.transpose(0, 1).reshape(-1, HIDDEN))


def batch(num_layers: int = 1) -> tuple[th.Tensor, tuple[th.Tensor, th.Tensor], th.Tensor, th.Tensor]:
    """Padded sequences, initial states, targets and the mask of the real steps (sequence-major rows)."""
    x = th.randn(len(LENGTHS), 4, INPUT, dtype=th.float64)
    hx = (
        th.randn(num_layers, len(LENGTHS), HIDDEN, dtype=th.float64),
        th.randn(num_layers, len(LENGTHS), HIDDEN, dtype=th.float64),
    )
    targets = th.randint(0, CLASSES, (len(LENGTHS) * 4,))
    mask = th.tensor([step < length for length in LENGTHS for step in range(4)])
    return x, hx, targets, mask


def masked_loss(logits: th.Tensor, targets: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """Cross-entropy averaged over the real steps."""
    return F.cross_entropy(logits[mask], targets[mask])


def explicit_factors(
    model: LSTMClassifier,
    x: th.Tensor,
    hx: tuple[th.Tensor, th.Tensor],
    targets: th.Tensor,
    mask: th.Tensor,
    weight_sharing: str = "expand",
) -> list[tuple[th.Tensor, th.Tensor]]:
    """
    (A, G) of each LSTM layer by definition: the cell written out for every sequence, step and layer, z_t kept to
    differentiate, ``g = R·∂L/∂z`` over the R real steps. Expand: ``A = Σ ā āᵀ / R`` and ``G = Σ g gᵀ / R`` over the
    real steps; reduce: each sequence's mean ā and summed g over its real steps, ``A = Σ_s â âᵀ / S``,
    ``G = Σ_s ĝ ĝᵀ / R``.
    """
    lstm, steps = model.lstm, x.shape[1]
    inputs: dict[tuple[int, int, int], th.Tensor] = {}
    gates: dict[tuple[int, int, int], th.Tensor] = {}
    logits = []
    for sequence in range(x.shape[0]):
        h = [hx[0][layer, sequence] for layer in range(lstm.num_layers)]
        c = [hx[1][layer, sequence] for layer in range(lstm.num_layers)]
        for step in range(steps):
            layer_input = x[sequence, step]
            for layer in range(lstm.num_layers):
                weight_ih, weight_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")
                z = weight_ih @ layer_input + weight_hh @ h[layer]
                if lstm.bias:
                    z = z + getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
                z.retain_grad()
                a_bar = th.cat([layer_input, h[layer]] + ([th.ones(1, dtype=x.dtype)] if lstm.bias else []))
                inputs[sequence, step, layer], gates[sequence, step, layer] = a_bar.detach(), z
                i, f, g, o = z.split(HIDDEN)
                c[layer] = th.sigmoid(f) * c[layer] + th.sigmoid(i) * th.tanh(g)
                h[layer] = th.sigmoid(o) * th.tanh(c[layer])
                layer_input = h[layer]
            logits.append(model.head(layer_input))
    masked_loss(th.stack(logits), targets, mask).backward()
    real = int(mask.sum())
    # Per-sample gradients of the gates, g = R·∂L/∂z
    per_sample = {key: real * z.grad for key, z in gates.items() if z.grad is not None}
    factors = []
    for layer in range(lstm.num_layers):
        if weight_sharing == "reduce":
            sequences = range(x.shape[0])
            real_steps = [[t for t in range(steps) if mask[s * steps + t]] for s in sequences]
            mean_inputs = th.stack([th.stack([inputs[s, t, layer] for t in real_steps[s]]).mean(dim=0) for s in sequences])
            summed = th.stack([th.stack([per_sample[s, t, layer] for t in real_steps[s]]).sum(dim=0) for s in sequences])
            factors.append((mean_inputs.t() @ mean_inputs / len(sequences), summed.t() @ summed / real))
            continue
        keys = [(s, t, layer) for s in range(x.shape[0]) for t in range(steps) if mask[s * steps + t]]
        rows = th.stack([inputs[key] for key in keys])
        grads = th.stack([per_sample[key] for key in keys])
        a = sum((th.outer(row, row) for row in rows), th.zeros(rows.shape[1], rows.shape[1], dtype=x.dtype)) / real
        g = sum((th.outer(grad, grad) for grad in grads), th.zeros(grads.shape[1], grads.shape[1], dtype=x.dtype)) / real
        factors.append((a, g))
    return factors


@pytest.mark.parametrize("num_layers, bias", [(1, True), (2, True), (1, False)])
@pytest.mark.parametrize("step_by_step", [False, True])
@pytest.mark.parametrize("weight_sharing", ["expand", "reduce"])
def test_lstm_factors_match_their_definition(num_layers, bias, step_by_step, weight_sharing):
    th.manual_seed(0)
    model = LSTMClassifier(num_layers, bias, step_by_step).double()
    x, hx, targets, mask = batch(num_layers)
    # The head keeps the expand form (a Linear layer has no form); the LSTM layers get the one tested
    optimizer = KFAC(model, weight_sharing={f"lstm.l{layer}": weight_sharing for layer in range(num_layers)})
    with optimizer.record_curvature():
        logits = model(x, hx)
    optimizer.update_curvature(masked_loss(logits, targets, mask), sample_mask=mask)
    for layer, (a_expected, g_expected) in enumerate(explicit_factors(model, x, hx, targets, mask, weight_sharing)):
        state = optimizer.state[getattr(model.lstm, f"weight_ih_l{layer}")]
        th.testing.assert_close(state["A"], a_expected)
        th.testing.assert_close(state["G"], g_expected)


def test_lstm_factors_are_exact_for_one_step():
    """One sequence of one step: A ⊗ G equals the outer product of the gradient of [W_ih, W_hh, b] (autograd)."""
    th.manual_seed(1)
    model = LSTMClassifier().double()
    x, hx = th.randn(1, 1, INPUT, dtype=th.float64), (th.randn(1, 1, HIDDEN, dtype=th.float64),) * 2
    target = th.tensor([1])
    optimizer = KFAC(model)
    with optimizer.record_curvature():
        logits = model(x, hx)
    optimizer.update_curvature(F.cross_entropy(logits, target))
    state = optimizer.state[model.lstm.weight_ih_l0]

    lstm = model.lstm
    grads = th.autograd.grad(
        F.cross_entropy(model(x, hx), target), [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0]
    )
    th.testing.assert_close(grads[2], grads[3])  # the biases enter only through their sum
    flat = th.cat([grads[0], grads[1], grads[2][:, None]], dim=1).flatten()
    th.testing.assert_close(th.kron(state["G"], state["A"]), th.outer(flat, flat))


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(num_layers=3), dict(batch_first=True, num_layers=2), dict(bias=False), dict(num_layers=2, dropout=0.5)],
)
@pytest.mark.parametrize("initial_states", [True, False])
def test_step_by_step_cell_matches_nn_lstm(kwargs, initial_states):
    """The curvature pass's cell gives nn.LSTM's outputs, final states and gradients (dropout off: eval mode)."""
    th.manual_seed(2)
    lstm = nn.LSTM(INPUT, HIDDEN, **kwargs).double().eval()
    x = th.randn(*((2, 5) if lstm.batch_first else (5, 2)), INPUT, dtype=th.float64)
    hx = tuple(th.randn(lstm.num_layers, 2, HIDDEN, dtype=th.float64) for _ in range(2)) if initial_states else None
    expected, (h_n, c_n) = lstm(x, hx)
    output, (h, c), layers = lstm_forward(lstm, x, hx)
    th.testing.assert_close(output, expected)
    th.testing.assert_close(h, h_n)
    th.testing.assert_close(c, c_n)
    assert [rows.shape for rows, _ in layers] == [(5, 2, INPUT + HIDDEN)] + [(5, 2, 2 * HIDDEN)] * (lstm.num_layers - 1)
    expected_grads = th.autograd.grad((expected**2).sum() + h_n.sum(), list(lstm.parameters()))
    grads = th.autograd.grad((output**2).sum() + h.sum(), list(lstm.parameters()))
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        th.testing.assert_close(grad, expected_grad)


def test_step_by_step_cell_on_unbatched_input():
    th.manual_seed(3)
    lstm = nn.LSTM(INPUT, HIDDEN).double()
    x, hx = th.randn(5, INPUT, dtype=th.float64), (
        th.randn(1, HIDDEN, dtype=th.float64),
        th.randn(1, HIDDEN, dtype=th.float64),
    )
    expected, (h_n, _) = lstm(x, hx)
    output, (h, _), _ = lstm_forward(lstm, x, hx)
    th.testing.assert_close(output, expected)
    th.testing.assert_close(h, h_n)


def test_recording_keeps_outputs_and_gradients():
    """Inside record_curvature the model computes what it computes outside (the fused kernel), gradients included."""
    th.manual_seed(4)
    model = LSTMClassifier(num_layers=2).double()
    x, hx, targets, mask = batch(2)
    optimizer = KFAC(model)
    expected = model(x, hx)
    expected_grads = th.autograd.grad(masked_loss(expected, targets, mask), list(model.parameters()))
    with optimizer.record_curvature():
        logits = model(x, hx)
    assert len(optimizer.layers[0].records) == 1
    th.testing.assert_close(logits, expected)
    grads = th.autograd.grad(masked_loss(logits, targets, mask), list(model.parameters()))
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        th.testing.assert_close(grad, expected_grad)
    with th.no_grad(), optimizer.record_curvature():
        model(x, hx)
    assert not optimizer.layers[0].records


def test_sequence_rows_are_sequence_major():
    steps = th.arange(6.0).reshape(3, 2, 1)  # (T=3, B=2): value 2·t + s
    expected = th.tensor([0.0, 2.0, 4.0, 1.0, 3.0, 5.0])[:, None]  # row s·T + t
    th.testing.assert_close(sequence_rows([steps]), expected)
    th.testing.assert_close(sequence_rows(list(steps.split(1))), expected)


def test_lstm_step_preconditions_the_joint_block():
    """One step (momentum 0, trust region not binding): [ΔW_ih, ΔW_hh, Δb_ih + Δb_hh] = −lr·(G + √λ/π)⁻¹ ∇ (A + π√λ)⁻¹,
    computed here from the stored factors, and the two biases move alike."""
    th.manual_seed(5)
    model = LSTMClassifier().double()
    x, hx, targets, mask = batch()
    lr, damping = 0.1, 0.01
    optimizer = KFAC(model, lr=lr, momentum=0.0, kfac_clip=1e6, damping=damping)
    with optimizer.record_curvature():
        logits = model(x, hx)
    loss = masked_loss(logits, targets, mask)
    optimizer.update_curvature(loss, sample_mask=mask)
    optimizer.zero_grad()
    loss.backward()
    lstm = model.lstm
    params = (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
    before = [param.detach().clone() for param in params]
    grad = th.cat([lstm.weight_ih_l0.grad, lstm.weight_hh_l0.grad, lstm.bias_ih_l0.grad[:, None]], dim=1)
    state = optimizer.state[lstm.weight_ih_l0]
    a, g = state["A"], state["G"]
    pi = th.sqrt((a.trace() / a.shape[0]) / (g.trace() / g.shape[0]))
    eye_a, eye_g = th.eye(a.shape[0], dtype=a.dtype), th.eye(g.shape[0], dtype=g.dtype)
    delta = th.linalg.solve(g + damping**0.5 / pi * eye_g, grad) @ th.linalg.inv(a + pi * damping**0.5 * eye_a)
    start = {param: param.detach().clone() for param in model.parameters()}
    optimizer.step()
    assert optimizer.last_step_info[0]["nu"] == 1.0
    moved = [param.detach() - old for param, old in zip(params, before, strict=True)]
    th.testing.assert_close(moved[0], -lr * delta[:, :INPUT])
    th.testing.assert_close(moved[1], -lr * delta[:, INPUT:-1])
    th.testing.assert_close(moved[2], moved[3])
    th.testing.assert_close(moved[2] + moved[3], -lr * delta[:, -1])
    # Δᵀ∇ parameter by parameter, each bias's step against its own gradient (the step sums it over whole blocks)
    vg = sum(float((old - param.detach()).flatten() @ param.grad.flatten()) / lr for param, old in start.items())
    assert optimizer.last_step_info[0]["vg"] == pytest.approx(vg, rel=1e-9)


def test_lstm_state_dict_round_trip():
    th.manual_seed(6)
    model = LSTMClassifier().double()
    x, hx, targets, mask = batch()
    optimizer = KFAC(model)
    with optimizer.record_curvature():
        logits = model(x, hx)
    optimizer.update_curvature(masked_loss(logits, targets, mask), sample_mask=mask)
    restored = KFAC(LSTMClassifier().double())
    restored.load_state_dict(optimizer.state_dict())
    for key in ("A", "G"):
        th.testing.assert_close(
            restored.state[restored.model.lstm.weight_ih_l0][key], optimizer.state[model.lstm.weight_ih_l0][key]
        )


class ScaledLSTM(nn.LSTM):
    """An LSTM whose forward does more than nn.LSTM's."""

    def forward(self, input, hx=None):  # type: ignore[no-untyped-def, override]
        output, states = super().forward(input, hx)
        return 2 * output, states


@pytest.mark.parametrize(
    "lstm, reason",
    [
        (nn.LSTM(INPUT, HIDDEN, bidirectional=True), "it is bidirectional"),
        (nn.LSTM(INPUT, HIDDEN, proj_size=2), r"it has projections \(proj_size=2\)"),
        (ScaledLSTM(INPUT, HIDDEN), r"its forward is not nn.LSTM's \(the curvature pass runs nn.LSTM's cell in its place\)"),
    ],
)
def test_unsupported_lstm_stays_on_the_diagonal_with_a_warning(lstm, reason):
    model = nn.ModuleDict(dict(lstm=lstm, head=nn.Linear(HIDDEN, CLASSES)))
    with pytest.warns(UserWarning, match=rf"no Kronecker factors for nn.LSTM 'lstm' because {reason}: .* diagonal Fisher"):
        optimizer = KFAC(model)
    assert {id(param) for param in lstm.parameters()} <= {id(param) for param in optimizer.fallback_params}


def test_frozen_lstm_parameter_stays_on_the_diagonal():
    model = LSTMClassifier()
    model.lstm.bias_hh_l0.requires_grad_(False)
    with pytest.warns(UserWarning, match="because some of its parameters are frozen"):
        optimizer = KFAC(model)
    assert [layer.name for layer in optimizer.layers] == ["head"]


def test_diagonal_lstm_curvature_keeps_the_fused_kernel():
    model = LSTMClassifier()
    optimizer = KFAC(model, lstm_curvature="diagonal")
    assert [layer.name for layer in optimizer.layers] == ["head"]
    assert {id(param) for param in model.lstm.parameters()} == {id(param) for param in optimizer.fallback_params}
    with pytest.raises(ValueError, match=r"lstm_curvature must be one of \('kronecker', 'diagonal'\), got 'full'"):
        KFAC(model, lstm_curvature="full")


def test_lstm_wider_than_max_factor_dim_stays_on_the_diagonal():
    """G of each layer is 4 x HIDDEN = 16 wide: above max_factor_dim=15 the whole LSTM gets the diagonal Fisher."""
    th.manual_seed(0)
    model = LSTMClassifier(num_layers=2).double()
    with pytest.warns(UserWarning, match=r"no Kronecker factors for 'lstm.l0' \(LSTM, A 8 x 8, G 16 x 16: .*'lstm.l1'"):
        optimizer = KFAC(model, max_factor_dim=15)
    assert [layer.name for layer in optimizer.layers] == ["head"]
    assert {id(param) for param in model.lstm.parameters()} == {id(param) for param in optimizer.fallback_params}
    x, hx, targets, mask = batch(num_layers=2)
    with optimizer.record_curvature():
        logits = model(x, hx)
    loss = masked_loss(logits, targets, mask)
    optimizer.update_curvature(loss, sample_mask=mask)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert all("fisher_diag" in optimizer.state[param] for param in model.lstm.parameters())
    assert optimizer.skipped_steps == 0 and "A" in optimizer.state[model.head.weight]


def test_packed_sequence_is_refused():
    lstm = nn.LSTM(INPUT, HIDDEN)
    optimizer = KFAC(nn.ModuleDict(dict(lstm=lstm)))
    packed = nn.utils.rnn.pack_padded_sequence(th.randn(3, 2, INPUT), [3, 2])
    with optimizer.record_curvature(), pytest.raises(TypeError, match="need a padded tensor input, not a PackedSequence"):
        lstm(packed)


def test_forward_set_after_construction_is_refused_and_kept():
    """A forward given to the LSTM instance after KFAC was built: a clear error, and the user's forward stays."""
    lstm = nn.LSTM(INPUT, HIDDEN)
    optimizer = KFAC(nn.ModuleDict(dict(lstm=lstm)))

    def own_forward(input, hx=None):
        return nn.LSTM.forward(lstm, input, hx)

    lstm.forward = own_forward
    with pytest.raises(RuntimeError, match=r"the nn.LSTM of layer 'lstm.l0' got a forward of its own after KFAC was built"):
        with optimizer.record_curvature():
            pass
    assert lstm.forward is own_forward


def test_lstm_forms_coincide_for_one_step_sequences():
    """Sequences of one step: the reduce form (sequences as samples) is the expand form (steps as samples)."""
    th.manual_seed(8)
    model = LSTMClassifier().double()
    x, hx = th.randn(5, 1, INPUT, dtype=th.float64), tuple(th.randn(1, 5, HIDDEN, dtype=th.float64) for _ in range(2))
    targets = th.randint(0, CLASSES, (5,))
    states = {}
    for form in ("expand", "reduce"):
        optimizer = KFAC(model, weight_sharing={"lstm.l0": form})
        with optimizer.record_curvature():
            logits = model(x, hx)
        optimizer.update_curvature(F.cross_entropy(logits, targets))
        states[form] = optimizer.state[model.lstm.weight_ih_l0]
    th.testing.assert_close(states["reduce"]["A"], states["expand"]["A"])
    th.testing.assert_close(states["reduce"]["G"], states["expand"]["G"])
