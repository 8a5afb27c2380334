"""KFAC steps against independent computations: dense Kronecker solves, the exact natural gradient, the trust region."""

import copy
import io
import math

import pytest
import torch as th
from torch import nn
from torch.nn import functional as F

from sb3_acktr.kfac import KFAC
from tests.helpers import fisher_then_gradient, sampled_fisher_loss


def flat_layer_grad(layer: nn.Linear) -> th.Tensor:
    """Row-major vec of [∇W, ∇b] (the test's vec convention: row i holds W_i and b_i)."""
    assert layer.weight.grad is not None and layer.bias.grad is not None
    return th.cat([layer.weight.grad, layer.bias.grad[:, None]], dim=1).flatten()


def layer_params(layer: nn.Linear) -> th.Tensor:
    return th.cat([layer.weight, layer.bias[:, None]], dim=1).detach().flatten()


def make_batch(seed: int, n_samples: int = 8, n_inputs: int = 4, n_classes: int = 3):
    th.manual_seed(seed)
    return th.randn(n_samples, n_inputs, dtype=th.float64), th.randint(0, n_classes, (n_samples,))


def linear_problem(seed: int, **kfac_kwargs) -> tuple[th.Tensor, th.Tensor, nn.Linear, KFAC]:
    """A batch, a float64 linear classifier (4 inputs, 3 classes) and KFAC on it."""
    x, y = make_batch(seed)
    layer = nn.Linear(4, 3).double()
    return x, y, layer, KFAC(layer, **kfac_kwargs)


def dense_kfac_direction(optimizer: KFAC, layer: nn.Linear, damping: float) -> th.Tensor:
    """Δ = (G_d ⊗ A_d)⁻¹ vec([∇W, ∇b]) with factored Tikhonov damping, by a dense solve."""
    a_factor, g_factor = optimizer.state[layer.weight]["A"], optimizer.state[layer.weight]["G"]
    n_in, n_out = a_factor.shape[0], g_factor.shape[0]
    pi = math.sqrt((th.trace(a_factor) / n_in) / (th.trace(g_factor) / n_out))
    eye_a, eye_g = th.eye(n_in, dtype=th.float64), th.eye(n_out, dtype=th.float64)
    # W of shape (out, in), row-major vec: vec(G X A) = (G ⊗ A) vec(X) for symmetric A
    block = th.kron(g_factor + math.sqrt(damping) / pi * eye_g, a_factor + pi * math.sqrt(damping) * eye_a)
    return th.linalg.solve(block, flat_layer_grad(layer))


def test_preconditioned_gradient_matches_dense_kronecker_solve():
    x, y = make_batch(0)
    layer = nn.Linear(4, 3).double()
    damping = 0.05
    # Huge kfac_clip: ν = 1, no momentum: the update is exactly lr·Δ
    optimizer = KFAC(layer, lr=0.5, momentum=0.0, kfac_clip=1e9, damping=damping)
    fisher_then_gradient(optimizer, layer, x, y)
    before, expected = layer_params(layer), dense_kfac_direction(optimizer, layer, damping)
    optimizer.step()
    th.testing.assert_close((before - layer_params(layer)) / 0.5, expected)


def test_conv_preconditioned_gradient_matches_dense_kronecker_solve():
    th.manual_seed(1)
    conv = nn.Conv2d(2, 3, kernel_size=2, stride=1).double()
    model = nn.Sequential(conv, nn.Flatten(), nn.Linear(3 * 9, 2).double())
    x, y = th.randn(5, 2, 4, 4, dtype=th.float64), th.randint(0, 2, (5,))
    optimizer = KFAC(model, lr=1.0, momentum=0.0, kfac_clip=1e9, damping=0.1)
    fisher_then_gradient(optimizer, model, x, y)
    grad = th.cat([conv.weight.grad.reshape(3, -1), conv.bias.grad[:, None]], dim=1).flatten()
    before = th.cat([conv.weight.reshape(3, -1), conv.bias[:, None]], dim=1).detach().flatten()
    optimizer.step()
    after = th.cat([conv.weight.reshape(3, -1), conv.bias[:, None]], dim=1).detach().flatten()

    a_factor, g_factor = optimizer.state[conv.weight]["A"], optimizer.state[conv.weight]["G"]
    pi = math.sqrt((th.trace(a_factor) / 9) / (th.trace(g_factor) / 3))
    block = th.kron(
        g_factor + math.sqrt(0.1) / pi * th.eye(3, dtype=th.float64),
        a_factor + pi * math.sqrt(0.1) * th.eye(9, dtype=th.float64),
    )
    th.testing.assert_close(before - after, th.linalg.solve(block, grad))


