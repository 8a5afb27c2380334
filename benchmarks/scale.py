"""
Data-parallel ACKTR: steps/s at 1 and 2 ranks (``torchrun``, gloo, one torch thread per rank), measured in one run,
the bytes each update communicates, and the projected throughput at N ranks.

For each configuration (the throughput benchmark's: the same env, ``n_envs``, ``n_steps`` and network on every rank),
1-rank and 2-rank runs alternate (1, 2, 1, 2, ...), each a fresh ``torchrun`` that builds the model, warms up for
one update, then times ``learn()`` over the configuration's updates; with timers around the rollout, ``train()``
and the collectives (the time spent in them includes waiting for the slower rank). At the end of each 2-rank run
the update's all-reduce of the same number of bytes is timed on its own: the pure communication cost here.

The projection for N ranks keeps the 1-rank rollout and update compute and adds a ring all-reduce of the update's
bytes, ``2(N−1)·α + 2(N−1)/N · bytes / B``, over a stated interconnect (latency α, bandwidth B).

    python benchmarks/scale.py --out benchmarks/results/scale.json   # ~10 min
    python benchmarks/scale.py --quick                               # CartPole, one repeat, seconds
    python benchmarks/scale.py --placements --out benchmarks/results/scale/placements.json   # the inverse placements

Each rank steps its envs on its own core here (2 cores): a third process on the machine slows the ranks unevenly.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch as th

# Small networks on 2 shared cores: one torch thread per rank (see DESIGN.md, "Speed")
th.set_num_threads(1)

from machine import machine_info  # noqa: E402
from phases import PhaseTimer, rollout_target  # noqa: E402
from tables import table_header  # noqa: E402
from throughput_configs import Config, make_model, timed_learn  # noqa: E402
from torch import distributed as dist  # noqa: E402

from sb3_acktr import KFAC  # noqa: E402
from sb3_acktr.acktr import acktr as acktr_module  # noqa: E402
from sb3_acktr.kfac import optimizer as kfac_optimizer  # noqa: E402

CONFIGS = {
    "HalfCheetah-v5 1x2500": Config("HalfCheetah-v5 1x2500", "scale", "HalfCheetah-v5", 1, 2500, updates=5, repeats=3),
    "CartPole-v1 8x20": Config("CartPole-v1 8x20", "scale", "CartPole-v1", 8, 20, updates=100, repeats=3),
}
#: ``--placements``: 2 ranks with every inverse on every rank against each on one rank; 10 updates, so that each
#: timed run holds one inverse refresh (``kfac_update`` 10)
PLACEMENT_CONFIGS = {
    "HalfCheetah-v5 1x2500": Config("HalfCheetah-v5 1x2500", "scale", "HalfCheetah-v5", 1, 2500, updates=10, repeats=3),
    "HalfCheetah-v5 1x2500, [1024, 1024]": Config(
        "HalfCheetah-v5 1x2500, [1024, 1024]", "scale", "HalfCheetah-v5", 1, 2500, updates=10, repeats=3, width=1024
    ),
}
#: Interconnects of the projection: (name, latency α in seconds, bandwidth B in bytes/s)
INTERCONNECTS = [("10 Gbit/s Ethernet", 20e-6, 10e9 / 8), ("100 Gbit/s InfiniBand", 2e-6, 100e9 / 8)]
PROJECTED_RANKS = [1, 2, 4, 8, 16, 32, 64]
BYTES_PER_VALUE = 4  # float32


def communicated_bytes(optimizer: KFAC) -> dict[str, int]:
    """
    What one update all-reduces, from the network's shapes: the batch factors and the diagonal-fallback gradients
    (with the two sample counts), the gradients, and the stop flag; under ``distributed_inverses="one_rank"`` the
    inverses too, once per ``inverse_interval`` (reported apart).
    """
    factors = sum(layer.a_dim**2 + layer.g_dim**2 for layer in optimizer.layers)
    fallback = sum(param.numel() for param in optimizer.fallback_params)
    gradients = sum(param.numel() for group in optimizer.param_groups for param in group["params"])
    return {
        "factors": (factors + fallback) * BYTES_PER_VALUE + 2 * 8,
        "gradients": gradients * BYTES_PER_VALUE,
        "stop_flag": 8,
        "inverses_one_rank_per_refresh": factors * BYTES_PER_VALUE,
    }


def worker(config: Config, seed: int, out: Path) -> None:
    """One timed run on this rank (under torchrun); rank 0 writes the figures to ``out``."""
    model = make_model("ACKTR", config, seed)
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    optimizer = model.policy.optimizer
    assert isinstance(optimizer, KFAC)
    timed_learn(model, 1, world_size)  # warm-up
    timer = PhaseTimer()
    targets = [
        rollout_target(model, "rollout"),
        (type(model), "train", "update"),
        (kfac_optimizer, "all_reduce_sum", "collectives"),
        (kfac_optimizer, "all_reduce_mean_", "collectives"),
        (acktr_module, "all_agree", "collectives"),
        (kfac_optimizer, "cholesky_inverses", "inverses"),
    ]
    with timer.installed(targets):
        # learn() counts global steps: the same number of updates on every rank count
        seconds = timed_learn(model, config.updates, world_size)
    figures: dict[str, Any] = {
        "ranks": world_size,
        "seconds": seconds,
        "steps_per_s": config.updates * config.batch * world_size / seconds,
        "per_update_s": {phase: value / config.updates for phase, value in timer.exclusive.items()},
        "bytes": communicated_bytes(optimizer),
    }
    if world_size > 1:
        total = sum(value for key, value in figures["bytes"].items() if key != "inverses_one_rank_per_refresh")
        buffer = th.zeros(total // BYTES_PER_VALUE)
        times = []
        for _ in range(20):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(buffer)
            times.append(time.perf_counter() - start)
        figures["all_reduce_alone_s"] = statistics.median(times)
    if not dist.is_initialized() or dist.get_rank() == 0:
        out.write_text(json.dumps(figures))


def launch(config_name: str, ranks: int, seed: int, updates: int, inverses: str = "all_ranks") -> dict[str, Any]:
    """A fresh ``torchrun`` of :func:`worker` with ``ranks`` processes."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "figures.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
        command += [__file__, "--worker", config_name, "--seed", str(seed), "--updates", str(updates), "--figures", str(out)]
        command += ["--inverses", inverses]
        result = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{config_name} at {ranks} ranks failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return json.loads(out.read_text())


