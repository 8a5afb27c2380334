"""
Data-parallel K-FAC over ``torch.distributed`` (Ba, Grosse & Martens 2017; kfac-pytorch/KAISA's layout): the batch
statistics and gradients are averaged over the ranks, each inverse is computed on every rank or on one assigned rank
and shared. Every exchange is batched: one collective per dtype for a whole list of tensors, never one per tensor.
Imports torch only.
"""

from collections.abc import Callable, Sequence
from typing import Any

import torch as th
from torch import distributed as dist

#: How the damped inverses are computed across ranks: ``"all_ranks"`` (every rank computes every inverse: no
#: communication) or ``"one_rank"`` (each layer's on one assigned rank, then shared: 1/N of the compute, one
#: collective of the inverses' size)
DISTRIBUTED_INVERSES = ("all_ranks", "one_rank")


def default_process_group() -> dist.ProcessGroup | None:
    """The default (world) process group if ``torch.distributed`` is initialised with more than one rank, else None."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.group.WORLD
    return None


def _on_flat_buffers(tensors: Sequence[th.Tensor], collective: Callable[[th.Tensor], None]) -> list[th.Tensor]:
    """
    Run ``collective`` in place on one flat buffer per dtype and device holding ``tensors``, so that a whole list takes
    one collective per dtype, never one per tensor.

    :param tensors: The tensors (same shapes and dtypes on every rank)
    :param collective: The in-place collective on a flat buffer
    :return: Views of the buffers, in the order and shapes of ``tensors``
    """
    groups: dict[tuple[th.dtype, th.device], list[int]] = {}
    for index, tensor in enumerate(tensors):
        groups.setdefault((tensor.dtype, tensor.device), []).append(index)
    results: list[th.Tensor] = list(tensors)
    for indices in groups.values():
        flat = th.cat([tensors[index].detach().reshape(-1) for index in indices])
        collective(flat)
        for index, chunk in zip(indices, flat.split([tensors[index].numel() for index in indices]), strict=True):
            results[index] = chunk.view_as(tensors[index])
    return results


def all_reduce_sum(tensors: Sequence[th.Tensor], group: dist.ProcessGroup) -> list[th.Tensor]:
    """
    The element-wise sums over the ranks of ``tensors`` (same shapes and dtypes on every rank), as new tensors.

    :param tensors: This rank's tensors
    :param group: The process group
    :return: The sums, in the order and shapes of ``tensors``
    """
    return _on_flat_buffers(tensors, lambda flat: dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group))


def all_reduce_mean_(tensors: Sequence[th.Tensor], group: dist.ProcessGroup) -> None:
    """
    Replace each tensor, in place, by its mean over the ranks (as ``DistributedDataParallel`` averages gradients).

    :param tensors: This rank's tensors (same shapes and dtypes on every rank)
    :param group: The process group
    """
    world_size = dist.get_world_size(group)

    def mean(flat: th.Tensor) -> None:
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        flat.div_(world_size)

    with th.no_grad():
        th._foreach_copy_(list(tensors), _on_flat_buffers(tensors, mean))


def assign_owners(costs: Sequence[float], world_size: int) -> list[int]:
    """
    A rank for each job, balancing the summed cost per rank: longest job first to the least loaded rank (ties to the
    lower rank), so every rank computes the same assignment.

    :param costs: Each job's cost (for an inverse: d³ + o³ multiply-adds)
    :param world_size: Number of ranks
    :return: The owner rank of each job
    """
    loads = [0.0] * world_size
    owners = [0] * len(costs)
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        owners[index] = rank
        loads[rank] += costs[index]
    return owners


def broadcast_parameters_(tensors: Sequence[th.Tensor], group: dist.ProcessGroup) -> None:
    """
    Give every rank the values of the group's first rank (as ``DistributedDataParallel`` does at construction), in
    one collective per dtype.

    :param tensors: This rank's tensors, overwritten with the first rank's
    :param group: The process group
    """
    source = dist.get_global_rank(group, 0) if group is not dist.group.WORLD else 0
    with th.no_grad():
        th._foreach_copy_(list(tensors), _on_flat_buffers(tensors, lambda flat: dist.broadcast(flat, src=source, group=group)))


def check_same_on_all_ranks(what: str, description: dict[str, Any], group: dist.ProcessGroup) -> None:
    """
    Raise a ``ValueError`` naming the first differing entry and the ranks unless ``description`` is equal on every rank.

    :param what: What is described, for the message (``"KFAC"``, ``"ACKTR"``)
    :param description: Configuration entries (picklable, comparable with ``==``)
    :param group: The process group
    """
    gathered: list[dict[str, Any] | None] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, description, group=group)
    reference = gathered[0]
    assert reference is not None
    for rank, other in enumerate(gathered[1:], start=1):
        assert other is not None
        for key in sorted(set(reference) | set(other)):
            if reference.get(key) != other.get(key):
                raise ValueError(
                    f"{what}: the ranks of the distributed run are configured differently: {key} is "
                    f"{reference.get(key)!r} on rank 0 but {other.get(key)!r} on rank {rank}. Every rank must run "
                    "the same configuration (same script and arguments)."
                )
