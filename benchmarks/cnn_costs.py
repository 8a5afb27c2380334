"""
NatureCNN at batch 640, piece by piece: A2C's update against ACKTR's extra costs (the Fisher backward, each layer's
factors in both forms, inverses, preconditioning), timed on the package's own functions, and ACKTR's update projected
from them for the statistics options.
"""

import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch as th

# Small networks on 2 shared cores: one torch thread (see DESIGN.md, "Speed")
th.set_num_threads(1)

from stable_baselines3.common.envs import FakeImageEnv  # noqa: E402
from tables import cell, table_header  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from sb3_acktr import ACKTR, KFAC  # noqa: E402
from sb3_acktr.acktr.acktr import EXACT_KL_SAMPLES  # noqa: E402
from sb3_acktr.kfac import factors as kfac_factors  # noqa: E402
from sb3_acktr.kfac import inverse as kfac_inverse  # noqa: E402


def gram(rows: th.Tensor) -> th.Tensor:
    """``rowsᵀ rows``, the sum of outer products behind a Kronecker factor."""
    return rows.t() @ rows


def patch_matrix_gram(module: nn.Module, inputs: th.Tensor) -> th.Tensor:
    """``Σ ā āᵀ`` through the materialised patch matrix (how KFAC computed it before ``input_second_moment``)."""
    return gram(kfac_factors.layer_input_rows(module, inputs)[0])


def g_factor_sum(module: nn.Module, grad_output: th.Tensor, batch: int, weight_sharing: str = "expand") -> th.Tensor:
    """The G factor's sum of outer products, as ``KFAC`` computes it (rows, then ``rowsᵀ rows``)."""
    return gram(kfac_factors.layer_output_grad_rows(module, grad_output, batch, weight_sharing)[0])


