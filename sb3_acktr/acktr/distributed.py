"""
ACKTR under ``torchrun``: the process group, global step counting, and the agreement to stop.

Data-parallel ACKTR (DESIGN §5): every rank steps its own VecEnv, K-FAC sums the curvature statistics and averages
the gradients over the ranks (:mod:`sb3_acktr.kfac.distributed`), so N ranks with n envs each take the update one
process with N·n envs would take on the same data. Rank 0 alone logs, evaluates and saves.
"""

import atexit
import datetime
import os
import sys

import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from torch import distributed as dist


def launched_by_torchrun() -> bool:
    """Whether this process is one of several started by ``torchrun`` (it sets ``WORLD_SIZE`` and ``RANK``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def join_torchrun(device: th.device) -> th.device:
    """
    Initialise the default process group from ``torchrun``'s environment if not done yet (gloo on CPU, NCCL on
    CUDA, where each rank takes the GPU of its ``LOCAL_RANK``), and leave it at exit.

    :param device: The device the model was asked to run on
    :return: The device this rank runs on
    """
    if device.type == "cuda":
        device = th.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        th.cuda.set_device(device)
    if not dist.is_initialized():
        # Imported before the group exists, as torch imports it later anyway (the first optimizer pulls it in): its
        # functions' default arguments (group=group.WORLD) would otherwise hold the default group for good, and leaving
        # could not stop gloo's threads (see leave_process_group)
        import torch.distributed.nn  # noqa: F401

        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(leave_process_group)
    return device


#: How long a rank waits at exit for the others to exit too
EXIT_TIMEOUT = datetime.timedelta(seconds=30)


def leave_process_group() -> None:
    """
    At exit: wait for every rank (at most :data:`EXIT_TIMEOUT`), then destroy the process group. Ranks tearing gloo
    down while a peer still holds its connections were seen to abort (``terminate called without an active
    exception``); a rank that ended with an error does not wait, so its peers fail at their next collective.

    Destroying the group stops gloo's worker threads only if nothing else holds it (KFAC does not, see
    :attr:`~sb3_acktr.kfac.optimizer.KFAC.process_group`); threads left running into the interpreter's shutdown abort
    the process, with the same message, when one of them frees a finished collective's tensors (it needs the GIL).
    """
    if not dist.is_initialized():
        return
    if sys.exc_info()[0] is None and getattr(sys, "last_value", None) is None:
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=EXIT_TIMEOUT)
            else:
                dist.barrier()
        except RuntimeError:
            pass  # a peer ended first: nothing left to wait for
    dist.destroy_process_group()


def all_agree(flag: bool, device: th.device) -> bool:
    """
    Whether ``flag`` is True on every rank (one all-reduce): a callback stopping training on rank 0 stops all ranks.

    :param flag: This rank's flag
    :param device: Where the collective's tensor lives (the process group's backend must support it)
    :return: The flag of all ranks together
    """
    agreed = th.tensor([int(flag)], device=device)
    dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
    return bool(agreed.item())


class GlobalTimesteps(BaseCallback):
    """
    Count the steps of every rank in ``num_timesteps``: SB3 adds this rank's ``n_envs`` per env step, this callback
    (run first) the other ranks' ``(world_size − 1)·n_envs``, so every callback, schedule and ``total_timesteps``
    sees the global count.

    :param world_size: Number of ranks
    """

    def __init__(self, world_size: int) -> None:
        super().__init__()
        self.world_size = world_size

    def _on_step(self) -> bool:
        self.model.num_timesteps += (self.world_size - 1) * self.training_env.num_envs
        return True
