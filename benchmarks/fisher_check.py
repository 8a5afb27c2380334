"""
Where the trust region's quadratic model of a recurrent policy's step falls short: K-FAC's curvature against the exact
Fisher along the step actually taken, block by block.

RecurrentACKTR (the zoo's ``acktr_lstm.yml`` entry, ``kfac_momentum=0`` so that the applied step is the modelled one)
trains ``--updates`` updates on a discrete-action env; on the last update's batch (its real steps) this script
computes, for the actor's step Δ:

* the exact KL between the policy before and after the step;
* the exact Fisher's quadratic model ``½·mean_t δz_tᵀ (diag p_t − p_t p_tᵀ) δz_t``, ``δz_t`` the change of the logits
  along Δ (a central finite difference), for the whole step, its LSTM part and the rest (the heads): their difference
  is the cross term between the LSTM and the heads, which K-FAC's block-diagonal form leaves out;
* K-FAC's quadratic model of the same parts, ``½·η·ν·Σ (−Δθ)·∇`` (the trust region's figure);
* for the actor's first LSTM layer, averaged over ``--draws`` draws of the Fisher loss's sampled actions: the sequence
  Fisher along the step ``½·Σ_s (Σ_t g_tᵀ ΔW ā_t)² / R`` (what K-FAC approximates), the same with the steps
  independent ``½·Σ_s Σ_t (g_tᵀ ΔW ā_t)² / R``, and the Kronecker factors of this batch in the expand and the reduce
  form.

    python benchmarks/fisher_check.py --env CartPoleNoVel-v1 --seeds 0 1 2 --updates 15 70
    python benchmarks/fisher_check.py --quick --out /tmp/fisher.json     # 2 updates, seconds
"""

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

# Small networks on 2 shared cores: one torch thread, as rl-zoo's --num-threads 1
th.set_num_threads(1)

from gymnasium import spaces  # noqa: E402
from kl_check import zoo_model  # noqa: E402

from sb3_acktr import RecurrentACKTR  # noqa: E402
from sb3_acktr.kfac import KFAC  # noqa: E402
from sb3_acktr.kfac.recurrent import reduced_sequence_factors, sequence_rows  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "recurrent" / "fisher_check.json"
#: Relative size of the finite-difference step along Δ
EPSILON = 1e-3


def train_and_capture(model: RecurrentACKTR, updates: int) -> dict[str, Any]:
    """Train ``updates`` updates; keep the actor's parameters before the last step, its gradients and ν."""
    optimizer: KFAC = model.policy.optimizer  # type: ignore[assignment]
    actor = optimizer.param_groups[0]["params"]
    captured: dict[str, Any] = {}
    step = optimizer.step

    def recording_step(*args: Any, **kwargs: Any) -> Any:
        captured["before"] = [param.detach().clone() for param in actor]
        result = step(*args, **kwargs)
        captured["nu"] = optimizer.last_step_info[0]["nu"]
        captured["grads"] = [None if param.grad is None else param.grad.detach().clone() for param in actor]
        return result

    optimizer.step = recording_step  # type: ignore[method-assign]
    model.learn(updates * model.n_steps * model.n_envs)
    optimizer.step = step  # type: ignore[method-assign]
    captured["after"] = [param.detach().clone() for param in actor]
    return captured


def measure(model: RecurrentACKTR, captured: dict[str, Any], draws: int) -> dict[str, float]:
    """The figures of the module docstring for the last update."""
    optimizer: KFAC = model.policy.optimizer  # type: ignore[assignment]
    actor = optimizer.param_groups[0]["params"]
    before, after = captured["before"], captured["after"]
    delta = [new - old for new, old in zip(after, before, strict=True)]
    lstm_ids = {id(param) for param in model.policy.lstm_actor.parameters()}
    data: Any = next(model.rollout_buffer.get(batch_size=None))  # sb3-contrib's recurrent samples, with a mask
    mask = data.mask > 1e-8
    model.policy.set_training_mode(False)

    def set_actor(values: list[th.Tensor]) -> None:
        with th.no_grad():
            for param, value in zip(actor, values, strict=True):
                param.copy_(value)

    def logits(values: list[th.Tensor]) -> th.Tensor:
        set_actor(values)
        with th.no_grad():
            distribution = model._policy_distribution(data).distribution
        assert isinstance(distribution, th.distributions.Categorical)
        return distribution.logits[mask]

    logits_before = logits(before)
    probs = th.softmax(logits_before, dim=-1)
    log_ratio = th.log_softmax(logits_before, dim=-1) - th.log_softmax(logits(after), dim=-1)
    figures = {"exact_kl": float((probs * log_ratio).sum(dim=-1).mean())}
    parts: dict[str, Callable[[th.Tensor], bool]] = {
        "all": lambda param: True,
        "lstm": lambda param: id(param) in lstm_ids,
        "heads": lambda param: id(param) not in lstm_ids,
    }
    lr = optimizer.param_groups[0]["lr"]
    for name, part in parts.items():
        direction = [step if part(param) else th.zeros_like(step) for param, step in zip(actor, delta, strict=True)]
        plus = logits([old + EPSILON * step for old, step in zip(before, direction, strict=True)])
        minus = logits([old - EPSILON * step for old, step in zip(before, direction, strict=True)])
        change = (plus - minus) / (2 * EPSILON)
        fisher_change = probs * change - probs * (probs * change).sum(dim=-1, keepdim=True)
        figures[f"exact_fisher_{name}"] = 0.5 * float((change * fisher_change).sum(dim=-1).mean())
        figures[f"kfac_{name}"] = (
            0.5
            * lr
            * captured["nu"]
            * sum(
                float((-step * grad).sum())
                for param, step, grad in zip(actor, delta, captured["grads"], strict=True)
                if grad is not None and part(param)
            )
        )
    set_actor(before)
    figures.update(lstm_block(model, optimizer, data, mask, delta, draws))
    set_actor(after)
    model.policy.set_training_mode(True)
    return figures