def test_single_sample_step_is_the_exact_damped_natural_gradient():
    """One sample, one layer: F = G ⊗ A exactly, and the eigen mode solves (F + λI) Δ = ∇ exactly."""
    th.manual_seed(2)
    layer = nn.Linear(3, 4).double()
    x, y = th.randn(1, 3, dtype=th.float64), th.tensor([1])
    damping = 0.03
    optimizer = KFAC(layer, lr=1.0, momentum=0.0, kfac_clip=1e9, damping=damping, inverse_method="eigen")
    with optimizer.record_curvature():
        logits = layer(x)
    fisher_loss = sampled_fisher_loss(logits)
    # The exact (sampled) Fisher of all parameters, from the full parameter gradient: no factorisation
    weight_grad, bias_grad = th.autograd.grad(fisher_loss, [layer.weight, layer.bias], retain_graph=True)
    score = th.cat([weight_grad, bias_grad[:, None]], dim=1).flatten()
    fisher = th.outer(score, score)
    optimizer.update_curvature(fisher_loss)
    optimizer.zero_grad()
    F.cross_entropy(logits, y).backward()
    before, grad = layer_params(layer), flat_layer_grad(layer)
    optimizer.step()

    natural_gradient = th.linalg.solve(fisher + damping * th.eye(16, dtype=th.float64), grad)
    th.testing.assert_close(before - layer_params(layer), natural_gradient)


def test_trust_region_scale():
    x, y = make_batch(3)
    lr, kfac_clip = 0.7, 1e-4
    layer = nn.Linear(4, 3).double()
    optimizer = KFAC(layer, lr=lr, momentum=0.0, kfac_clip=kfac_clip)
    fisher_then_gradient(optimizer, layer, x, y)
    before, grad = layer_params(layer), flat_layer_grad(layer)
    delta = dense_kfac_direction(optimizer, layer, 0.01)
    optimizer.step()

    # ν = min(1, √(kfac_clip / (lr²·Δᵀ∇))) (ACKTR paper sec. 3.2 with kfac_clip = 2δ)
    vg = float(delta @ grad)
    expected_nu = min(1.0, math.sqrt(kfac_clip / (lr**2 * vg)))
    assert expected_nu < 1.0, "the test must exercise a binding trust region"
    info = optimizer.last_step_info[0]
    assert info["nu"] == pytest.approx(expected_nu, rel=1e-9)
    assert info["vg"] == pytest.approx(vg, rel=1e-9)
    th.testing.assert_close(before - layer_params(layer), lr * expected_nu * delta)
    # The quadratic-model KL of the scaled step is exactly kfac_clip / 2 (= δ) when ν binds
    assert info["quadratic_kl"] == pytest.approx(kfac_clip / 2, rel=1e-9)


def test_trust_region_joint_and_per_group():
    x, y = make_batch(4)
    results = {}
    for mode in ("joint", "per_group"):
        th.manual_seed(5)
        model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
        groups = [{"params": list(model[0].parameters())}, {"params": list(model[2].parameters()), "kfac_clip": 1e-5}]
        optimizer = KFAC(model, lr=0.5, momentum=0.0, kfac_clip=1e-3, trust_region=mode, param_groups=groups)
        fisher_then_gradient(optimizer, model, x, y)
        optimizer.step()
        results[mode] = optimizer.last_step_info
    joint, per_group = results["joint"], results["per_group"]
    # Joint: one ν from the first group's kfac_clip and the sum over groups of lr²·Δᵀ∇
    expected = math.sqrt(1e-3 / (0.25 * (joint[0]["vg"] + joint[1]["vg"])))
    assert joint[0]["nu"] == joint[1]["nu"] == pytest.approx(min(1.0, expected))
    # Per group: each group's own kfac_clip
    for info, kfac_clip in zip(per_group, (1e-3, 1e-5), strict=True):
        assert info["nu"] == pytest.approx(min(1.0, math.sqrt(kfac_clip / (0.25 * info["vg"]))))


def test_momentum_follows_baselines_convention():
    x, y = make_batch(6)
    lr, momentum = 0.3, 0.9
    layer = nn.Linear(4, 3).double()
    optimizer = KFAC(layer, lr=lr, momentum=momentum, kfac_clip=1e-3, inverse_interval=1)
    scaled_steps, params = [], [layer_params(layer)]
    for _ in range(3):
        fisher_then_gradient(optimizer, layer, x, y)
        optimizer.step()
        params.append(layer_params(layer))
        info = optimizer.last_step_info[0]
        scaled_steps.append((info["nu"], dense_kfac_direction(optimizer, layer, 0.01)))
    # buf_k = m·buf_{k-1} + ν_k·Δ_k and θ_k = θ_{k-1} − lr·(1−m)·buf_k: check buf from consecutive moves
    buffers = [(params[k] - params[k + 1]) / (lr * (1 - momentum)) for k in range(3)]
    increments = [buffers[0]] + [buffers[k] - momentum * buffers[k - 1] for k in (1, 2)]
    for (nu, delta), increment in zip(scaled_steps, increments, strict=True):
        th.testing.assert_close(increment, nu * delta)


