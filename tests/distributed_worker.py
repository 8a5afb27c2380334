"""
The programs ``torchrun`` runs for ``tests/test_distributed.py``, one per command, and the single-process references
they are compared with::

    torchrun --standalone --nproc_per_node 2 tests/distributed_worker.py COMMAND OUT_DIR
"""

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch as th
from torch import distributed as dist
from torch import nn
from torch.nn import functional as F

from sb3_acktr import KFAC

th.set_num_threads(1)

#: The supervised problem: 16 images of 1×5×5, 4 classes, 20 steps
N_SAMPLES, N_CLASSES, STEPS = 16, 4, 20
KFAC_OPTIONS: dict[str, Any] = dict(lr=0.1, kfac_clip=0.01, inverse_interval=3)


class Classifier(nn.Module):
    """A convolution, a linear layer (Kronecker factors) and a free temperature (the diagonal fallback)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, kernel_size=3)
        self.linear = nn.Linear(27, N_CLASSES)
        self.log_temperature = nn.Parameter(th.zeros(1))

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.linear(th.tanh(self.conv(x)).flatten(1)) * self.log_temperature.exp()


def supervised_data() -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """Inputs, labels, and the Gumbel noise of every step's Fisher targets (so both setups sample the same ones)."""
    generator = th.Generator().manual_seed(0)
    x = th.randn(N_SAMPLES, 1, 5, 5, generator=generator)
    y = th.randint(0, N_CLASSES, (N_SAMPLES,), generator=generator)
    gumbel = -th.log(-th.log(th.rand(STEPS, N_SAMPLES, N_CLASSES, generator=generator)))
    return x, y, gumbel


def supervised_run(rows: slice, **kfac_options: Any) -> list[dict[str, th.Tensor]]:
    """
    Train the classifier with K-FAC on ``rows`` of the batch; after each step, the statistics and parameters.

    :param rows: The samples this process sees (all of them for the single-process reference)
    :param kfac_options: Options of ``KFAC`` beyond :data:`KFAC_OPTIONS`
    :return: Per step: ``conv.A``, ``conv.G``, ``conv.A_inv``, ``linear.A``, ..., ``fisher_diag`` and each parameter
    """
    th.manual_seed(1)
    model = Classifier()
    optimizer = KFAC(model, **KFAC_OPTIONS, **kfac_options)
    x, y, gumbel = supervised_data()
    records = []
    for step in range(STEPS):
        with optimizer.record_curvature():
            logits = model(x[rows])
        targets = (logits.detach() + gumbel[step, rows]).argmax(dim=1)  # Gumbel-max: a sample of the model
        optimizer.update_curvature(F.cross_entropy(logits, targets))
        optimizer.zero_grad()
        F.cross_entropy(logits, y[rows]).backward()
        optimizer.step()
        record = {name: param.detach().clone() for name, param in model.named_parameters()}
        for name in ("conv", "linear"):
            state = optimizer.state[getattr(model, name).weight]
            record.update({f"{name}.{key}": state[key].clone() for key in ("A", "G", "A_inv", "G_inv")})
        record["fisher_diag"] = optimizer.state[model.log_temperature]["fisher_diag"].clone()
        records.append(record)
    return records


def kfac_equivalence(out_dir: Path) -> None:
    """Each rank trains on its half of the batch, with each inverse placement; rank r writes ``kfac_{r}.pt``."""
    rank, world_size = dist.get_rank(), dist.get_world_size()
    half = N_SAMPLES // world_size
    rows = slice(rank * half, (rank + 1) * half)
    results = {placement: supervised_run(rows, distributed_inverses=placement) for placement in ("all_ranks", "one_rank")}
    th.save(results, out_dir / f"kfac_{rank}.pt")


def make_acktr(n_envs: int = 4, **kwargs: Any):
    """ACKTR on CartPole-v1 with the CartPole entry's ent_coef and vf_coef (a constant learning rate), seed 0."""
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_acktr import ACKTR

    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=0)
    return ACKTR("MlpPolicy", env, seed=0, ent_coef=0.0, vf_coef=0.5, **kwargs)


