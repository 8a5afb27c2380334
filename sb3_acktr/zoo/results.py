"""Print and plot the evaluations rl-zoo's ``train --eval-freq`` saved (``evaluations.npz``) for a run."""

import argparse
from pathlib import Path

import numpy as np
from huggingface_sb3 import EnvironmentName
from rl_zoo3.utils import get_latest_run_id

from sb3_acktr.extras import import_optional


def run_folder(log_folder: str, algo: str, env_id: str, exp_id: int) -> Path:
    """
    The folder of one rl-zoo run: ``{log_folder}/{algo}/{env_name}_{exp_id}`` (``exp_id=0``: the latest), with the env
    id named as rl-zoo names its folders (``MinAtar/Breakout-v1`` -> ``MinAtar-Breakout-v1``).

    :param log_folder: rl-zoo's ``--log-folder``
    :param algo: Algorithm name
    :param env_id: Environment id
    :param exp_id: Run number, 0 for the latest
    :return: The folder
    :raises FileNotFoundError: If there is no such run
    """
    env_name = str(EnvironmentName(env_id))
    if exp_id == 0:
        exp_id = get_latest_run_id(str(Path(log_folder) / algo), env_name)
    folder = Path(log_folder) / algo / f"{env_name}_{exp_id}"
    if not (folder / "evaluations.npz").is_file():
        raise FileNotFoundError(
            f"No evaluations.npz in {folder}: train with --eval-freq (and the same --log-folder, --algo, --env) first."
        )
    return folder


def summarize(folder: Path, plot: bool = True) -> str:
    """
    A table of the evaluations of a run and, if ``plot``, a learning curve ``evaluations.png`` beside them.

    :param folder: The run folder holding ``evaluations.npz``
    :param plot: Whether to write the PNG (needs matplotlib)
    :return: The table, one line per evaluation
    """
    data = np.load(folder / "evaluations.npz")
    timesteps, results = data["timesteps"], data["results"]
    means, stds = results.mean(axis=1), results.std(axis=1)
    lines = [f"{'timesteps':>10}  {'mean return':>12}  {'std':>8}"]
    lines += [f"{t:>10d}  {m:>12.2f}  {s:>8.2f}" for t, m, s in zip(timesteps, means, stds, strict=True)]
    lines.append(f"best {means.max():.2f} at {timesteps[means.argmax()]} steps; final {means[-1]:.2f} +/- {stds[-1]:.2f}")
    if plot:
        import_optional("matplotlib", "The learning curve plot").use("Agg")
        plt = import_optional("matplotlib.pyplot", "The learning curve plot")

        figure, axis = plt.subplots(figsize=(6, 4))
        axis.plot(timesteps, means)
        axis.fill_between(timesteps, means - stds, means + stds, alpha=0.3)
        axis.set(xlabel="environment steps", ylabel="mean evaluation return", title=folder.name)
        figure.tight_layout()
        figure.savefig(folder / "evaluations.png")
        plt.close(figure)
        lines.append(f"learning curve: {folder / 'evaluations.png'}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """
    ``python -m sb3_acktr.zoo results --algo acktr --env CartPole-v1 [-f logs/] [--exp-id N] [--no-plot]``.

    :param argv: The arguments after ``results``
    """
    parser = argparse.ArgumentParser(prog="python -m sb3_acktr.zoo results", description=__doc__)
    parser.add_argument("--algo", default="acktr", help="RL algorithm")
    parser.add_argument("--env", required=True, help="Environment id")
    parser.add_argument("-f", "--log-folder", default="logs", help="rl-zoo's log folder")
    parser.add_argument("--exp-id", type=int, default=0, help="Run number (default: the latest)")
    parser.add_argument("--no-plot", action="store_true", help="Do not write evaluations.png")
    args = parser.parse_args(argv)
    try:
        folder = run_folder(args.log_folder, args.algo, args.env, args.exp_id)
    except FileNotFoundError as error:
        parser.error(str(error))
    print(summarize(folder, plot=not args.no_plot))