def test_learning_rate_zero_leaves_weights_unchanged():
    x, y, layer, optimizer = linear_problem(7, lr=0.0)
    fisher_then_gradient(optimizer, layer, x, y)
    before = layer_params(layer)
    optimizer.step()
    th.testing.assert_close(layer_params(layer), before, rtol=0, atol=0)


def test_diagonal_fallback_for_free_parameters():
    """A parameter outside Linear/Conv2d is preconditioned by ∇ / (N·(∇L_F)² + λ) inside the trust region."""

    class ScaledLinear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 3)
            self.log_scale = nn.Parameter(th.zeros(3))

        def forward(self, x: th.Tensor) -> th.Tensor:
            return self.linear(x) * self.log_scale.exp()

    x, y = make_batch(8)
    model = ScaledLinear().double()
    damping = 0.01
    optimizer = KFAC(model, lr=0.1, momentum=0.0, kfac_clip=1e9, damping=damping)
    assert optimizer.fallback_params == [model.log_scale]
    with optimizer.record_curvature():
        logits = model(x)
    fisher_loss = sampled_fisher_loss(logits)
    (fisher_grad,) = th.autograd.grad(fisher_loss, model.log_scale, retain_graph=True)
    optimizer.update_curvature(fisher_loss)
    th.testing.assert_close(optimizer.state[model.log_scale]["fisher_diag"], 8 * fisher_grad**2)
    optimizer.zero_grad()
    F.cross_entropy(logits, y).backward()
    grad, before = model.log_scale.grad.clone(), model.log_scale.detach().clone()
    optimizer.step()
    th.testing.assert_close(before - model.log_scale.detach(), 0.1 * grad / (8 * fisher_grad**2 + damping))


def test_diagonal_fallback_warms_up_with_a_plain_average():
    """The diagonal estimate is one draw per update: its first 1/(1 - stats_decay) values are plainly averaged."""
    th.manual_seed(20)
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)).double()
    optimizer = KFAC(model, stats_decay=0.75)
    draws, expected = [], None
    for k in range(1, 7):
        x = th.randn(8, 3, dtype=th.float64)
        with optimizer.record_curvature():
            logits = model(x)
        fisher_loss = sampled_fisher_loss(logits)
        (grad,) = th.autograd.grad(fisher_loss, model[1].weight, retain_graph=True)
        optimizer.update_curvature(fisher_loss)
        draws.append(8 * grad**2)
        weight = max(0.25, 1 / k)
        expected = draws[-1] if expected is None else (1 - weight) * expected + weight * draws[-1]
        if k == 4:
            th.testing.assert_close(optimizer.state[model[1].weight]["fisher_diag"], sum(draws) / 4)
    th.testing.assert_close(optimizer.state[model[1].weight]["fisher_diag"], expected)


def test_curvature_recorded_only_inside_the_context():
    x, y, layer, optimizer = linear_problem(9)
    layer(x)  # outside the context: not recorded
    with th.no_grad(), optimizer.record_curvature():
        layer(x)  # no graph: cannot be recorded
    with optimizer.record_curvature(enabled=False):
        layer(x)
    assert not layer._forward_hooks
    with pytest.raises(RuntimeError, match="no forward pass was recorded"):
        optimizer.update_curvature(F.cross_entropy(layer(x), y))
    with optimizer.record_curvature():
        assert len(layer._forward_hooks) == 1
        logits = layer(x)
    assert not layer._forward_hooks
    optimizer.update_curvature(F.cross_entropy(logits, y))
    assert "A" in optimizer.state[layer.weight]
    assert layer.weight.grad is None, "update_curvature must not touch .grad"
    # A new context drops what an earlier one recorded and no update consumed
    with optimizer.record_curvature():
        layer(x)
    with optimizer.record_curvature():
        logits = layer(x[:2])
    assert len(optimizer.layers[0].records) == 1 and optimizer.layers[0].records[0].output is logits


def test_step_before_any_curvature_raises():
    x, y, layer, optimizer = linear_problem(10)
    F.cross_entropy(layer(x), y).backward()
    with pytest.raises(RuntimeError, match="no curvature statistics yet"):
        optimizer.step()


