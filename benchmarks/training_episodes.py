"""
Episodes to a threshold from training episodes, as the ACKTR paper's Table 1 counts them on Atari: the first episode at
which the mean return of the last 100 training episodes reaches human level (Pong 9.3, Breakout 31.8). Reads the
``*.monitor.csv`` files SB3's Monitor writes in each rl-zoo run folder (one per env), orders the episodes of all envs
by completion time, and continues across the folders of a resumed run (``train -i``: each segment a new folder).

    python -m sb3_acktr.zoo train --algo acktr --env PongNoFrameskip-v4 -n 2000000 --save-freq 50000 \\
        --num-threads 1 -f benchmarks/results/atari/logs --seed 0
    python benchmarks/training_episodes.py benchmarks/results/atari/logs/acktr/PongNoFrameskip-v4_1 [..._2 ...]

Several runs side by side, with their curves (the 100-episode mean training return against episodes) in one plot:

    python benchmarks/training_episodes.py --plot docs/_static/atari/PongNoFrameskip-v4.png \
        --run ACKTR benchmarks/results/atari/logs/acktr/PongNoFrameskip-v4_{1,2} \
        --run A2C benchmarks/results/atari/logs/a2c/PongNoFrameskip-v4_{1,2}
"""

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

#: Human-level scores the paper's Table 1 counts episodes to (Mnih et al. 2015)
HUMAN_LEVEL = {"PongNoFrameskip-v4": 9.3, "BreakoutNoFrameskip-v4": 31.8}
WINDOW = 100


def read_episodes(folder: Path) -> list[tuple[float, float, int]]:
    """
    The training episodes of one run folder: ``(completion time in s, return, length)``, in completion order.

    :param folder: An rl-zoo run folder with SB3 ``*.monitor.csv`` files
    :return: The episodes of every env, ordered by completion time
    """
    episodes = []
    files = sorted(folder.glob("*.monitor.csv"))
    if not files:
        raise FileNotFoundError(f"No *.monitor.csv in {folder}: train with rl-zoo (it wraps every env in a Monitor).")
    for path in files:
        with open(path) as file:
            file.readline()  # the Monitor's JSON header line
            for row in csv.DictReader(file):
                episodes.append((float(row["t"]), float(row["r"]), int(row["l"])))
    return sorted(episodes)


def run_returns(folders: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """
    :param folders: The run folders of one training run, in order (segments of a resumed run)
    :return: The returns and the lengths of its episodes, in order
    """
    episodes = [episode for folder in folders for episode in read_episodes(folder)]
    return np.asarray([episode[1] for episode in episodes]), np.asarray([episode[2] for episode in episodes])


def rolling_mean(returns: np.ndarray) -> np.ndarray:
    """The mean of each window of :data:`WINDOW` consecutive episodes (entry i ends at episode i + WINDOW)."""
    return np.convolve(returns, np.ones(WINDOW) / WINDOW, mode="valid") if len(returns) >= WINDOW else np.array([])


def summarize(folders: list[Path], threshold: float | None) -> dict[str, Any]:
    """
    Returns, rolling means and the first episode whose 100-episode mean reaches ``threshold``, over consecutive folders.

    :param folders: The run folders of one training run, in order (segments of a resumed run)
    :param threshold: The threshold, or None
    :return: A summary (episodes, steps, the rolling mean's maximum, episodes and steps to the threshold)
    """
    returns, lengths = run_returns(folders)
    rolling = rolling_mean(returns)
    summary: dict[str, Any] = {
        "episodes": len(returns),
        "steps_in_episodes": int(np.sum(lengths)),
        "best_rolling_mean": float(rolling.max()) if rolling.size else None,
        "last_rolling_mean": float(rolling[-1]) if rolling.size else None,
        "threshold": threshold,
        "episodes_to_threshold": None,
    }
    if threshold is not None and rolling.size:
        reached = np.flatnonzero(rolling >= threshold)
        if reached.size:
            episode = int(reached[0]) + WINDOW  # the episode that completes the first window at the threshold
            summary["episodes_to_threshold"] = episode
            summary["steps_to_threshold"] = int(np.sum(lengths[:episode]))
    return summary


def plot_runs(runs: dict[str, list[Path]], threshold: float | None, path: Path) -> None:
    """
    The 100-episode mean training return of each run against episodes, with the threshold.

    :param runs: The folders of each run, by label
    :param threshold: The threshold line (None: none)
    :param path: The image to write
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for label, folders in runs.items():
        rolling = rolling_mean(run_returns(folders)[0])
        axes.plot(np.arange(WINDOW, WINDOW + len(rolling)), rolling, label=label)
    if threshold is not None:
        axes.axhline(threshold, color="gray", linestyle="--", label=f"human level ({threshold:g})")
    axes.set_xlabel("training episodes")
    axes.set_ylabel(f"mean return of the last {WINDOW} episodes")
    axes.set_title(next(iter(runs.values()))[0].name.rsplit("_", 1)[0])
    axes.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="*", help="The run folders of one run, in order")
    parser.add_argument(
        "--run", nargs="+", action="append", metavar=("LABEL", "FOLDER"), help="A labelled run and its folders, in order"
    )
    parser.add_argument("--plot", type=Path, help="Write the runs' curves to this image")
    parser.add_argument("--threshold", type=float, help="Default: human level for Pong/Breakout, from the folder name")
    args = parser.parse_args(argv)
    runs = {label: [Path(folder) for folder in folders] for label, *folders in args.run or []}
    if args.folders:
        runs["run"] = args.folders
    if not runs or not all(runs.values()):
        parser.error("give the folders of one run, or --run LABEL FOLDER [FOLDER ...] for each run")
    threshold = args.threshold
    if threshold is None:
        first = next(iter(runs.values()))[0].name
        threshold = next((value for env, value in HUMAN_LEVEL.items() if first.startswith(env)), None)
    summaries = {label: summarize(folders, threshold) for label, folders in runs.items()}
    print(json.dumps(summaries["run"] if list(summaries) == ["run"] else summaries, indent=1))
    if args.plot is not None:
        plot_runs(runs, threshold, args.plot)


if __name__ == "__main__":
    main()
