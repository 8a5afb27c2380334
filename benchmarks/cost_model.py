"""
Analytic cost model of one update: the multiply-adds of A2C's forward and backward pass next to those of each part
K-FAC adds (Fisher backward, factors, inverses amortised over ``kfac_update``, preconditioning), per layer shape and
batch. This is the lower bound on any hardware; ``--measure`` converts it to milliseconds at this machine's measured
matrix-multiply rate (1 thread), to set beside the measured phase times of ``throughput.py``.

Counts (N samples, a layer with d inputs + 1 bias column, o outputs, T output positions; conv: d = C·kh·kw):

* forward ``N·T·d·o``; A2C's backward twice that (weight and input gradients; the first layer needs no input gradient);
  the rollout's forward passes are the same for both algorithms and counted once in A2C's update;
* Fisher backward: input gradients only, ``N·T·d·o`` for every layer but the first;
* A factor ``N·T·(d+1)²`` (expand) or ``N·T·d + N·(d+1)²`` (reduce: a sum over positions, then one product per sample);
  G factor ``N·T·o²`` (expand) or ``N·T·o + N·o²`` (reduce); conventions in ``sb3_acktr/kfac/factors.py``;
* inverses: Cholesky (n³/3) and the inverse from it (2n³/3) for both factors, every ``kfac_update`` updates;
* preconditioning ``G⁻¹ ∇ A⁻¹``: ``o²·(d+1) + o·(d+1)²``.

    python benchmarks/cost_model.py                   # NatureCNN at batch 640, MinAtar's network at 320, both forms
    python benchmarks/cost_model.py --measure         # plus milliseconds at this machine's matmul rate
"""

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch as th

th.set_num_threads(1)

from gymnasium import spaces  # noqa: E402
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, NatureCNN  # noqa: E402
from tables import table_header  # noqa: E402
from torch import nn  # noqa: E402

from sb3_acktr.kfac.factors import SUPPORTED_MODULES  # noqa: E402
from sb3_acktr.minatar import MinAtarCNN  # noqa: E402

#: Damped inverses are recomputed every this many updates (ACKTR's default kfac_update)
INVERSE_INTERVAL = 10


@dataclass(frozen=True)
class LayerShape:
    """A layer with Kronecker factors: d inputs (without the bias column), o outputs, T output positions."""

    name: str
    d: int
    o: int
    positions: int
    bias: bool

    @property
    def a_dim(self) -> int:
        return self.d + int(self.bias)


def layer_shapes(extractor: BaseFeaturesExtractor, n_actions: int) -> list[LayerShape]:
    """The Kronecker-factored layers of an actor-critic policy on ``extractor``: its layers, the action and value heads."""
    shapes: list[LayerShape] = []

    def record(name: str) -> Callable[[nn.Module, tuple[th.Tensor, ...], th.Tensor], None]:
        def hook(module: nn.Module, inputs: tuple[th.Tensor, ...], output: th.Tensor) -> None:
            assert isinstance(module, SUPPORTED_MODULES)
            d = module.weight[0].numel()
            positions = output[0, 0].numel() if isinstance(module, nn.Conv2d) else 1
            shapes.append(LayerShape(name, d, output.shape[1], positions, module.bias is not None))

        return hook

    handles = [
        module.register_forward_hook(record(name))
        for name, module in extractor.named_modules()
        if isinstance(module, SUPPORTED_MODULES)
    ]
    shape = extractor._observation_space.shape
    assert shape is not None
    with th.no_grad():
        extractor(th.zeros(1, *shape))
    for handle in handles:
        handle.remove()
    features = extractor.features_dim
    return [*shapes, LayerShape("action_net", features, n_actions, 1, True), LayerShape("value_net", features, 1, 1, True)]


def costs(shapes: list[LayerShape], batch: int, weight_sharing: str) -> dict[str, float]:
    """Multiply-adds of each part of one update (see the module docstring)."""
    n = batch
    forward = sum(n * s.positions * s.d * s.o for s in shapes)
    first = shapes[0]
    input_grads = forward - n * first.positions * first.d * first.o
    parts: dict[str, float] = {"A2C forward (rollout + loss)": 2 * forward, "A2C backward": forward + input_grads}
    parts["A2C update"] = parts["A2C forward (rollout + loss)"] + parts["A2C backward"]
    parts["Fisher backward"] = input_grads
    a_factors = g_factors = 0.0
    for s in shapes:
        if weight_sharing == "reduce" and s.positions > 1:
            a_factors += n * s.positions * s.d + n * s.a_dim**2
            g_factors += n * s.positions * s.o + n * s.o**2
        else:
            a_factors += n * s.positions * s.a_dim**2
            g_factors += n * s.positions * s.o**2
    parts["A factors"] = a_factors
    parts["G factors"] = g_factors
    parts["inverses (amortised)"] = sum(s.a_dim**3 + s.o**3 for s in shapes) / INVERSE_INTERVAL
    parts["preconditioning"] = sum(s.o**2 * s.a_dim + s.o * s.a_dim**2 for s in shapes)
    extra = ("Fisher backward", "A factors", "G factors", "inverses (amortised)", "preconditioning")
    parts["ACKTR update"] = parts["A2C update"] + sum(parts[key] for key in extra)
    return parts


def matmul_rate(size: int = 1024, repeats: int = 5) -> float:
    """Multiply-adds per second of a float32 ``size``² matrix product on one thread (median of ``repeats``)."""
    a, b = th.randn(size, size), th.randn(size, size)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return size**3 / float(np.median(times))


def table(name: str, shapes: list[LayerShape], batch: int, rate: float | None) -> str:
    """Markdown: each part's multiply-adds for both forms, as a multiple of A2C's update, and ms at ``rate``."""
    by_form = {form: costs(shapes, batch, form) for form in ("expand", "reduce")}
    a2c = by_form["expand"]["A2C update"]
    columns = ["part", "expand GMAC", "reduce GMAC", "expand / A2C update", "reduce / A2C update"]
    if rate is not None:
        columns += ["expand ms", "reduce ms"]
    layers = ", ".join(
        f"{s.name} {s.a_dim}x{s.o}" + (f" at {s.positions} positions" if s.positions > 1 else "") for s in shapes
    )
    lines = [f"### {name}, batch {batch}", "", f"Kronecker factors (A x G dims): {layers}.", "", *table_header(columns)]
    for part in by_form["expand"]:
        values = [by_form[form][part] for form in ("expand", "reduce")]
        row = [part, *(f"{v / 1e9:.3f}" for v in values), *(f"{v / a2c:.2f}" for v in values)]
        if rate is not None:
            row += [f"{1e3 * v / rate:.1f}" for v in values]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", action="store_true", help="Also give ms at this machine's float32 matmul rate")
    args = parser.parse_args(argv)
    rate = matmul_rate() if args.measure else None
    nature = NatureCNN(spaces.Box(0, 255, shape=(4, 84, 84), dtype=np.uint8), features_dim=512)
    minatar = MinAtarCNN(spaces.Box(0.0, 1.0, shape=(4, 10, 10), dtype=np.float32))
    parts = ["## Cost model: multiply-adds of one update", ""]
    if rate is not None:
        parts += [f"Measured float32 matmul rate (1024², 1 thread): {rate / 1e9:.1f} GMAC/s.", ""]
    parts += [
        table("NatureCNN (Pong, 6 actions)", layer_shapes(nature, 6), 640, rate),
        "",
        table("MinAtar network (Breakout, 3 actions)", layer_shapes(minatar, 3), 320, rate),
    ]
    print("\n".join(parts))


if __name__ == "__main__":
    main()