def lstm_block(
    model: RecurrentACKTR, optimizer: KFAC, data: Any, mask: th.Tensor, delta: list[th.Tensor], draws: int
) -> dict[str, float]:
    """The actor's first LSTM layer along its step: the sequence Fisher, independent steps, and both Kronecker forms."""
    layer = next(layer for layer in optimizer.layers if layer.name == "lstm_actor.l0")
    step_of = {id(param): step for param, step in zip(optimizer.param_groups[0]["params"], delta, strict=True)}
    bias_step = th.stack([step_of[id(bias)] for bias in layer.biases]).sum(dim=0)
    step = th.cat([*(step_of[id(weight)] for weight in layer.weights), bias_step.reshape(-1, 1)], dim=1)
    actions = data.actions.long().flatten()
    real = int(mask.sum())
    totals = dict.fromkeys(("sequence_fisher", "independent_steps", "kronecker_expand", "kronecker_reduce"), 0.0)
    for _ in range(draws):
        with optimizer.record_curvature():
            values, _, _ = model._evaluate_actions(data, actions)
        pg_fisher_loss, vf_fisher_loss = model._fisher_losses(model.policy.action_dist, values.flatten(), mask)
        records = layer.records
        grads = th.autograd.grad(pg_fisher_loss + vf_fisher_loss, [record.output for record in records], allow_unused=True)
        inputs = sequence_rows([record.inputs for record in records])
        rows = th.cat([inputs, inputs.new_ones(len(inputs), 1)], dim=1)
        gate_grads = sequence_rows([th.zeros_like(r.output) if g is None else g for r, g in zip(records, grads, strict=True)])
        gate_grads = gate_grads * real
        steps = sum(record.inputs.shape[0] for record in records)
        contributions = (((gate_grads @ step) * rows).sum(dim=1) * mask).reshape(-1, steps)
        totals["sequence_fisher"] += 0.5 * float((contributions.sum(dim=1) ** 2).sum()) / real
        totals["independent_steps"] += 0.5 * float((contributions**2).sum()) / real
        a_expand, g_expand = rows[mask].t() @ rows[mask] / real, gate_grads[mask].t() @ gate_grads[mask] / real
        totals["kronecker_expand"] += 0.5 * float((step * (g_expand @ step @ a_expand)).sum())
        a_reduce, g_reduce = reduced_sequence_factors(inputs, gate_grads, steps, mask, True, real)
        totals["kronecker_reduce"] += 0.5 * float((step * (g_reduce @ step @ a_reduce)).sum())
    return {f"lstm_{key}": value / draws for key, value in totals.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPoleNoVel-v1", help="A NoVel env with discrete actions")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--updates", type=int, nargs="+", default=[15, 70], help="Measure after this many updates")
    parser.add_argument("--draws", type=int, default=30, help="Draws of the sampled actions for the LSTM block")
    parser.add_argument("--weight-sharing", default="expand", help="The LSTM form the run trains with")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Results (json) and the table beside it (.md)")
    parser.add_argument("--quick", action="store_true", help="Seed 0, 2 updates, 2 draws: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.updates, args.draws = [0], [2], 2
    rows = []
    for seed in args.seeds:
        for updates in args.updates:
            overrides = {"kfac_momentum": 0.0, "kfac_stats_warm_up": True, "kfac_weight_sharing": args.weight_sharing}
            with tempfile.TemporaryDirectory() as folder:
                model, _ = zoo_model(args.env, "acktr_lstm", seed, overrides, folder)
                if not isinstance(model.action_space, spaces.Discrete):
                    parser.error(f"{args.env} has continuous actions: the exact Fisher here is a categorical policy's")
                assert isinstance(model, RecurrentACKTR)
                figures = measure(model, train_and_capture(model, updates), args.draws)
            rows.append({"seed": seed, "updates": updates, **figures})
            print(json.dumps(rows[-1]), flush=True)
    command = " ".join(["python", "benchmarks/fisher_check.py", *(sys.argv[1:] if argv is None else argv)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"env_id": args.env, "command": command, "rows": rows}, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(table(rows) + "\n")
    print(table(rows))


def table(rows: list[dict[str, Any]]) -> str:
    """Each figure as a ratio to the exact one it approximates."""
    lines = [
        "| seed | updates | exact KL / exact-Fisher model | K-FAC / exact Fisher: all | LSTM | heads | cross term / all "
        "| LSTM layer: independent steps / sequence | expand / sequence | reduce / sequence |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    all_ratios = []
    for row in rows:
        cross = row["exact_fisher_all"] - row["exact_fisher_lstm"] - row["exact_fisher_heads"]
        ratios = [
            row["exact_kl"] / row["exact_fisher_all"],
            row["kfac_all"] / row["exact_fisher_all"],
            row["kfac_lstm"] / row["exact_fisher_lstm"],
            row["kfac_heads"] / row["exact_fisher_heads"],
            cross / row["exact_fisher_all"],
            row["lstm_independent_steps"] / row["lstm_sequence_fisher"],
            row["lstm_kronecker_expand"] / row["lstm_sequence_fisher"],
            row["lstm_kronecker_reduce"] / row["lstm_sequence_fisher"],
        ]
        all_ratios.append(ratios)
        lines.append(f"| {row['seed']} | {row['updates']} | " + " | ".join(f"{ratio:.2f}" for ratio in ratios) + " |")
    medians = np.median(np.array(all_ratios), axis=0)
    lines.append("| **median** | | " + " | ".join(f"**{median:.2f}**" for median in medians) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
