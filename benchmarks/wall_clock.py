"""
Wall-clock cost per environment step of ACKTR, A2C and PPO as the sample-efficiency runs train them, and the time
each takes to hold a task's threshold.

Each algorithm's model is built exactly as in a ``sample_efficiency.py`` run (rl-zoo's ``ExperimentManager`` on the
same zoo entry, seed 0, one torch thread); after one warm-up update each, ``learn()`` is timed alternately (ACKTR,
A2C, PPO, ACKTR, ...) on ``--steps`` environment steps, ``--repeats`` times, without evaluations. Per algorithm:
the median steps/s and its ratio to ACKTR's (measured in the same run, as the benchmark protocol asks). With the
sample-efficiency results (``--results``), the median steps to hold the threshold divided by the steps/s gives the
wall-clock time to hold it on this machine, one process per run (a bound where the median run never holds it).

    python benchmarks/wall_clock.py --env Hopper-v5 Reacher-v5 --out benchmarks/results/wall_clock.json
    python benchmarks/wall_clock.py --env Acrobot-v1 --out benchmarks/results/wall_clock.json --merge   # one task again
    python benchmarks/wall_clock.py --quick --out /tmp/wall_clock.json    # CartPole, a few hundred steps, seconds
    python benchmarks/wall_clock.py --report benchmarks/results/wall_clock.json   # hold times from newer results
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sample_efficiency
from machine import machine_info, machine_line
from protocol import RESULTS_DIR, THRESHOLDS
from report import algo_name, load_runs, median_steps, run_metrics
from stable_baselines3.common.base_class import BaseAlgorithm
from tables import table_header

#: The algorithms compared, in the order they are timed; ratios are to the first
ALGOS = ("acktr", "a2c", "ppo")


def build_model(algo: str, env_id: str, folder: Path) -> BaseAlgorithm:
    """
    The model a sample-efficiency run of ``algo`` on ``env_id`` trains (seed 0), its files under ``folder``.

    :param algo: ``"acktr"``, ``"a2c"`` or ``"ppo"``
    :param env_id: Environment id
    :param folder: Where rl-zoo may write its logs
    :return: The model, with its training env
    """
    args = sample_efficiency.parse_args(["--env", env_id, "--algo", algo, "--out-dir", str(folder), "--no-progress"])
    run = sample_efficiency.Run(args)
    run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    setup = run.experiment(resume=False).setup_experiment()
    assert setup is not None
    return setup[0]


def steps_per_second(model: BaseAlgorithm, steps: int) -> float:
    """
    Environment steps per second of ``model.learn()`` over at least ``steps`` more steps (whole rollouts).

    :param model: The model
    :param steps: Environment steps to learn on
    :return: Steps/s
    """
    before = model.num_timesteps
    start = time.perf_counter()
    # None: no logging, as the sample-efficiency runs (SB3 annotates an int)
    model.learn(steps, reset_num_timesteps=False, log_interval=None)  # type: ignore[arg-type]
    return (model.num_timesteps - before) / (time.perf_counter() - start)


def measure(env_id: str, steps: int, repeats: int) -> dict[str, Any]:
    """
    Interleaved timing of the three algorithms on one task.

    :param env_id: Environment id
    :param steps: Environment steps per timed ``learn()``
    :param repeats: Timed runs of each algorithm
    :return: Steps/s of every run, the median of each algorithm and its ratio to ACKTR's
    """
    with tempfile.TemporaryDirectory() as folder:
        models = {algo: build_model(algo, env_id, Path(folder)) for algo in ALGOS}
        for model in models.values():  # warm-up: one update each
            steps_per_second(model, 1)
        runs: dict[str, list[float]] = {algo: [] for algo in ALGOS}
        for _ in range(repeats):
            for algo, model in models.items():
                runs[algo].append(steps_per_second(model, steps))
        for model in models.values():
            env = model.get_env()
            assert env is not None
            env.close()
    medians = {algo: statistics.median(values) for algo, values in runs.items()}
    return {
        "env_id": env_id,
        "steps": steps,
        "repeats": repeats,
        "steps_per_s": runs,
        "median_steps_per_s": medians,
        "ratio_to_acktr": {algo: medians[algo] / medians[ALGOS[0]] for algo in ALGOS},
    }


def hold_times(result: dict[str, Any], results_dir: Path) -> dict[str, Any]:
    """
    Median steps to hold the threshold (over the sample-efficiency runs in ``results_dir``) and the minutes it takes at
    the measured steps/s, for each algorithm with runs; a bound (``≥``) where the median run never holds it.

    :param result: One task's timing (:func:`measure`)
    :param results_dir: Folder of ``sample_efficiency.py`` results
    :return: ``{algo: {"sustained": "...", "minutes": "..."}}``
    """
    by_algo = load_runs([results_dir]).get(result["env_id"], {})
    holds = {}
    for algo in ALGOS:
        finished = [run for run in by_algo.get(algo, []) if run.get("done")]
        if not finished:
            continue
        sustained = median_steps([run_metrics(run)["sustained"] for run in finished])
        minutes = sustained.value / result["median_steps_per_s"][algo] / 60
        holds[algo] = {"sustained": str(sustained), "minutes": f"{'≥ ' if sustained.censored else ''}{minutes:.1f}"}
    return holds


def merge(earlier: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    The rows of an earlier file with the tasks timed again replaced in place (new tasks appended).

    :param earlier: The earlier file's rows, each with the machine it was timed on
    :param results: The rows just timed
    :return: The rows to write
    """
    again = {result["env_id"]: result for result in results}
    kept = [again.pop(result["env_id"], result) for result in earlier]
    return kept + list(again.values())