def projection(one_rank: dict[str, Any], batch: int) -> list[dict[str, Any]]:
    """Projected steps/s at N ranks: the 1-rank compute per update plus a ring all-reduce of the update's bytes."""
    compute = one_rank["seconds"] / one_rank["updates"]
    size = sum(value for key, value in one_rank["bytes"].items() if key != "inverses_one_rank_per_refresh")
    rows = []
    for name, latency, bandwidth in INTERCONNECTS:
        for ranks in PROJECTED_RANKS:
            communication = 2 * (ranks - 1) * latency + 2 * (ranks - 1) / ranks * size / bandwidth
            rows.append(
                {
                    "interconnect": name,
                    "ranks": ranks,
                    "communication_s": communication,
                    "steps_per_s": ranks * batch / (compute + communication),
                    "speedup": ranks * compute / (compute + communication),
                }
            )
    return rows


def measure(config: Config, seed: int, repeats: int) -> dict[str, Any]:
    """Interleaved 1-rank and 2-rank runs of one configuration, their median steps/s, the ratio and the projection."""
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for _ in range(repeats):
        for ranks in (1, 2):
            runs[ranks].append(launch(config.name, ranks, seed, config.updates))
            print(f"{config.name}, {ranks} rank(s): {runs[ranks][-1]['steps_per_s']:.0f} steps/s", file=sys.stderr)
    medians = {ranks: statistics.median(run["steps_per_s"] for run in results) for ranks, results in runs.items()}
    two = runs[2]
    update_s = statistics.median(run["per_update_s"].get("update", 0.0) for run in two)
    collectives_s = statistics.median(run["per_update_s"].get("collectives", 0.0) for run in two)
    all_reduce_s = statistics.median(run["all_reduce_alone_s"] for run in two)
    one_rank = {**runs[1][0], "seconds": statistics.median(run["seconds"] for run in runs[1]), "updates": config.updates}
    return {
        "config": config.name,
        "batch_per_rank": config.batch,
        "runs": {str(ranks): results for ranks, results in runs.items()},
        "median_steps_per_s": {str(ranks): value for ranks, value in medians.items()},
        "ratio_2_to_1": medians[2] / medians[1],
        "update_s_2_ranks": update_s,
        "collectives_s_2_ranks": collectives_s,
        "all_reduce_alone_s": all_reduce_s,
        "communication_share_of_update": all_reduce_s / update_s if update_s else None,
        "bytes": runs[1][0]["bytes"],
        "projection": projection(one_rank, config.batch),
    }