def median_time(function: Callable[[], Any], repeats: int) -> float:
    """Median wall-clock seconds of ``function()`` over ``repeats`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


PATCHES = "A with the patch matrix (layer_input_rows + rowsᵀ rows)"
A_FACTOR = "A (input_second_moment)"
A_REDUCE = "A, reduce form (input_second_moment)"
G_REDUCE = "G rows + matmul, reduce form"
EXACT_KL = f"exact-KL diagnostic: 2 forwards of {EXACT_KL_SAMPLES} rows (no grad)"


def cnn_microbenchmark(batch: int = 640, repeats: int = 3, seed: int = 0) -> dict[str, Any]:
    """
    Time A2C's forward+backward of SB3's NatureCNN policy (Pong: 4x84x84, 6 actions) at ``batch``, and ACKTR's extra
    costs on the same batch, piece by piece, with the package's own functions.

    :param batch: Batch size (640: the paper's ACKTR Atari batch, 32 envs x 20 steps)
    :param repeats: Timed repetitions (median)
    :param seed: Seed of the random batch
    :return: Seconds per piece, per layer where it applies
    """
    # ACKTR on an env with Pong's spaces after the zoo's wrappers (4 stacked 84x84 frames, 6 actions): its policy,
    # optimizer and Fisher losses are the package's own
    env = FakeImageEnv(action_dim=6, screen_height=84, screen_width=84, n_channels=4, discrete=True, channel_first=True)
    model = ACKTR("CnnPolicy", env, seed=seed, device="cpu")
    policy, optimizer = model.policy, model.policy.optimizer
    assert isinstance(optimizer, KFAC)
    th.manual_seed(seed)
    rmsprop = th.optim.RMSprop(policy.parameters(), lr=7e-4, alpha=0.99, eps=1e-5)
    observations = th.randint(0, 256, (batch, 4, 84, 84)).float()
    actions = th.randint(0, 6, (batch,))
    advantages, returns = th.randn(batch), th.randn(batch)

    def a2c_loss() -> th.Tensor:
        values, log_prob, entropy = policy.evaluate_actions(observations, actions)
        assert entropy is not None
        return -(advantages * log_prob).mean() - 0.01 * entropy.mean() + 0.25 * F.mse_loss(returns, values.flatten())

    def a2c_forward_backward() -> None:
        policy.zero_grad()
        a2c_loss().backward()

    result: dict[str, Any] = {"batch": batch, "repeats": repeats}
    result["A2C forward"] = median_time(lambda: a2c_loss(), repeats)
    result["A2C forward+backward"] = median_time(a2c_forward_backward, repeats)
    result["A2C RMSprop step"] = median_time(rmsprop.step, repeats)

    def fisher_loss(values: th.Tensor) -> th.Tensor:
        return sum(model._fisher_losses(policy.action_dist, values), th.zeros(()))

    def recorded_forward() -> tuple[th.Tensor, list[Any]]:
        with optimizer.record_curvature():
            values, _, _ = policy.evaluate_actions(observations, actions)
        records = [record for layer in optimizer.layers for record in layer.records]
        for layer in optimizer.layers:
            layer.records = []
        return values.flatten(), records

    result["ACKTR forward with recording hooks"] = median_time(recorded_forward, repeats)
    values, records = recorded_forward()
    loss = fisher_loss(values)
    grads = th.autograd.grad(loss, [record.output for record in records], retain_graph=True)
    result["Fisher backward (to layer outputs)"] = median_time(
        lambda: th.autograd.grad(loss, [record.output for record in records], retain_graph=True), repeats
    )
    layers: dict[str, dict[str, Any]] = {}
    for record, grad in zip(records, grads, strict=True):
        layer, inputs, module = record.layer, record.inputs, record.layer.module
        a_sum, a_norm = kfac_factors.input_second_moment(module, inputs)
        g_rows, _ = kfac_factors.layer_output_grad_rows(module, grad, batch)
        entry: dict[str, Any] = {"type": type(module).__name__, "A dim": a_sum.shape[0], "G dim": g_rows.shape[1]}
        entry[A_FACTOR] = median_time(functools.partial(kfac_factors.input_second_moment, module, inputs), repeats)
        if isinstance(module, nn.Conv2d):
            # The materialised (N·T, C·kh·kw + 1) patch matrix that input_second_moment avoids, for comparison
            rows, _ = kfac_factors.layer_input_rows(module, inputs)
            entry["A patch matrix MB"] = rows.numel() * rows.element_size() / 2**20
            entry[PATCHES] = median_time(functools.partial(patch_matrix_gram, module, inputs), repeats)
            entry["A max relative difference"] = float((gram(rows) - a_sum).abs().max() / a_sum.abs().max())
        entry["G rows + matmul"] = median_time(functools.partial(g_factor_sum, module, grad, batch), repeats)
        if isinstance(module, nn.Conv2d):
            entry[A_REDUCE] = median_time(
                functools.partial(kfac_factors.input_second_moment, module, inputs, weight_sharing="reduce"), repeats
            )
            entry[G_REDUCE] = median_time(functools.partial(g_factor_sum, module, grad, batch, "reduce"), repeats)
        a_factor = a_sum / a_norm
        g_factor = gram(g_rows) / g_rows.shape[0]
        entry["inverses (cholesky_inverses, A and G)"] = median_time(
            functools.partial(kfac_inverse.cholesky_inverses, a_factor, g_factor, 0.01), repeats
        )
        a_inv, g_inv = kfac_inverse.cholesky_inverses(a_factor, g_factor, 0.01)
        gradient = th.randn(g_factor.shape[0], a_factor.shape[0])
        entry["preconditioning (G⁻¹ ∇ A⁻¹)"] = median_time(
            functools.partial(kfac_inverse.precondition_cholesky, gradient, a_inv, g_inv), repeats
        )
        layers[layer.name] = entry
    result["layers"] = layers
    with th.no_grad():
        # Before and after the step, on the subsample train/exact_kl averages over
        kl_rows = observations[:EXACT_KL_SAMPLES]
        result[EXACT_KL] = 2 * median_time(lambda: policy.get_distribution(kl_rows), repeats)

    def total(key: str) -> float:
        return sum(entry[key] for entry in layers.values())

    a_factors = total(A_FACTOR)
    g_factors = total("G rows + matmul")
    reduce_factors = sum(
        entry.get(A_REDUCE, entry[A_FACTOR]) + entry.get(G_REDUCE, entry["G rows + matmul"]) for entry in layers.values()
    )
    inverses = total("inverses (cholesky_inverses, A and G)")
    preconditioning = total("preconditioning (G⁻¹ ∇ A⁻¹)")
    a2c_update = result["A2C forward+backward"] + result["A2C RMSprop step"]
    result["totals"] = {
        "A2C update (forward+backward+RMSprop)": a2c_update,
        "A factors, all layers": a_factors,
        "A factors, all layers, conv ones with the patch matrix": sum(
            entry.get(PATCHES, entry[A_FACTOR]) for entry in layers.values()
        ),
        "G factors, all layers": g_factors,
        "A and G factors, all layers, reduce form for the convolutions": reduce_factors,
        "inverses, all layers (per refresh)": inverses,
        "preconditioning, all layers": preconditioning,
    }
    result["projections"] = project_cnn_costs(
        a2c_update=a2c_update,
        base=result["A2C forward+backward"] + preconditioning + inverses / 10,  # inverses every kfac_update=10
        fisher=result["Fisher backward (to layer outputs)"],
        factors=a_factors + g_factors,
        reduce_factors=reduce_factors,
        exact_kl=result[EXACT_KL],
        batch=batch,
    )
    return result


def project_cnn_costs(
    a2c_update: float, base: float, fisher: float, factors: float, reduce_factors: float, exact_kl: float, batch: int
) -> dict[str, dict[str, float]]:
    """
    ACKTR's update cost (train() only, no rollout) as a multiple of A2C's, from the measured pieces, for the
    statistics options: every update on the whole batch, on ``kfac_stats_samples`` samples (the factors scale with
    the samples; the Fisher backward does not), every 4th update. Every update pays the exact-KL diagnostic's two
    forward passes of ``EXACT_KL_SAMPLES`` rows.

    :param a2c_update: A2C's forward+backward+RMSprop
    :param base: What every ACKTR update pays: forward+backward, preconditioning, the inverses' share
    :param fisher: The Fisher backward
    :param factors: A and G of all layers on the whole batch
    :param reduce_factors: The same with the reduce form for the convolutions (``kfac_weight_sharing="reduce"``)
    :param exact_kl: The exact-KL diagnostic's two forward passes
    :param batch: The batch size
    :return: ``{option: {"seconds": ..., "ratio_to_a2c": ...}}``
    """
    # Every update pays the base and the exact-KL forwards, whatever the statistics option
    per_update = base + exact_kl
    options = {"statistics every update, whole batch (ACKTR's default)": per_update + fisher + factors}
    for samples in (160, 80):
        kept = min(samples, batch) / batch
        options[f"kfac_stats_samples={samples}"] = per_update + fisher + factors * kept
    options["kfac_stats_update=4"] = per_update + (fisher + factors) / 4
    kept = min(160, batch) / batch
    options["kfac_stats_samples=160 + kfac_stats_update=4"] = per_update + (fisher + factors * kept) / 4
    options["kfac_weight_sharing=reduce"] = per_update + fisher + reduce_factors
    options["kfac_weight_sharing=reduce + kfac_stats_samples=160"] = per_update + fisher + reduce_factors * kept
    return {name: {"seconds": seconds, "ratio_to_a2c": seconds / a2c_update} for name, seconds in options.items()}


def cnn_tables(cnn: dict[str, Any]) -> str:
    """Markdown tables of the NatureCNN microbenchmark."""
    lines = [
        f"Batch {cnn['batch']}, 1 thread, median of {cnn['repeats']}:",
        "",
        *table_header(["piece", "seconds"]),
    ]
    for key in (
        "A2C forward",
        "A2C forward+backward",
        "A2C RMSprop step",
        "ACKTR forward with recording hooks",
        "Fisher backward (to layer outputs)",
        EXACT_KL,
    ):
        lines.append(f"| {key} | {cnn[key]:.3f} |")
    for key, value in cnn["totals"].items():
        lines.append(f"| {key} | {value:.3f} |")
    columns = [
        "A dim",
        "G dim",
        "A patch matrix MB",
        PATCHES,
        A_FACTOR,
        A_REDUCE,
        "G rows + matmul",
        G_REDUCE,
        "inverses (cholesky_inverses, A and G)",
        "preconditioning (G⁻¹ ∇ A⁻¹)",
    ]
    lines += ["", *table_header(["layer", *columns])]
    for name, entry in cnn["layers"].items():
        cells = [cell(entry.get(c)) for c in columns]
        lines.append(f"| {name} ({entry['type']}) | " + " | ".join(cells) + " |")
    lines += ["", *table_header(["ACKTR train() per update, projected from the pieces", "seconds", "x A2C's update"])]
    for name, projection in cnn["projections"].items():
        lines.append(f"| {name} | {projection['seconds']:.2f} | {projection['ratio_to_a2c']:.1f} |")
    return "\n".join(lines)