def machine_lines(results: list[dict[str, Any]]) -> list[str]:
    """
    The machine line of each timing session, naming its tasks where the rows come from more than one.

    :param results: Rows, each with the machine it was timed on
    :return: One line per session, in the order of the rows
    """
    envs_by_line: dict[str, list[str]] = {}
    for result in results:
        envs_by_line.setdefault(machine_line(result["machine"]), []).append(result["env_id"])
    if len(envs_by_line) == 1:
        return list(envs_by_line)
    return [f"{', '.join(envs)}: {line}" for line, envs in envs_by_line.items()]


def markdown(results: list[dict[str, Any]]) -> str:
    """The table of a run: steps/s and ratios, and the minutes to hold each threshold where runs exist."""
    lines = [
        "## Wall clock: ACKTR, A2C and PPO as the sample-efficiency runs train them",
        "",
        *[text for line in machine_lines(results) for text in (line, "")],
        *table_header(
            [
                "env",
                "threshold",
                "algorithm",
                "steps/s (median)",
                "/ ACKTR's",
                "per-run steps/s",
                "sustained (median)",
                "minutes to hold",
            ]
        ),
    ]
    for result in results:
        for algo in ALGOS:
            hold = result["holds"].get(algo, {"sustained": "–", "minutes": "–"})
            runs = ", ".join(f"{value:,.0f}" for value in result["steps_per_s"][algo])
            lines.append(
                f"| {result['env_id']} | {THRESHOLDS[result['env_id']]:g} | {algo_name(algo)} | "
                f"{result['median_steps_per_s'][algo]:,.0f} | {result['ratio_to_acktr'][algo]:.2f} | {runs} | "
                f"{hold['sustained']} | {hold['minutes']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", nargs="+", default=["CartPole-v1"], help="Environment ids")
    parser.add_argument("--steps", type=int, default=10_000, help="Environment steps per timed learn() (default 10k)")
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs of each algorithm (default 3)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="Sample-efficiency results, for the hold times")
    parser.add_argument("--out", type=Path, help="Write the results as JSON here, and the markdown beside it (.md)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="Replace only the timed tasks' rows of an existing --out file, keeping its other rows and their machine lines",
    )
    parser.add_argument("--quick", action="store_true", help="CartPole, 500 steps, one repeat: a smoke test")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="JSON",
        help="Time nothing: the minutes to hold of an earlier run's JSON again, from the current --results (rewritten)",
    )
    args = parser.parse_args(argv)
    if args.report is not None:
        earlier = json.loads(args.report.read_text())
        for result in earlier["results"]:
            result["holds"] = hold_times(result, args.results)
        args.report.write_text(json.dumps(earlier, indent=1) + "\n")
        args.report.with_suffix(".md").write_text(markdown(earlier["results"]))
        print(f"wrote {args.report} and {args.report.with_suffix('.md')}", file=sys.stderr)
        return
    if args.quick:
        args.env, args.steps, args.repeats = ["CartPole-v1"], 500, 1
    if args.steps <= 0 or args.repeats <= 0:
        parser.error("--steps and --repeats must be positive")
    if args.merge and (args.out is None or not args.out.is_file()):
        parser.error(f"--merge replaces rows of an existing --out file; {args.out} is not one (drop --merge to write it)")
    info = machine_info()
    sample_efficiency.register()  # ACKTR in rl-zoo's algorithms, as sample_efficiency.py does
    results = []
    for env_id in args.env:
        result = measure(env_id, args.steps, args.repeats)
        result["machine"] = info
        result["holds"] = hold_times(result, args.results)
        results.append(result)
        print(
            f"{env_id}: " + ", ".join(f"{algo} {value:,.0f} steps/s" for algo, value in result["median_steps_per_s"].items())
        )
    print(markdown(results))
    if args.out is not None:
        if args.merge:
            results = merge(json.loads(args.out.read_text())["results"], results)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        text = markdown(results)
        args.out.write_text(json.dumps({"results": results}, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(text)
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
