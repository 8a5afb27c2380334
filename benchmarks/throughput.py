"""
Compute cost of ACKTR against SB3's A2C, measured as the benchmark protocol asks (docs/benchmark.md).

Every figure is a ratio taken in one run: for each configuration A2C and ACKTR get the same env, policy, ``n_envs``,
``n_steps``, device and seed, one short warm-up each, then ``model.learn()`` is timed alternately
(A2C, ACKTR, A2C, ACKTR, ...) and the median steps/s of each gives the ratio ACKTR / A2C. Then one ACKTR update is
split into phases by wrapping the functions that do the work (timers installed by this script, nothing in the
package is changed), and the NatureCNN costs at batch 640 are timed on their own.

    python benchmarks/throughput.py --out benchmarks/results/throughput.json   # full run, ~20 min on 1 CPU thread
    python benchmarks/throughput.py --quick                                     # CartPole only, a few seconds
    python benchmarks/throughput.py --names "CartPole-v1 8x20" --no-breakdown --no-cnn --repeats 40 --updates 10
"""

import argparse
import json
import os
import statistics
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch as th

# Small networks on 2 shared cores: one torch thread (see DESIGN.md, "Speed")
th.set_num_threads(1)

from cnn_costs import cnn_microbenchmark, cnn_tables  # noqa: E402
from machine import machine_info, machine_line  # noqa: E402
from phases import breakdown_table, measure_breakdown  # noqa: E402
from tables import table_header  # noqa: E402
from throughput_configs import ALGOS, Config, full_configs, make_model, quick_configs, timed_learn  # noqa: E402

from sb3_acktr import KFAC  # noqa: E402


def measure_throughput(config: Config, seed: int) -> dict[str, Any]:
    """
    Interleaved timing of A2C and ACKTR on one configuration.

    :param config: The configuration
    :param seed: Seed of both models and envs
    :return: Per-run seconds, median steps/s of each, the ratio of the medians and the per-pair ratios
    """
    models = {algo: make_model(algo, config, seed) for algo in ALGOS}

    def run(algo: str, updates: int) -> float:
        return timed_learn(models[algo], updates)

    for algo in ALGOS:  # warm-up: one update each
        run(algo, 1)
    seconds: dict[str, list[float]] = {algo: [] for algo in ALGOS}
    for _ in range(config.repeats):
        for algo in ALGOS:
            seconds[algo].append(run(algo, config.updates))
    acktr_optimizer = models["ACKTR"].policy.optimizer
    assert isinstance(acktr_optimizer, KFAC)
    for model in models.values():
        model.get_env().close()  # type: ignore[union-attr]
    steps = config.updates * config.batch
    steps_per_s = {algo: [steps / s for s in seconds[algo]] for algo in ALGOS}
    medians = {algo: statistics.median(values) for algo, values in steps_per_s.items()}
    pair_ratios = [acktr / a2c for a2c, acktr in zip(steps_per_s["A2C"], steps_per_s["ACKTR"], strict=True)]
    kfac_update = models["ACKTR"].kfac_update  # type: ignore[attr-defined]
    return {
        **asdict(config),
        "batch": config.batch,
        "policy": config.policy,
        "steps_per_run": steps,
        "seconds": seconds,
        "steps_per_s": steps_per_s,
        "median_steps_per_s": medians,
        "seconds_per_update": {algo: config.batch / medians[algo] for algo in ALGOS},
        "ratio": medians["ACKTR"] / medians["A2C"],
        "pair_ratios": pair_ratios,
        # Each pair's runs are adjacent in time: their median follows a load that drifts between runs less than the
        # ratio of the two medians does
        "median_pair_ratio": statistics.median(pair_ratios),
        # ACKTR refreshes its inverses every kfac_update updates; a run of fewer updates may hold none
        "acktr_updates_total": acktr_optimizer.steps,
        "acktr_inverse_interval": kfac_update,
    }


