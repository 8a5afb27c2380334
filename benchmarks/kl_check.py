"""
The ACKTR paper's appendix-E check: does the exact KL of each update stay near the trust region δ that the
quadratic model promises?

ACKTR (built by rl-zoo's ``ExperimentManager`` from ``hyperparams/acktr.yml``, as ``rl_zoo3.train`` builds it; or
RecurrentACKTR from ``hyperparams/acktr_lstm.yml`` with ``--algo acktr_lstm``) trains on one env; after every
update this script reads what ACKTR logged: the quadratic-model KL of the fresh step ``½·(η·ν)²·Δᵀ∇``
(``train/quadratic_kl``, and the actor's part ``train/quadratic_kl_actor``), and the exact KL between the policy
before and after the update on the batch (``train/exact_kl``). The bound is δ = ``kfac_clip / 2``.

K-FAC's momentum (baselines' convention, ``θ ← θ − η·(1−m)·buf``, ``buf ← m·buf + ν·Δ``) applies a blend of past
steps, not the fresh one: each run is therefore repeated with ``kfac_momentum=0``, where the applied step is the
fresh step and the two KLs are comparable one to one; and the script computes the quadratic model of the step
actually applied, from the parameters' change and the curvature the optimizer held
(``applied_step_model_kl_actor``), which the exact KL can be compared with at any momentum.

    python benchmarks/kl_check.py --env CartPole-v1 --steps 50000 --hyperparams learning_rate:0.25 normalize:False
    python benchmarks/kl_check.py --env HalfCheetah-v5 --steps 100000
    python benchmarks/kl_check.py --env HalfCheetah-v5 --steps 16000 --hyperparams kfac_stats_decay:0.95
    python benchmarks/kl_check.py --env CartPoleNoVel-v1 --algo acktr_lstm --steps 16000 --momenta 0
    python benchmarks/kl_check.py --quick --hyperparams learning_rate:0.25 --out-dir /tmp/kl    # 2k CartPole steps

CartPole's figures in docs/benchmark.md were taken at the constant rate 0.25 and without normalization, as its entry
was then: with the entry's ``lin_0.25`` the rate, and with it the step, falls to 0 by the last update, where the
bound no longer binds.

Writes ``{out-dir}/{env}.json`` and the plot ``docs/_static/kl_check_{env}.png`` (``--plot-dir`` to change); with
``--algo acktr_lstm``, ``{env}__acktr_lstm.json`` and ``kl_check_{env}__acktr_lstm.png``.
"""

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

# Small networks on 2 shared cores: one torch thread, as rl-zoo's --num-threads 1
th.set_num_threads(1)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import rl_zoo3.import_envs  # noqa: E402, F401  (registers rl-zoo's envs and patches, as rl_zoo3.train does)
from protocol import DOCS_STATIC  # noqa: E402
from rl_zoo3.exp_manager import ExperimentManager  # noqa: E402
from rl_zoo3.utils import StoreDict  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.utils import set_random_seed  # noqa: E402

from sb3_acktr import ACKTR, KFAC  # noqa: E402
from sb3_acktr.zoo import ZOO_CONFIGS, register  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results" / "kl_check"
#: What is read from ACKTR's logger after each update
KEYS = ("train/quadratic_kl", "train/quadratic_kl_actor", "train/exact_kl")


