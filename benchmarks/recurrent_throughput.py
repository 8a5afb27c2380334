"""
Throughput of RecurrentACKTR against sb3-contrib's RecurrentPPO, both built by rl-zoo from their yaml entries (ours in
``sb3_acktr/hyperparams/acktr_lstm.yml``, rl-zoo's tuned ``ppo_lstm.yml``), and of the two forms of LSTM curvature
(``kfac_lstm_curvature``): Kronecker factors, whose curvature pass runs the LSTM step by step, and the diagonal
Fisher, which keeps the fused kernel. Each configuration trains the same number of steps; the runs are interleaved
and repeated, and the table reports the median steps/s, the time per update (``train()``) and the ratios.

    python benchmarks/recurrent_throughput.py --env CartPoleNoVel-v1 --out benchmarks/results/recurrent/throughput.json
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch as th

# Small networks on 2 shared cores: one torch thread (see DESIGN.md, "Speed")
th.set_num_threads(1)

import rl_zoo3  # noqa: E402
from machine import machine_info  # noqa: E402
from rl_zoo3.exp_manager import ExperimentManager  # noqa: E402
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm  # noqa: E402

from sb3_acktr.zoo import ZOO_CONFIGS, register  # noqa: E402

#: The configurations: label, rl-zoo algorithm, hyperparameters overriding the entry
CONFIGS = [
    ("RecurrentPPO", "ppo_lstm", {}),
    ("RecurrentACKTR (kronecker)", "acktr_lstm", {"kfac_lstm_curvature": "kronecker"}),
    ("RecurrentACKTR (diagonal)", "acktr_lstm", {"kfac_lstm_curvature": "diagonal"}),
]


def build(algo: str, env_id: str, overrides: dict[str, Any], folder: str) -> OnPolicyAlgorithm:
    """The model rl-zoo's ``train`` builds from the algorithm's yaml entry, with ``overrides``."""
    config = ZOO_CONFIGS.get(algo, Path(rl_zoo3.__file__).parent / "hyperparams" / f"{algo}.yml")
    manager = ExperimentManager(
        argparse.Namespace(), algo, env_id, folder, hyperparams=overrides, config=str(config), seed=0, verbose=0
    )
    experiment = manager.setup_experiment()
    assert experiment is not None and isinstance(experiment[0], OnPolicyAlgorithm)
    return experiment[0]


def timed_learn(model: OnPolicyAlgorithm, steps: int) -> dict[str, float]:
    """Train ``steps`` more steps; the wall time, steps/s and the mean time of one ``train()``."""
    train = model.train
    durations: list[float] = []

    def timed_train() -> None:
        start = time.perf_counter()
        train()
        durations.append(time.perf_counter() - start)

    model.train = timed_train  # type: ignore[method-assign]
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    elapsed = time.perf_counter() - start
    model.train = train  # type: ignore[method-assign]
    return {"seconds": elapsed, "steps_per_s": steps / elapsed, "train_ms": 1000 * statistics.fmean(durations)}


def measure(env_id: str, steps: int, repeats: int) -> dict[str, Any]:
    """Every configuration, one warm-up ``learn`` then ``repeats`` timed ones, interleaved."""
    register()
    with tempfile.TemporaryDirectory() as folder:
        models = {label: build(algo, env_id, overrides, folder) for label, algo, overrides in CONFIGS}
        for model in models.values():
            model.learn(steps // 4)  # warm-up: first allocations, the first inverses
        timings: dict[str, list[dict[str, float]]] = {label: [] for label in models}
        for _ in range(repeats):
            for label, model in models.items():
                timings[label].append(timed_learn(model, steps))
    medians = {label: {key: statistics.median(run[key] for run in runs) for key in runs[0]} for label, runs in timings.items()}
    return {"env_id": env_id, "steps": steps, "repeats": repeats, "runs": timings, "medians": medians}


def table(result: dict[str, Any]) -> str:
    """The medians and the ratios to RecurrentPPO (steps/s) and to the diagonal form (time per update)."""
    medians = result["medians"]
    ppo, diagonal = medians["RecurrentPPO"], medians["RecurrentACKTR (diagonal)"]
    lines = [
        f"{result['env_id']}, {result['steps']:,} steps per timed run, median of {result['repeats']} interleaved runs:",
        "",
        "| configuration | steps/s | vs RecurrentPPO | ms per update | vs diagonal |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, values in medians.items():
        lines.append(
            f"| {label} | {values['steps_per_s']:.0f} | {values['steps_per_s'] / ppo['steps_per_s']:.2f} | "
            f"{values['train_ms']:.1f} | "
            + (f"{values['train_ms'] / diagonal['train_ms']:.2f} |" if label.startswith("RecurrentACKTR") else "– |")
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPoleNoVel-v1", help="A NoVel env with entries in both yaml files")
    parser.add_argument("--steps", type=int, default=20_000, help="Steps per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per configuration")
    parser.add_argument("--out", type=Path, help="Write the results here (json) and the table beside it (.md)")
    parser.add_argument("--quick", action="store_true", help="1,024 steps, one timed run each: a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 1_024, 1
    result = measure(args.env, args.steps, args.repeats)
    result["machine"] = machine_info()
    report = table(result)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        args.out.with_suffix(".md").write_text(report + "\n")


if __name__ == "__main__":
    main()