def test_non_finite_gradient_is_skipped():
    x, y, layer, optimizer = linear_problem(11)
    fisher_then_gradient(optimizer, layer, x, y)
    layer.weight.grad[0, 0] = float("nan")
    before = layer_params(layer)
    with pytest.warns(RuntimeWarning, match="update is skipped"):
        optimizer.step()
    th.testing.assert_close(layer_params(layer), before, rtol=0, atol=0)
    assert optimizer.skipped_steps == 1
    assert optimizer.last_step_info == []
    assert "momentum_buffer" not in optimizer.state[layer.weight]


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_non_finite_curvature_is_skipped(bad):
    x, y, layer, optimizer = linear_problem(12)
    fisher_then_gradient(optimizer, layer, x, y)
    a_before = optimizer.state[layer.weight]["A"].clone()
    x_bad = x.clone()
    x_bad[0, 0] = bad
    with optimizer.record_curvature():
        logits = layer(x_bad)
    with pytest.warns(RuntimeWarning, match="curvature update is skipped"):
        optimizer.update_curvature(F.cross_entropy(logits, y))
    th.testing.assert_close(optimizer.state[layer.weight]["A"], a_before, rtol=0, atol=0)
    assert optimizer.skipped_curvature_updates == 1
    assert optimizer.curvature_updates == 1


def test_inverse_interval_reuses_inverses():
    x, y, layer, optimizer = linear_problem(13, inverse_interval=3)
    inverses = []
    for _ in range(4):
        fisher_then_gradient(optimizer, layer, x + 0.1 * th.randn_like(x), y)
        optimizer.step()
        inverses.append(optimizer.state[layer.weight]["A_inv"].clone())
    assert th.equal(inverses[0], inverses[1]) and th.equal(inverses[1], inverses[2])
    assert not th.equal(inverses[2], inverses[3])


def test_curvature_update_due_follows_stats_interval():
    x, y, layer, optimizer = linear_problem(14, stats_interval=2)
    due = []
    for _ in range(4):
        due.append(optimizer.curvature_update_due)
        with optimizer.record_curvature(enabled=optimizer.curvature_update_due):
            logits = layer(x)
        if due[-1]:
            optimizer.update_curvature(F.cross_entropy(logits, y))
        optimizer.zero_grad()
        F.cross_entropy(logits, y).backward()
        optimizer.step()
    assert due == [True, False, True, False]
    assert optimizer.curvature_updates == 2


@pytest.mark.parametrize("dtype", [th.float32, th.float64])
@pytest.mark.parametrize("inverse_method", ["cholesky", "eigen"])
def test_state_dict_round_trip(dtype, inverse_method):
    """A loaded optimizer holds the same tensors (dtype included) and its next step equals the original's."""

    def make_model() -> nn.Module:
        th.manual_seed(15)
        return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).to(dtype)

    th.manual_seed(16)
    x, y = th.randn(6, 1, 6, 6, dtype=dtype), th.randint(0, 3, (6,))
    model = make_model()
    optimizer = KFAC(model, lr=0.2, inverse_interval=2, inverse_method=inverse_method)
    for _ in range(3):
        fisher_then_gradient(optimizer, model, x, y)
        optimizer.step()
    # Give a factor another dtype than the parameters: torch would cast it back on load
    optimizer.state[model[0].weight]["A"] = optimizer.state[model[0].weight]["A"].double()

    buffer = io.BytesIO()
    th.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    loaded_model = make_model()
    loaded_model.load_state_dict(model.state_dict())
    loaded = KFAC(loaded_model, lr=0.2, inverse_interval=2, inverse_method=inverse_method)
    loaded.load_state_dict(th.load(buffer, weights_only=True))

    for param, loaded_param in zip(model.parameters(), loaded_model.parameters(), strict=True):
        state, loaded_state = optimizer.state[param], loaded.state[loaded_param]
        assert state.keys() == loaded_state.keys()
        for key in state:
            if isinstance(state[key], th.Tensor):
                assert loaded_state[key].dtype == state[key].dtype, key
                assert th.equal(loaded_state[key], state[key]), key
            else:
                assert loaded_state[key] == state[key], key
    assert (loaded.steps, loaded.curvature_updates) == (optimizer.steps, optimizer.curvature_updates)

    for opt, net in ((optimizer, model), (loaded, loaded_model)):
        th.manual_seed(17)
        fisher_then_gradient(opt, net, x, y)
        opt.step()
    for param, loaded_param in zip(model.parameters(), loaded_model.parameters(), strict=True):
        assert th.equal(param, loaded_param)


def test_load_state_dict_of_another_optimizer():
    layer = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="not a KFAC state_dict"):
        KFAC(layer).load_state_dict(th.optim.SGD(layer.parameters(), lr=0.1).state_dict())


def test_supervised_classifier_learns():
    """A small classifier trained outside RL, as the docstring example (which tests/test_docs.py runs)."""
    th.manual_seed(0)
    x = th.randn(256, 10)
    y = (x[:, :3].argmax(dim=1) + (x[:, 3] > 1).long()) % 3
    model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 3))
    optimizer = KFAC(model, lr=0.1, kfac_clip=0.01)
    initial_loss = F.cross_entropy(model(x), y).item()
    for _ in range(50):
        fisher_then_gradient(optimizer, model, x, y)
        optimizer.step()
    with th.no_grad():
        logits = model(x)
    assert F.cross_entropy(logits, y).item() < 0.5 * initial_loss
    assert (logits.argmax(dim=1) == y).float().mean() > 0.85