def parameter_hash(model: nn.Module) -> str:
    """A digest of every parameter's bytes: equal digests mean bitwise identical parameters."""
    import hashlib

    digest = hashlib.sha256()
    for param in model.parameters():
        digest.update(param.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def acktr_identical(out_dir: Path) -> None:
    """
    50 updates of 2 ranks × 4 envs; rank 0 writes every rank's parameter digest, the step count and the seeds. A
    ``target_kl`` below the updates' KL makes its multiplier move: each rank measures the KL on its own samples.
    """
    from stable_baselines3.common.callbacks import BaseCallback

    class MultiplierTrace(BaseCallback):
        """The learning rate's multiplier before each rollout (rank 0)."""

        def __init__(self) -> None:
            super().__init__()
            self.values: list[float] = []

        def _on_rollout_start(self) -> None:
            self.values.append(self.model.kl_lr_multiplier)  # type: ignore[attr-defined]

        def _on_step(self) -> bool:
            return True

    # Below most of these updates' exact KL in one process (median 2.5e-7), so that the multiplier moves both ways
    model = make_acktr(target_kl=5e-8)
    trace = MultiplierTrace()
    model.learn(50 * model.n_steps * model.n_envs * dist.get_world_size(), callback=trace)
    hashes: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(hashes, parameter_hash(model.policy))
    first_obs: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(first_obs, model.rollout_buffer.observations[0].tolist())
    multipliers: list[float | None] = [None] * dist.get_world_size()
    dist.all_gather_object(multipliers, model.kl_lr_multiplier)
    model.save(out_dir / "model")
    dist.barrier()  # rank 0 wrote the file
    # Loaded back into a distributed run, training goes on in lockstep
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_acktr import ACKTR

    reloaded = ACKTR.load(out_dir / "model.zip", env=make_vec_env("CartPole-v1", n_envs=4, seed=1))
    reloaded.learn(5 * reloaded.n_steps * reloaded.n_envs * dist.get_world_size(), reset_num_timesteps=False)
    reloaded_hashes: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(reloaded_hashes, parameter_hash(reloaded.policy))
    if dist.get_rank() == 0:
        summary = {"hashes": hashes, "num_timesteps": model.num_timesteps, "n_updates": model._n_updates}
        summary["kl_lr_multipliers"] = multipliers
        summary["kl_lr_multiplier_trace"] = trace.values  # callbacks run on rank 0 only
        summary["reloaded"] = {"hashes": reloaded_hashes, "kfac_steps": reloaded.policy.optimizer.steps}  # type: ignore[attr-defined]
        summary["distinct_first_observations"] = len({json.dumps(obs) for obs in first_obs})
        (out_dir / "acktr.json").write_text(json.dumps(summary))


def acktr_learns(out_dir: Path) -> None:
    """CartPole-v1 with 2 ranks × 4 envs, evaluated on rank 0 every 5k global steps until 475, within 100k steps."""
    from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
    from stable_baselines3.common.env_util import make_vec_env

    model = make_acktr()
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=1_000)
    stop = StopTrainingOnRewardThreshold(reward_threshold=475)
    per_rank_calls = 5_000 // (model.n_envs * dist.get_world_size())
    evaluation = EvalCallback(eval_env, callback_on_new_best=stop, eval_freq=per_rank_calls, n_eval_episodes=10)
    model.learn(100_000, callback=evaluation)
    if dist.get_rank() == 0:
        result = {"num_timesteps": model.num_timesteps, "best_mean_reward": float(evaluation.best_mean_reward)}
        (out_dir / "learn.json").write_text(json.dumps(result))


def acktr_rank_killed(out_dir: Path) -> None:
    """Rank 1 is killed (SIGKILL) before its 5th update; the others must not hang."""
    model = make_acktr()
    if dist.get_rank() == 1:
        train = model.train

        def train_or_die() -> None:
            if model._n_updates == 4:
                os.kill(os.getpid(), signal.SIGKILL)
            train()

        model.train = train_or_die  # type: ignore[method-assign]
    model.learn(100_000)


def acktr_long(out_dir: Path) -> None:
    """Train for long, each rank marking when its first update is done (for the test that interrupts torchrun)."""

    model = make_acktr()
    marker = out_dir / f"training_{dist.get_rank() if dist.is_initialized() else os.environ['RANK']}"
    train = model.train

    def train_and_mark() -> None:
        train()
        marker.touch()

    model.train = train_and_mark  # type: ignore[method-assign]
    model.learn(10_000_000)


def acktr_mismatch(out_dir: Path) -> None:
    """Rank 1 asks for another n_steps than rank 0."""
    make_acktr(n_steps=20 if os.environ["RANK"] == "0" else 10)


def acktr_mismatch_network(out_dir: Path) -> None:
    """Rank 1 builds a wider network than rank 0."""
    width = 64 if os.environ["RANK"] == "0" else 32
    make_acktr(policy_kwargs=dict(net_arch=[width, width]))


def running_threads() -> int:
    """The threads of this process, C++ ones included (gloo's are invisible to ``threading``)."""
    return len(os.listdir("/proc/self/task"))


def acktr_leaves_the_group(out_dir: Path) -> None:
    """
    Threads before ACKTR joins torchrun's group, while it trains, and after it leaves the group (as it does at exit),
    the model still alive: rank r writes ``threads_{r}.json``.
    """
    from sb3_acktr.acktr.distributed import leave_process_group

    before = running_threads()
    model = make_acktr()
    model.learn(2 * model.n_steps * model.n_envs * dist.get_world_size())
    rank, during = dist.get_rank(), running_threads()
    leave_process_group()
    threads = {"before": before, "during": during, "after": running_threads(), "steps": model.policy.optimizer.steps}
    (out_dir / f"threads_{rank}.json").write_text(json.dumps(threads))


def kfac_lstm_reduce(out_dir: Path) -> None:
    """KFAC with the reduce form on an LSTM layer, in a distributed run: refused on every rank."""
    model = nn.ModuleDict(dict(lstm=nn.LSTM(3, 4), head=nn.Linear(4, 2)))
    KFAC(model, weight_sharing={"lstm.l0": "reduce"})


COMMANDS = {
    "kfac_equivalence": kfac_equivalence,
    "acktr_identical": acktr_identical,
    "acktr_learns": acktr_learns,
    "acktr_rank_killed": acktr_rank_killed,
    "acktr_long": acktr_long,
    "acktr_mismatch": acktr_mismatch,
    "acktr_mismatch_network": acktr_mismatch_network,
    "kfac_lstm_reduce": kfac_lstm_reduce,
    "acktr_leaves_the_group": acktr_leaves_the_group,
}

if __name__ == "__main__":
    command, out = sys.argv[1], Path(sys.argv[2])
    if command.startswith("kfac"):
        dist.init_process_group("gloo")  # ACKTR joins torchrun's group itself (and leaves it at exit); plain KFAC users do it
    COMMANDS[command](out)
    if command == "kfac_equivalence":
        dist.barrier()
        dist.destroy_process_group()