def throughput_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the interleaved measurements."""
    lines = table_header(
        [
            "configuration",
            "batch",
            "A2C steps/s",
            "ACKTR steps/s",
            "ACKTR / A2C",
            "per pair: median (range)",
            "A2C s/update",
            "ACKTR s/update",
            "runs x updates",
        ]
    )
    for row in rows:
        medians, per_update = row["median_steps_per_s"], row["seconds_per_update"]
        lines.append(
            f"| {row['name']} | {row['batch']} | {medians['A2C']:,.0f} | {medians['ACKTR']:,.0f} | **{row['ratio']:.2f}** | "
            f"{row['median_pair_ratio']:.2f} ({min(row['pair_ratios']):.2f}–{max(row['pair_ratios']):.2f}) | "
            f"{per_update['A2C']:.3f} | "
            f"{per_update['ACKTR']:.3f} | {row['repeats']} x {row['updates']} |"
        )
    return "\n".join(lines)


def render_markdown(results: dict[str, Any]) -> str:
    """The whole report as markdown."""
    parts = [
        "## Throughput: ACKTR / A2C (interleaved, same run)",
        "",
        machine_line(results["machine"]),
        "",
        throughput_table(results["throughput"]),
    ]
    if results["breakdown"]:
        repeats = results["breakdown"][0]["repeats"]
        note = (
            f"Milliseconds per update and share of the update: each phase's median over {repeats} interleaved runs "
            "(A2C, ACKTR, ...) of 10 updates (ACKTR: one inverse refresh per run), exclusive times (a phase excludes "
            "the timed phases nested in it)."
        )
        parts += ["", "## One ACKTR update, by phase", "", note, "", breakdown_table(results["breakdown"], "ACKTR")]
        parts += ["", "## One A2C update, by phase (same configurations)", "", breakdown_table(results["breakdown"], "A2C")]
    if results.get("cnn"):
        parts += ["", "## NatureCNN at batch 640: A2C's update and ACKTR's extra costs", "", cnn_tables(results["cnn"])]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    """
    ``python benchmarks/throughput.py [--quick] [--out FILE.json] [--only SUBSTRING ...]``.

    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CartPole only, tiny budgets, one repeat (a few seconds)")
    parser.add_argument("--out", type=Path, help="Write the results as JSON here, and the markdown beside it (.md)")
    parser.add_argument("--only", nargs="*", help="Keep only the configurations whose name contains one of these")
    parser.add_argument("--names", nargs="*", help="Keep only the configurations with exactly these names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-breakdown", action="store_true", help="Skip the per-phase breakdown")
    parser.add_argument("--no-cnn", action="store_true", help="Skip the NatureCNN microbenchmark")
    parser.add_argument(
        "--repeats", type=int, help="Timed runs of each algorithm per configuration (more, shorter runs: pairs closer in time)"
    )
    parser.add_argument("--updates", type=int, help="Updates per timed run (10: one ACKTR inverse refresh per run)")
    args = parser.parse_args(argv)

    configs = quick_configs() if args.quick else full_configs()
    overrides = {name: getattr(args, name) for name in ("repeats", "updates") if getattr(args, name) is not None}
    configs = [replace(config, **overrides) for config in configs]
    if args.only:
        configs = [c for c in configs if any(word in c.name for word in args.only)]
    if args.names:
        configs = [c for c in configs if c.name in args.names]
    results: dict[str, Any] = {"machine": machine_info(), "quick": args.quick, "throughput": [], "breakdown": [], "cnn": None}

    for config in configs:
        print(f"throughput: {config.name} ...", file=sys.stderr, flush=True)
        row = measure_throughput(config, args.seed)
        results["throughput"].append(row)
        print(f"  ratio ACKTR/A2C {row['ratio']:.3f}  {row['median_steps_per_s']}", file=sys.stderr, flush=True)

    if not args.no_breakdown:
        names = {c.name: c for c in (quick_configs() if args.quick else full_configs())}
        chosen = (
            ["CartPole-v1 8x20"]
            if args.quick
            else [
                "CartPole-v1 8x20",
                "HalfCheetah-v5 1x2500",
                "HalfCheetah-v5 1x2500, [1024, 1024]",
                "PongNoFrameskip-v4 16x5",
                "PongNoFrameskip-v4 32x20",
                "PongNoFrameskip-v4 32x20, kfac_stats_samples=160",
                "PongNoFrameskip-v4 32x20, kfac_weight_sharing=reduce",
                "MinAtar/Breakout-v1 16x20",
                "MinAtar/Breakout-v1 16x20, kfac_weight_sharing=reduce",
            ]
        )
        for name in chosen:
            if (args.only and not any(word in name for word in args.only)) or (args.names and name not in args.names):
                continue
            print(f"breakdown: {name} ...", file=sys.stderr, flush=True)
            repeats = 1 if args.quick else 3
            results["breakdown"].append(measure_breakdown(names[name], args.seed, updates=10, repeats=repeats))

    if not (args.quick or args.no_cnn):
        print("NatureCNN microbenchmark ...", file=sys.stderr, flush=True)
        results["cnn"] = cnn_microbenchmark()

    results["machine"]["load_average_end"] = list(os.getloadavg())
    markdown = render_markdown(results)
    results["markdown"] = markdown
    print(markdown)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        args.out.with_suffix(".md").write_text(markdown)
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