def small_classifier_step(optimizer: KFAC, model: nn.Module, seed: int = 0) -> None:
    """One curvature update and one gradient of the training loss (no step)."""
    x, y = make_batch(seed)
    fisher_then_gradient(optimizer, model, x, y)


@pytest.mark.parametrize("option", ["lr", "momentum", "kfac_clip", "damping", "stats_decay"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_bad_per_group_option_is_rejected_at_construction_and_at_step(option, value):
    model = nn.Sequential(nn.Linear(4, 3)).double()
    message = rf"param_groups\[0\]\['{option}'\] must be in .*, got {value!r}"
    with pytest.raises(ValueError, match=message):
        KFAC(model, param_groups=[{"params": list(model.parameters()), option: value}])
    # Set after construction: step() refuses it before any weight moves
    optimizer = KFAC(model)
    small_classifier_step(optimizer, model)
    before = [param.detach().clone() for param in model.parameters()]
    optimizer.param_groups[0][option] = value
    with pytest.raises(ValueError, match=message):
        optimizer.step()
    assert all(th.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_momentum_buffer_is_reset_not_applied(bad):
    """A damaged momentum buffer never reaches the weights: the step is skipped and counted, the buffer dropped, and
    the next step proceeds from fresh momentum."""
    th.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3)).double()
    optimizer = KFAC(model)
    small_classifier_step(optimizer, model)
    optimizer.step()
    weight = model[0].weight
    optimizer.state[weight]["momentum_buffer"][0, 0] = bad
    small_classifier_step(optimizer, model, seed=1)
    before = [param.detach().clone() for param in model.parameters()]
    with pytest.warns(RuntimeWarning, match=r"non-finite update \(the momentum buffers of 1 parameters hold NaN/inf"):
        optimizer.step()
    assert optimizer.skipped_steps == 1
    assert all(th.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    bias = model[0].bias
    assert "momentum_buffer" not in optimizer.state[weight] and "momentum_buffer" in optimizer.state[bias]
    small_classifier_step(optimizer, model, seed=2)
    # The same step without momentum moves each parameter by -lr·ν·Δ: the fresh increments ν·Δ
    fresh_model = copy.deepcopy(model)
    fresh = KFAC(fresh_model, momentum=0.0)
    fresh.load_state_dict(optimizer.state_dict())
    fresh.param_groups[0]["momentum"] = 0.0
    fresh.state[fresh_model[0].weight]["momentum_buffer"] = th.zeros_like(weight)  # every buffer present: the fused path
    for param, fresh_param in zip(model.parameters(), fresh_model.parameters(), strict=True):
        fresh_param.grad = param.grad.clone()
    old_bias_buffer = optimizer.state[bias]["momentum_buffer"].clone()
    optimizer.step()
    fresh.step()
    assert optimizer.skipped_steps == 1
    lr, momentum = optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"]
    increments = [(old - new.detach()) / lr for old, new in zip(before, fresh_model.parameters(), strict=True)]
    # Mixed group: the weight starts again from ν·Δ, the bias goes on with m·buf + ν·Δ
    th.testing.assert_close(optimizer.state[weight]["momentum_buffer"], increments[0])
    th.testing.assert_close(optimizer.state[bias]["momentum_buffer"], momentum * old_bias_buffer + increments[1])
    th.testing.assert_close(before[0] - weight.detach(), lr * (1 - momentum) * increments[0])


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_keep_the_model_layers_and_counters(how):
    """A copy (with its model, as deepcopy and pickle copy them together) steps as the original does."""
    import copy
    import pickle

    th.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    optimizer = KFAC(model)
    small_classifier_step(optimizer, model)
    optimizer.step()
    pair = (model, optimizer)
    model_copy, optimizer_copy = copy.deepcopy(pair) if how == "deepcopy" else pickle.loads(pickle.dumps(pair))
    assert optimizer_copy.model is model_copy and optimizer_copy.steps == 1 and optimizer_copy.curvature_updates == 1
    assert [layer.module for layer in optimizer_copy.layers] == [model_copy[0], model_copy[2]]
    for current_model, current_optimizer in ((model, optimizer), (model_copy, optimizer_copy)):
        th.manual_seed(1)
        small_classifier_step(current_optimizer, current_model, seed=1)
        current_optimizer.step()
    for original, copied in zip(model.parameters(), model_copy.parameters(), strict=True):
        th.testing.assert_close(original, copied, rtol=0, atol=0)
    assert optimizer_copy.steps == 2


def test_params_as_a_single_tensor():
    """torch accepts {"params": tensor}; so does KFAC, with the layer's weight and bias in one group each."""
    layer = nn.Linear(3, 2)
    with pytest.raises(
        ValueError, match=r"The parameters of layer '' \(weights and biases\) must be in the same parameter group"
    ):
        KFAC(layer, param_groups=[{"params": layer.weight}, {"params": layer.bias}])
    model = nn.Sequential(nn.Linear(3, 2, bias=False))
    optimizer = KFAC(model, param_groups=[{"params": model[0].weight, "lr": 0.1}])
    assert optimizer.param_groups[0]["params"] == [model[0].weight] and optimizer.param_groups[0]["lr"] == 0.1


def test_step_after_a_skipped_first_curvature_update_continues():
    """Inputs of 1e20 overflow the first factors: that update is skipped, and the step goes on with ∇/λ (zero factors
    under damping) inside the trust region instead of claiming update_curvature() was never called."""
    x, y, layer, optimizer = linear_problem(20, lr=0.1)
    with optimizer.record_curvature():
        logits = layer(x * 1e200)  # float64: the squares overflow
    with pytest.warns(RuntimeWarning, match="curvature update is skipped"):
        optimizer.update_curvature(F.cross_entropy(logits, y))
    optimizer.zero_grad()
    F.cross_entropy(layer(x), y).backward()
    before, grad = layer_params(layer), flat_layer_grad(layer)
    optimizer.step()
    damping, kfac_clip, lr = 0.01, 0.001, 0.1
    delta = grad / damping
    nu = min(1.0, math.sqrt(kfac_clip / (lr**2 * float(delta @ grad))))
    th.testing.assert_close(layer_params(layer), before - lr * (1 - 0.9) * nu * delta)
    assert optimizer.skipped_steps == 0 and optimizer.skipped_curvature_updates == 1


@pytest.mark.parametrize("inverse_method", ["cholesky", "eigen"])
@pytest.mark.parametrize("key", ["A", "G"])
def test_damaged_factor_is_reset_and_training_continues(inverse_method, key):
    """A NaN in a factor (e.g. from a loaded state) is reset and counted at the next inverse refresh, under both
    inverse methods, instead of stopping training with a linear-algebra error."""
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    optimizer = KFAC(model, inverse_method=inverse_method, inverse_interval=1)
    small_classifier_step(optimizer, model)
    optimizer.step()
    optimizer.state[model[0].weight][key][0, 0] = float("nan")
    with pytest.warns(RuntimeWarning, match=r"the Kronecker factors of layer '0' hold NaN/inf; they are reset"):
        for seed in range(1, 6):
            x, y = make_batch(seed)
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()  # no new curvature: the reset layer steps by ∇/λ
    assert optimizer.reset_statistics == 1 and optimizer.skipped_steps == 0 and optimizer.steps == 6
    assert all(th.isfinite(param).all() for param in model.parameters())
    small_classifier_step(optimizer, model, seed=7)  # the next curvature update rebuilds the factors
    assert th.isfinite(optimizer.state[model[0].weight]["A"]).all()


def test_damaged_diagonal_fisher_is_reset_not_skipped_forever():
    """A NaN in the diagonal Fisher of a free parameter skips one step, is reset and counted; the next steps go on
    (it used to skip every later step)."""
    model = WithLogStd()
    optimizer = KFAC(model)
    x, y = make_batch(30)
    fisher_then_gradient(optimizer, model, x, y)
    optimizer.step()
    optimizer.state[model.log_std]["fisher_diag"][0] = float("nan")
    skipped = []
    with pytest.warns(RuntimeWarning):
        for seed in range(31, 51):
            x, y = make_batch(seed)
            fisher_then_gradient(optimizer, model, x, y)
            optimizer.step()
            skipped.append(optimizer.skipped_steps)
    assert skipped[-1] == 1 and optimizer.reset_statistics == 1
    assert th.isfinite(optimizer.state[model.log_std]["fisher_diag"]).all()
    assert all(th.isfinite(param).all() for param in model.parameters())


class WithLogStd(nn.Module):
    """A classifier with a free parameter (on the diagonal fallback), as a Gaussian policy's log_std."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3).double()
        self.log_std = nn.Parameter(th.zeros(3, dtype=th.float64))

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.linear(x) * th.exp(self.log_std)


class TiedEmbedding(nn.Module):
    """A language-model head whose output layer shares its weight with the input embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(7, 4)
        self.output = nn.Linear(4, 7)
        self.output.weight = self.embedding.weight

    def forward(self, tokens: th.Tensor) -> th.Tensor:
        return self.output(self.embedding(tokens))


def test_weight_tied_to_an_uncovered_layer_is_refused():
    with pytest.raises(ValueError, match=r"layer 'output' shares a parameter with 'embedding' \(Embedding\)"):
        KFAC(TiedEmbedding())


@pytest.mark.parametrize(
    "module, name",
    [
        (nn.GRU(4, 4, batch_first=True), "GRU"),
        (nn.Embedding(4, 4), "Embedding"),
        (nn.LayerNorm(4), "LayerNorm"),
        (nn.Conv1d(4, 4, 1), "Conv1d"),
        (nn.Conv2d(4, 4, 1, groups=2), None),  # has its own warning (groups)
    ],
)
def test_layers_on_the_diagonal_fallback_are_named(module, name):
    model = nn.Sequential(module, nn.Linear(4, 2))
    if name is None:
        with pytest.warns(UserWarning, match="has groups=2; Kronecker factors need groups=1") as record:
            KFAC(model)
        assert not [w for w in record if "no Kronecker factors for" in str(w.message)]
        return
    with pytest.warns(UserWarning, match=rf"KFAC: no Kronecker factors for '0' \({name}\) .* diagonal Fisher fallback"):
        KFAC(model)


def test_free_parameters_of_the_model_itself_do_not_warn(recwarn):
    """A Gaussian policy's log_std is a parameter of the model, on the diagonal path by design."""
    KFAC(WithLogStd())
    assert not [w for w in recwarn if "no Kronecker factors" in str(w.message)]


def trained_state(model: nn.Module) -> dict:
    optimizer = KFAC(model)
    small_classifier_step(optimizer, model)
    optimizer.step()
    return optimizer.state_dict()


def test_state_of_another_architecture_is_refused_before_loading():
    saved = trained_state(nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double())
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    optimizer = KFAC(model)
    with pytest.raises(ValueError, match=r"saved for another model: its '[AG]' of a parameter of shape \(6, 4\) has shape"):
        optimizer.load_state_dict(saved)
    assert optimizer.steps == 0 and not any(optimizer.state[param] for param in model.parameters())
    with pytest.raises(ValueError, match=r"saved for another model: its parameter groups hold \[4\] parameters"):
        KFAC(nn.Sequential(nn.Linear(4, 3)).double()).load_state_dict(saved)


def test_state_of_another_dtype_loads_and_steps():
    """A float64 model's state in a float32 copy: the statistics keep their dtype, and the steps work."""
    th.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    saved = trained_state(model)
    single = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    single.load_state_dict(model.state_dict())
    optimizer = KFAC(single, inverse_interval=1)
    optimizer.load_state_dict(saved)
    assert optimizer.state[single[0].weight]["A"].dtype == th.float64
    for seed in range(4):
        x, y = make_batch(seed)
        fisher_then_gradient(optimizer, single, x.float(), y)
        optimizer.step()
    assert optimizer.skipped_steps == 0 and all(
        param.dtype == th.float32 and th.isfinite(param).all() for param in single.parameters()
    )


def test_a_group_without_gradients_steps_the_others():
    """A parameter group none of whose parameters got a gradient (an unused branch) is left as it is; the others step."""
    th.manual_seed(0)
    used, unused = nn.Linear(4, 3).double(), nn.Linear(4, 3).double()
    model = nn.ModuleDict(dict(used=used, unused=unused))
    optimizer = KFAC(model, param_groups=[{"params": list(used.parameters())}, {"params": list(unused.parameters())}])
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    for seed in range(3):
        x, y = make_batch(seed)
        fisher_then_gradient(optimizer, used, x, y)
        optimizer.step()
    assert optimizer.skipped_steps == 0 and all(param.grad is None for param in unused.parameters())
    for name, param in model.named_parameters():
        assert th.equal(param, before[name]) == name.startswith("unused"), name
    assert [info["vg"] for info in optimizer.last_step_info][1] == 0.0


def test_layer_wider_than_max_factor_dim_uses_the_diagonal_fisher():
    """A Linear whose A would be 10 x 10 under max_factor_dim=8: named, then stepped by ∇ / (N·(∇L_F)² + λ)."""
    th.manual_seed(5)
    x, y = th.randn(8, 9, dtype=th.float64), th.randint(0, 3, (8,))
    model = nn.Sequential(nn.Linear(9, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    damping = 0.01
    with pytest.warns(
        UserWarning, match=r"no Kronecker factors for '0' \(Linear, A 10 x 10, G 4 x 4: .* GB .*max_factor_dim=8"
    ):
        optimizer = KFAC(model, lr=0.1, momentum=0.0, kfac_clip=1e9, damping=damping, max_factor_dim=8)
    assert [layer.name for layer in optimizer.layers] == ["2"]
    assert optimizer.fallback_params == [model[0].weight, model[0].bias]
    with optimizer.record_curvature():
        logits = model(x)
    fisher_loss = sampled_fisher_loss(logits)
    fisher_grads = th.autograd.grad(fisher_loss, [model[0].weight, model[0].bias], retain_graph=True)
    optimizer.update_curvature(fisher_loss)
    optimizer.zero_grad()
    F.cross_entropy(logits, y).backward()
    grads = [param.grad.clone() for param in (model[0].weight, model[0].bias)]
    before = [param.detach().clone() for param in (model[0].weight, model[0].bias)]
    optimizer.step()
    assert "A" not in optimizer.state[model[0].weight] and "A" in optimizer.state[model[2].weight]
    for param, old, grad, fisher_grad in zip((model[0].weight, model[0].bias), before, grads, fisher_grads, strict=True):
        th.testing.assert_close(old - param.detach(), 0.1 * grad / (8 * fisher_grad**2 + damping))


def test_max_factor_dim_none_keeps_every_layer(recwarn):
    model = nn.Sequential(nn.Linear(9, 4), nn.Tanh(), nn.Linear(4, 3))
    assert len(KFAC(model, max_factor_dim=None).layers) == 2
    assert len(KFAC(model, max_factor_dim=10).layers) == 2  # A of the first layer is 10 wide: at the limit, kept
    assert not [w for w in recwarn if "max_factor_dim" in str(w.message)]


def test_every_layer_wider_than_max_factor_dim_is_refused():
    with pytest.raises(ValueError, match=r"every layer of Linear is wider than max_factor_dim=4.*Raise max_factor_dim"):
        with pytest.warns(UserWarning, match="max_factor_dim=4"):
            KFAC(nn.Linear(9, 3), max_factor_dim=4)


def test_state_with_factors_for_a_diagonal_parameter_is_refused():
    """Factors saved without the limit do not load into an optimizer that leaves the layer to the diagonal Fisher."""
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    saved = trained_state(model)
    with pytest.warns(UserWarning, match="max_factor_dim=5"):
        optimizer = KFAC(model, max_factor_dim=5)
    with pytest.raises(
        ValueError, match=r"holds Kronecker factors \('A'\) for a parameter of shape \(3, 5\) .*max_factor_dim"
    ):
        optimizer.load_state_dict(saved)
    assert optimizer.steps == 0


class ScaledClassifier(nn.Module):
    """Two Linear layers and a free parameter (the diagonal fallback)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.out = nn.Linear(4, 5), nn.Linear(5, 3)
        self.log_scale = nn.Parameter(th.zeros(3))

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.out(th.tanh(self.hidden(x))) * self.log_scale.exp()


@pytest.mark.parametrize("max_grad_norm", [0.05, 1e3, math.inf])
@pytest.mark.parametrize("trust_region", ["joint", "per_group"])
def test_max_grad_norm_clips_as_clip_grad_norm_before_the_step(max_grad_norm, trust_region):
    """step() with max_grad_norm moves the weights, the momentum and the trust region as clip_grad_norm_ then step()
    without it, over several steps of two groups with a fallback parameter, and leaves the same clipped gradients."""
    th.manual_seed(0)
    clipped_first = ScaledClassifier().double()
    fused = copy.deepcopy(clipped_first)
    optimizers = []
    for model, fused_norm in ((clipped_first, None), (fused, max_grad_norm)):
        groups = [{"params": list(model.hidden.parameters())}, {"params": [*model.out.parameters(), model.log_scale]}]
        optimizers.append(KFAC(model, lr=0.5, kfac_clip=1e-2, trust_region=trust_region, param_groups=groups))
        optimizers[-1].max_grad_norm = fused_norm
    norms = []
    for seed in range(3):
        x, y = make_batch(seed)
        for model, optimizer in zip((clipped_first, fused), optimizers, strict=True):
            th.manual_seed(seed)  # the same sampled Fisher labels
            fisher_then_gradient(optimizer, model, x, y)
            if optimizer.max_grad_norm is None:
                norms.append(float(th.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)))
            optimizer.step()
        for param, other in zip(clipped_first.parameters(), fused.parameters(), strict=True):
            th.testing.assert_close(other, param)
            th.testing.assert_close(other.grad, param.grad)
        for info, other in zip(*(optimizer.last_step_info for optimizer in optimizers), strict=True):
            assert other == pytest.approx(info, rel=1e-9)
    assert (max(norms) > max_grad_norm) == (max_grad_norm == 0.05), "the clipping case must clip, the others not"
    fused_norm = th.linalg.vector_norm(th.cat([param.grad.flatten() for param in fused.parameters()]))
    assert float(fused_norm) <= max_grad_norm


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), "0.5"])
def test_bad_max_grad_norm_is_rejected_at_construction_and_when_set(value):
    model = nn.Linear(4, 3).double()
    message = rf"max_grad_norm must be in \(0, inf\], got {value!r}\. Try 0\.5 \(SB2's ACKTR\), or None not to clip\."
    with pytest.raises(ValueError, match=message):
        KFAC(model, max_grad_norm=value)
    optimizer = KFAC(model, max_grad_norm=math.inf)
    with pytest.raises(ValueError, match=message):
        optimizer.max_grad_norm = value
    assert optimizer.max_grad_norm == math.inf
