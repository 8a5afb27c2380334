"""
The exact KL of every update of whole training runs against the trust region's δ: does the region hold over a run?

Reads the ``progress.csv`` that ``sample_efficiency.py --train-log DIR`` writes (SB3's logger, one row per update)
and prints, per run, the exact KL (``train/exact_kl``, 64 samples of the batch, policy before and after the step) in
units of δ (the median, the 90th percentile, the largest), the share of updates above δ and above 2δ, and the median
exact KL over the actor's quadratic-model KL (``train/quadratic_kl_actor``, the fresh step's model).

    python benchmarks/sample_efficiency.py --env CartPoleNoVel-v1 --algo acktr_lstm --seed 0 --out-dir /tmp/runs \\
        --train-log benchmarks/results/recurrent/train_logs/CartPoleNoVel-v1__acktr_lstm__seed0
    python benchmarks/kl_in_runs.py --delta 0.01 benchmarks/results/recurrent/train_logs/CartPoleNoVel-v1__acktr_lstm__seed*
"""

import argparse
import csv
from pathlib import Path
from typing import Any

import numpy as np
from tables import table_header

COLUMNS = ["run", "updates", "exact KL / δ: median", "90th percentile", "largest", "share > δ", "share > 2δ", "exact / model"]


def kl_statistics(folder: Path, delta: float) -> dict[str, Any]:
    """
    :param folder: A ``--train-log`` folder (holding ``progress.csv``)
    :param delta: The trust region's δ (``kfac_clip / 2``), the unit of the KL
    :return: The statistics of the run's updates
    """
    with open(folder / "progress.csv") as file:
        rows = [row for row in csv.DictReader(file) if row.get("train/exact_kl")]
    if not rows:
        raise ValueError(f"{folder / 'progress.csv'} has no train/exact_kl: write it with sample_efficiency.py --train-log.")
    exact = np.array([float(row["train/exact_kl"]) for row in rows])
    model = np.array([float(row["train/quadratic_kl_actor"]) for row in rows])
    return {
        "run": folder.name,
        "updates": len(rows),
        "median": float(np.median(exact)) / delta,
        "p90": float(np.percentile(exact, 90)) / delta,
        "largest": float(exact.max()) / delta,
        "above_delta": float(np.mean(exact > delta)),
        "above_two_delta": float(np.mean(exact > 2 * delta)),
        "exact_over_model": float(np.median(exact[model > 0] / model[model > 0])),
    }


def main(argv: list[str] | None = None) -> None:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+", help="--train-log folders of runs with the same δ")
    parser.add_argument("--delta", type=float, required=True, help="The trust region's δ: kfac_clip / 2 of the runs")
    args = parser.parse_args(argv)
    lines = table_header(COLUMNS)
    for folder in args.folders:
        stats = kl_statistics(folder, args.delta)
        lines.append(
            f"| {stats['run']} | {stats['updates']} | {stats['median']:.3f} | {stats['p90']:.3f} | {stats['largest']:.2f} | "
            f"{stats['above_delta']:.1%} | {stats['above_two_delta']:.1%} | {stats['exact_over_model']:.2f} |"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