def measure_placements(config: Config, seed: int, repeats: int) -> dict[str, Any]:
    """Interleaved 2-rank runs with ``distributed_inverses`` "all_ranks" and "one_rank": steps/s and time per update."""
    runs: dict[str, list[dict[str, Any]]] = {"all_ranks": [], "one_rank": []}
    for _ in range(repeats):
        for placement in runs:
            runs[placement].append(launch(config.name, 2, seed, config.updates, placement))
            print(f"{config.name}, {placement}: {runs[placement][-1]['steps_per_s']:.0f} steps/s", file=sys.stderr)

    def median(placement: str, phase: str) -> float:
        return statistics.median(run["per_update_s"].get(phase, 0.0) for run in runs[placement])

    return {
        "config": config.name,
        "runs": runs,
        "median_steps_per_s": {
            placement: statistics.median(run["steps_per_s"] for run in results) for placement, results in runs.items()
        },
        "inverses_s_per_update": {placement: median(placement, "inverses") for placement in runs},
        "collectives_s_per_update": {placement: median(placement, "collectives") for placement in runs},
        "update_s": {placement: median(placement, "update") for placement in runs},
        "bytes": runs["all_ranks"][0]["bytes"],
    }


def placements_markdown(results: list[dict[str, Any]]) -> str:
    lines = ["2 ranks, each inverse on every rank (all_ranks) or on one rank (one_rank); medians of interleaved runs:", ""]
    columns = ["configuration", "steps/s all_ranks", "steps/s one_rank", "**one / all**", "inverses (ms/update) all / one"]
    lines += table_header([*columns, "in collectives (ms/update) all / one", "inverses shared per refresh (bytes)"])
    for result in results:
        steps, inverses, collectives = (
            result[key] for key in ("median_steps_per_s", "inverses_s_per_update", "collectives_s_per_update")
        )
        ratio = steps["one_rank"] / steps["all_ranks"]
        inverse_ms = f"{1e3 * inverses['all_ranks']:.2f} / {1e3 * inverses['one_rank']:.2f}"
        collective_ms = f"{1e3 * collectives['all_ranks']:.2f} / {1e3 * collectives['one_rank']:.2f}"
        lines.append(
            f"| {result['config']} | {steps['all_ranks']:.0f} | {steps['one_rank']:.0f} | **{ratio:.2f}** | {inverse_ms} | "
            f"{collective_ms} | {result['bytes']['inverses_one_rank_per_refresh']:,} |"
        )
    return "\n".join(lines) + "\n"


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["Steps/s, median of interleaved runs:", ""]
    lines += table_header(
        [
            "configuration",
            "1 rank",
            "2 ranks",
            "**2 / 1**",
            "bytes per update",
            "all-reduce alone (ms)",
            "in collectives (ms)",
            "update (ms)",
            "all-reduce / update",
        ]
    )
    for result in results:
        size = result["bytes"]["factors"] + result["bytes"]["gradients"] + result["bytes"]["stop_flag"]
        lines.append(
            f"| {result['config']} | {result['median_steps_per_s']['1']:.0f} | {result['median_steps_per_s']['2']:.0f} | "
            f"**{result['ratio_2_to_1']:.2f}** | {size:,} | {1e3 * result['all_reduce_alone_s']:.2f} | "
            f"{1e3 * result['collectives_s_2_ranks']:.2f} | {1e3 * result['update_s_2_ranks']:.2f} | "
            f"{result['communication_share_of_update']:.1%} |"
        )
    for result in results:
        lines += ["", f"Projected steps/s of {result['config']} (per rank as measured at 1 rank here):", ""]
        lines += table_header(["interconnect", *(f"{n} ranks" for n in PROJECTED_RANKS)])
        for name, _, _ in INTERCONNECTS:
            rows = [row for row in result["projection"] if row["interconnect"] == name]
            lines.append(
                f"| {name} | " + " | ".join(f"{row['steps_per_s']:.0f} ({row['speedup']:.1f}x)" for row in rows) + " |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="Where the json goes (a .md table beside it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="CartPole, 10 updates, one repeat")
    parser.add_argument("--placements", action="store_true", help="Compare the inverse placements at 2 ranks instead")
    parser.add_argument("--worker", choices=sorted(CONFIGS | PLACEMENT_CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--inverses", default="all_ranks", help=argparse.SUPPRESS)
    parser.add_argument("--updates", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--figures", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        config = (CONFIGS | PLACEMENT_CONFIGS)[args.worker]
        config.updates = args.updates
        config.acktr_kwargs = {"kfac_distributed_inverses": args.inverses}
        worker(config, args.seed, args.figures)
        return
    if args.placements:
        results = [measure_placements(config, args.seed, config.repeats) for config in PLACEMENT_CONFIGS.values()]
        table = placements_markdown(results)
    else:
        configs = list(CONFIGS.values())
        if args.quick:
            configs = [Config("CartPole-v1 8x20", "scale", "CartPole-v1", 8, 20, updates=10, repeats=1)]
        results = [measure(config, args.seed, config.repeats) for config in configs]
        table = markdown(results)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine_info(), "results": results}, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