class KLRecorder(BaseCallback):
    """After each update (i.e. at the next rollout's start, and at the end), keep the KL figures ACKTR logged."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {key: [] for key in KEYS}

    def _read(self) -> None:
        values = self.model.logger.name_to_value
        if "train/exact_kl" not in values:  # no update yet
            return
        for key in KEYS:
            self.history[key].append(float(values.get(key, np.nan)))
        values.pop("train/exact_kl")  # so that the next read sees the next update's value, or nothing

    def _on_rollout_start(self) -> None:
        self._read()

    def _on_training_end(self) -> None:
        self._read()

    def _on_step(self) -> bool:
        return True


def zoo_model(env_id: str, algo: str, seed: int, hyperparams: dict[str, Any], log_folder: str) -> tuple[ACKTR, dict[str, Any]]:
    """
    The model rl-zoo's ``train`` builds from the zoo's entry, with overrides.

    :param env_id: Environment id
    :param algo: ``"acktr"`` or ``"acktr_lstm"`` (RecurrentACKTR)
    :param seed: Seed
    :param hyperparams: Overrides of the entry (rl-zoo's ``--hyperparams``)
    :param log_folder: rl-zoo's log folder
    :return: The model and the hyperparameters used
    """
    register()
    set_random_seed(seed)
    manager = ExperimentManager(
        argparse.Namespace(env=env_id, algo=algo, seed=seed),
        algo,
        env_id,
        log_folder,
        eval_freq=-1,
        save_freq=-1,
        hyperparams=hyperparams,
        seed=seed,
        verbose=0,
        device="cpu",
        config=str(ZOO_CONFIGS[algo]),
    )
    setup = manager.setup_experiment()
    assert setup is not None
    model, used = setup
    assert isinstance(model, ACKTR)
    return model, used


def run(
    env_id: str, steps: int, seed: int, momentum: float, overrides: dict[str, Any] | None = None, algo: str = "acktr"
) -> dict[str, Any]:
    """
    Train ACKTR with the zoo's hyperparameters (``kfac_momentum`` overridden) and record the KLs of every update.

    :param env_id: Environment id
    :param steps: Environment steps
    :param seed: Seed
    :param momentum: ``kfac_momentum``
    :param overrides: Other hyperparameters overriding the zoo's (rl-zoo's ``--hyperparams``)
    :param algo: ``"acktr"`` or ``"acktr_lstm"`` (RecurrentACKTR)
    :return: The hyperparameters used and the per-update KLs
    """
    with tempfile.TemporaryDirectory() as log_folder:
        model, hyperparams = zoo_model(env_id, algo, seed, {**(overrides or {}), "kfac_momentum": momentum}, log_folder)
        recorder = KLRecorder()
        applied = record_applied_step_model(model)
        # None turns SB3's log dumps off, so the recorded values stay readable (rl-zoo does the same)
        model.learn(steps, callback=recorder, log_interval=None)  # type: ignore[arg-type]
        env = model.get_env()
        if env is not None:
            env.close()
    delta = model.kfac_clip / 2
    return {
        "momentum": momentum,
        "delta": delta,
        "batch": model.n_steps * model.n_envs,
        "hyperparams": {key: str(value) for key, value in hyperparams.items()},
        **{key.split("/")[1]: values for key, values in recorder.history.items()},
        "applied_step_model_kl_actor": applied,
    }


def record_applied_step_model(model: ACKTR) -> list[float]:
    """
    Wrap the optimizer's ``step()`` so that each update appends :func:`applied_step_model_kl` of the actor's
    parameters to the returned list.
    """
    optimizer: KFAC = model.policy.optimizer  # type: ignore[assignment]
    split = model._actor_critic_params()
    actor = split[0] if split is not None else [param for param in model.policy.parameters() if param.requires_grad]
    values: list[float] = []
    step = optimizer.step

    def recording_step(*args: Any, **kwargs: Any) -> Any:
        before = {id(param): param.detach().clone() for param in actor}
        result = step(*args, **kwargs)
        values.append(applied_step_model_kl(optimizer, before, actor))
        return result

    optimizer.step = recording_step  # type: ignore[method-assign]
    return values


def applied_step_model_kl(optimizer: KFAC, before: dict[int, th.Tensor], params: Sequence[th.Tensor]) -> float:
    """
    ``½·sᵀF̂s`` for the step ``s`` the optimizer just applied to ``params`` (with momentum, a blend of past steps, which
    the logged ``quadratic_kl`` of the fresh step does not describe), under the damped curvature its preconditioning
    used: for a layer with Kronecker factors the matrices whose inverses it holds (``A_inv``, ``G_inv``; with
    ``inverse_method="eigen"``, ``A ⊗ G + λ`` from the held eigen-decompositions), for the other parameters
    ``fisher_diag + λ``.

    :param optimizer: The KFAC optimizer, right after ``step()``
    :param before: Each parameter (by ``id``) before the step
    :param params: The parameters whose step is measured (every parameter of a layer, or none)
    :return: The quadratic-model KL of the applied step
    """
    chosen = {id(param) for param in params}
    total, covered = 0.0, set()
    for layer in optimizer.layers:
        if id(layer.weight) not in chosen:
            continue
        state, damping = optimizer.state[layer.weight], optimizer._group_of(layer.weight)["damping"]
        # The bias coordinate moved by the sum of its biases' steps (each got its share)
        bias_steps = [bias.detach() - before[id(bias)] for bias in layer.biases]
        bias_step = sum(bias_steps[1:], bias_steps[0]) if bias_steps else None
        matrix = layer.matrix([weight.detach() - before[id(weight)] for weight in layer.weights], bias_step).double()
        if "A_inv" in state:
            curvature = th.linalg.solve(state["G_inv"].double(), matrix) @ th.linalg.inv(state["A_inv"].double())
        elif "A_eigenvectors" in state:
            a_vectors, g_vectors = state["A_eigenvectors"].double(), state["G_eigenvectors"].double()
            a_factor = (a_vectors * state["A_eigenvalues"].double()) @ a_vectors.t()
            g_factor = (g_vectors * state["G_eigenvalues"].double()) @ g_vectors.t()
            curvature = g_factor @ matrix @ a_factor + damping * matrix
        else:  # no statistics yet: the step was ∇/λ
            curvature = damping * matrix
        total += float((matrix * curvature).sum())
        covered |= {id(param) for param in layer.params}
    for param in params:
        if id(param) in covered:
            continue
        fisher_diag = optimizer.state[param].get("fisher_diag")
        damping = optimizer._group_of(param)["damping"]
        weight = damping if fisher_diag is None else fisher_diag.double() + damping
        total += float((weight * (param.detach().double() - before[id(param)].double()) ** 2).sum())
    return 0.5 * total


def summarise(result: dict[str, Any]) -> dict[str, float]:
    """Medians over updates of the exact and quadratic KLs, and their ratios to δ."""
    exact = np.array(result["exact_kl"])
    quadratic = np.array(result["quadratic_kl"])
    actor = np.array(result["quadratic_kl_actor"])
    applied = np.array(result["applied_step_model_kl_actor"])
    delta = result["delta"]
    summary = {
        "updates": len(exact),
        "median exact KL / delta": float(np.median(exact) / delta),
        "median quadratic KL / delta": float(np.median(quadratic) / delta),
        "median exact KL / quadratic KL (actor)": float(np.median(exact / actor)) if np.isfinite(actor).all() else np.nan,
        # The early phase, where the running averages of the factors still hold the first batches
        "first 100 updates: median exact KL / quadratic KL (actor)": (
            float(np.median(exact[:100] / actor[:100])) if np.isfinite(actor[:100]).all() else np.nan
        ),
        # With momentum: the model of the step actually applied
        "first 100 updates: median exact KL / applied-step model (actor)": float(np.median(exact[:100] / applied[:100])),
    }
    return summary


def plot(env_id: str, results: list[dict[str, Any]], path: Path) -> None:
    """Exact KL and quadratic-model KL (total and actor's part) per update, one panel per momentum."""
    figure, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.8), sharey=True, squeeze=False)
    for axis, result in zip(axes[0], results, strict=True):
        updates = np.arange(1, len(result["exact_kl"]) + 1)
        # δ first, so that a quadratic KL sitting on it (a binding trust region) stays visible
        axis.axhline(result["delta"], color="red", ls="--", lw=1, label="δ = kfac_clip / 2")
        axis.plot(updates, result["quadratic_kl"], label="quadratic model, actor + critic", lw=1)
        if np.isfinite(result["quadratic_kl_actor"]).all():
            axis.plot(updates, result["quadratic_kl_actor"], label="quadratic model, actor", lw=2.5, alpha=0.7)
        axis.plot(updates, result["exact_kl"], label="exact KL (policy)", lw=1, color="black")
        axis.set_yscale("log")
        axis.set_xlabel("update")
        axis.set_title(f"{env_id}, kfac_momentum={result['momentum']}, batch {result['batch']}")
    axes[0][0].set_ylabel("KL per update")
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    """``python benchmarks/kl_check.py --env ENV --steps N [--quick] [--out-dir DIR] [--plot-dir DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1", help="Environment id (default: CartPole-v1)")
    parser.add_argument("--steps", type=int, default=50_000, help="Environment steps per run (default: 50k)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--algo", choices=sorted(ZOO_CONFIGS), default="acktr", help="acktr or acktr_lstm (RecurrentACKTR)")
    parser.add_argument("--momenta", type=float, nargs="+", default=[0.9, 0.0], help="kfac_momentum values (default 0.9 0)")
    parser.add_argument(
        "--hyperparams", nargs="+", action=StoreDict, default={}, help="Overrides of the zoo's entry, as rl-zoo's (KEY:VALUE)"
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="Where the json goes")
    parser.add_argument("--plot-dir", type=Path, default=DOCS_STATIC, help="Where the PNG goes")
    parser.add_argument("--quick", action="store_true", help="2,000 CartPole steps: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.env, args.steps = "CartPole-v1", 2_000
        if args.plot_dir == DOCS_STATIC:
            args.plot_dir = args.out_dir

    results = [run(args.env, args.steps, args.seed, momentum, args.hyperparams, args.algo) for momentum in args.momenta]
    summaries = [summarise(result) for result in results]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    name = args.env if args.algo == "acktr" else f"{args.env}__{args.algo}"
    out = args.out_dir / f"{name}.json"
    command = " ".join(["python", "benchmarks/kl_check.py", *(sys.argv[1:] if argv is None else argv)])
    out.write_text(
        json.dumps(
            {
                "env_id": args.env,
                "algo": args.algo,
                "steps": args.steps,
                "seed": args.seed,
                "command": command,
                "summaries": summaries,
                "runs": results,
            },
            indent=1,
        )
        + "\n"
    )
    png = args.plot_dir / f"kl_check_{name}.png"
    plot(args.env, results, png)
    for result, summary in zip(results, summaries, strict=True):
        figures = ", ".join(f"{key} {value:.3g}" for key, value in summary.items())
        print(f"{args.env} kfac_momentum={result['momentum']}: {figures}")
    print(f"wrote {out} and {png}")


if __name__ == "__main__":
    main()
