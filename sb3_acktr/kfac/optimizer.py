"""The K-FAC optimizer: a ``torch.optim.Optimizer`` that works on any ``nn.Module``."""

import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch as th
from torch import distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sb3_acktr.kfac.distributed import (
    all_reduce_mean_,
    all_reduce_sum,
    assign_owners,
    broadcast_parameters_,
    check_same_on_all_ranks,
    default_process_group,
)
from sb3_acktr.kfac.factors import (
    WEIGHT_SHARING_FORMS,
    WEIGHT_SHARING_MODULES,
    input_second_moment,
    layer_output_grad_rows,
    row_second_moment,
)
from sb3_acktr.kfac.hyperparameters import DEFAULTS, GROUP_OPTIONS, HYPERPARAMETERS
from sb3_acktr.kfac.inverse import (
    cholesky_inverses,
    eigen_decomposition,
    precondition_cholesky,
    precondition_eigen,
)
from sb3_acktr.kfac.layers import KroneckerLayer, Record, find_layers
from sb3_acktr.kfac.recurrent import lstm_forward, reduced_sequence_factors, sequence_rows

#: The state entries holding a layer's damped inverses, for each inverse method
INVERSE_KEYS = {
    "cholesky": ("A_inv", "G_inv"),
    "eigen": ("A_eigenvalues", "A_eigenvectors", "G_eigenvalues", "G_eigenvectors"),
}


def all_finite(tensors: list[th.Tensor]) -> bool:
    """
    Whether every entry of every tensor is finite: one fused norm per tensor and one host sync for all (a NaN or inf
    entry makes its tensor's norm non-finite; so does a norm overflowing float range, entries beyond ~1e19 in float32,
    which are as unusable).

    :param tensors: The tensors (at least one)
    :return: True if all are finite
    """
    return bool(th.stack(th._foreach_norm(tensors)).isfinite().all())


def _tensor_key(tensor: th.Tensor) -> tuple[Any, ...]:
    """What identifies a tensor's values without reading them: its memory, shape, strides and dtype."""
    return tensor.data_ptr(), tensor.shape, tensor.stride(), tensor.dtype


class _FactorSums(NamedTuple):
    """A layer's Kronecker-factor sums over a batch and their normalisers (``A = a_sum / a_norm``, ``G = g_sum / g_norm``)."""

    a_sum: th.Tensor
    a_norm: float
    g_sum: th.Tensor
    g_norm: float


class _GroupUpdate(NamedTuple):
    """
    A parameter group's preconditioned gradient: ``steps``, ``(param, Δ)`` in each parameter's shape, and ``blocks``,
    ``(∇, Δ)`` per curvature block (a layer's matrices, a fallback parameter) for ``Δᵀ∇``.
    """

    steps: list[tuple[th.Tensor, th.Tensor]]
    blocks: list[tuple[th.Tensor, th.Tensor]]


class KFAC(th.optim.Optimizer):
    """
    Kronecker-Factored Approximate Curvature (K-FAC) with the trust region of ACKTR.

    Natural-gradient optimizer for any ``nn.Module``: every ``nn.Linear`` and ``nn.Conv2d`` layer (``groups=1``,
    bias folded in as a homogeneous coordinate) gets a Kronecker-factored Fisher block ``A ⊗ G``
    (Martens & Grosse 2015; Grosse & Martens 2016 for convolutions; conventions in :mod:`sb3_acktr.kfac.factors`),
    and so does every layer of a unidirectional ``nn.LSTM`` (Martens, Ba & Johnson 2018; :mod:`sb3_acktr.kfac.recurrent`).
    Every other trainable parameter (a free ``log_std``, BatchNorm, grouped convolutions, custom layers) is
    preconditioned by a running diagonal Fisher estimate, ``∇ / (F_diag + λ)``, where
    ``F_diag ≈ N·(∇L_F)²`` is estimated from the Fisher-loss gradient (unbiased because the score has zero
    mean under model-sampled targets), inside the same trust region.

    One update (Wu et al. 2017, "Scalable trust-region method for deep reinforcement learning using
    Kronecker-factored approximation", sec. 3):

    1. ``Δ = F̂⁻¹ ∇`` with factored Tikhonov damping λ (``inverse_method="cholesky"``) or λ added to the
       eigenvalue products (``"eigen"``, as OpenAI baselines); inverses are recomputed every
       ``inverse_interval`` steps.
    2. Trust region (sec. 3.2): ``ν = min(1, √(kfac_clip / (lr² · Δᵀ∇)))``, so the step ``lr·ν·Δ`` has a
       quadratic-model KL ``½·(lr·ν)²·ΔᵀF̂Δ ≤ kfac_clip / 2``: ``kfac_clip`` is 2δ of the paper (SB2's name).
    3. Momentum as baselines: ``buf ← m·buf + ν·Δ``, ``θ ← θ − lr·(1−m)·buf``.

    With ``max_grad_norm`` the gradient is first clipped to that global norm, as ``clip_grad_norm_`` would.

    Curvature is recorded only when asked: run the forward pass inside :meth:`record_curvature`, then call
    :meth:`update_curvature` with the *Fisher loss*: the negative log-likelihood of targets sampled from the
    model's own predictive distribution (not the training labels), averaged over the batch. A non-finite
    gradient or factor never reaches the weights: that update is skipped with a warning and counted
    (:attr:`skipped_steps`, :attr:`skipped_curvature_updates`). All statistics live in ``self.state`` so
    ``state_dict()`` / ``load_state_dict()`` round-trip exactly (``torch.load(weights_only=True)`` included).

    Example, a classifier outside RL::

        import torch as th
        from torch import nn
        from torch.nn import functional as F
        from sb3_acktr import KFAC

        th.manual_seed(0)
        x, y = th.randn(256, 10), th.randint(0, 3, (256,))
        model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 3))
        optimizer = KFAC(model, lr=0.1, kfac_clip=0.01)
        for _ in range(50):
            with optimizer.record_curvature():
                logits = model(x)
            # Fisher loss: log-likelihood of labels sampled from the model itself
            sampled = th.distributions.Categorical(logits=logits.detach()).sample()
            optimizer.update_curvature(F.cross_entropy(logits, sampled))
            optimizer.zero_grad()
            F.cross_entropy(logits, y).backward()
            optimizer.step()

    :param model: The module whose parameters are optimized (never modified: hooks are attached only while
        :meth:`record_curvature` is active)
    :param lr: Learning rate η_max (SB2's ``learning_rate``), >= 0
    :param momentum: Momentum m in [0, 1)
    :param kfac_clip: Trust-region size, > 0 (SB2's name; 2δ in the ACKTR paper): the step is scaled by
        ``min(1, sqrt(kfac_clip / (lr**2 * Δᵀ∇)))``
    :param damping: Tikhonov damping λ > 0. In the factored (Cholesky) form it is split between the factors
        (π√λ on A, √λ/π on G), which is not the same regulariser as SB2's λ added to eigenvalue products
    :param stats_decay: Running-average weight ε in [0, 1) of the old statistics: ``A ← ε·A + (1−ε)·A_batch``
        (the first batch initialises the factors). The diagonal fallback, a single noisy draw per update, always
        warms up: ``ε_k = min(ε, 1 − 1/k)`` at its k-th update, so its first ``1/(1−ε)`` estimates are plainly
        averaged
    :param stats_warm_up: Warm the Kronecker factors up the same way (on by default; SB2's ``cold_iter`` averaged its
        first batches plainly too). Without it the first batch keeps weight ε^k, and where the Fisher grows from a tiny
        start (SB3's 0.01-gain action head) the factors lag it: the trust region's quadratic model then under-predicts
        the early steps' KL, which also makes those steps larger (docs/benchmark.md, "Warming the factors up")
    :param inverse_interval: Recompute the damped inverses every this many steps (SB2's ``kfac_update``)
    :param stats_interval: :attr:`curvature_update_due` is True every this many steps, telling callers such as
        ACKTR when to record curvature
    :param stats_samples: If set, the Kronecker factors of a curvature update are estimated from this many
        samples of the batch, drawn without replacement with torch's RNG (the Fisher backward still runs on the
        whole batch, and the diagonal fallback uses all of it). Their cost then no longer grows with the batch;
        the running average still sees ``stats_samples`` new samples per update. ``None``: the whole batch
    :param inverse_method: ``"cholesky"`` (factored Tikhonov damping) or ``"eigen"`` (λ added to the
        eigenvalue products, as OpenAI baselines and SB2)
    :param trust_region: ``"joint"``: one ν for all parameters (SB2), using the first group's ``kfac_clip``;
        ``"per_group"``: each parameter group is scaled by its own ν and ``kfac_clip``
    :param weight_sharing: Form of the Kronecker factors of the layers that share their weight: ``nn.Conv2d`` across
        output positions, each ``nn.LSTM`` layer across the steps of a sequence (Eschenhagen et al. 2023; conventions
        in :mod:`sb3_acktr.kfac.factors` and :mod:`sb3_acktr.kfac.recurrent`): ``"expand"`` (positions or steps as
        extra samples; KFC for convolutions) or ``"reduce"`` (aggregated per sample, or per sequence), for every such
        layer; or a dict from layer names (as in ``model.named_modules()``; ``"<lstm>.l<k>"`` for layer k of an LSTM)
        to forms, the layers it does not name being ``"expand"``
    :param lstm_curvature: Curvature of the ``nn.LSTM`` weights (unidirectional, without projections):
        ``"kronecker"``, a block ``A ⊗ G`` per layer over ``[W_ih, W_hh, b_ih + b_hh]`` with the time steps as
        samples (Martens, Ba & Johnson 2018; conventions in :mod:`sb3_acktr.kfac.recurrent`: inside
        :meth:`record_curvature` the LSTM runs step by step to expose its gates), or ``"diagonal"``, the diagonal Fisher
    :param loss_reduction: ``"mean"`` if the Fisher loss is a mean over the batch (gradients are rescaled by
        the batch size to per-sample gradients), ``"sum"`` if it is a sum
    :param param_groups: Optional parameter groups (dicts with ``"params"`` and per-group options such as
        ``"lr"``, ``"kfac_clip"``, ``"name"``) that partition the model's trainable parameters; a layer's
        weight and bias must be in the same group. Default: one group with every trainable parameter
    :param process_group: The ``torch.distributed`` process group of a data-parallel run (default: the world group,
        if ``torch.distributed`` is initialised with more than one rank, looked up at each use and never held; a group
        of one rank is the single-process case). Then the batch factors and the diagonal Fisher's gradients are
        summed over the ranks, weighted by their sample counts (the statistics of the union of the ranks' batches),
        and ``step()`` averages the gradients over the ranks unless ``model`` is a ``DistributedDataParallel`` (which
        already did). The parameters are broadcast from the group's first rank at construction, and the configuration
        is checked to be the same on every rank (a ``ValueError`` names what differs); ν, the steps and the momentum are then
        identical on every rank, so the parameters never diverge. Every rank must call ``update_curvature()`` and
        ``step()`` together, on batches of the same structure
    :param distributed_inverses: In a data-parallel run, ``"all_ranks"`` computes every damped inverse on every rank
        (no communication) and ``"one_rank"`` computes each layer's on one rank (assigned by cost, d³ + o³) and
        shares them in one collective (1/N of the compute, the inverses' size in communication)
    :param max_grad_norm: If set, the gradient is clipped to this global 2-norm (over every parameter with a gradient)
        before it is preconditioned, as ``torch.nn.utils.clip_grad_norm_`` before ``step()`` would clip it, and left
        clipped in ``.grad``; ``math.inf`` never clips. Fused into the step: the norm joins Δᵀ∇'s host sync, and since
        Δ is linear in ∇ the clipping coefficient c scales Δ by c and Δᵀ∇ by c². Settable between steps. None: no
        clipping
    :param max_factor_dim: The widest Kronecker factor a layer may get: a layer whose A or G would be wider (a Linear
        on a flattened image's pixels, for one) uses the diagonal Fisher fallback instead, with a warning that names it
        (its factor would cost d² memory twice and d³ per inverse). None: no limit
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = DEFAULTS["lr"],
        momentum: float = DEFAULTS["momentum"],
        kfac_clip: float = DEFAULTS["kfac_clip"],
        damping: float = DEFAULTS["damping"],
        stats_decay: float = DEFAULTS["stats_decay"],
        stats_warm_up: bool = DEFAULTS["stats_warm_up"],
        inverse_interval: int = DEFAULTS["inverse_interval"],
        stats_interval: int = DEFAULTS["stats_interval"],
        stats_samples: int | None = DEFAULTS["stats_samples"],
        inverse_method: str = DEFAULTS["inverse_method"],
        trust_region: str = DEFAULTS["trust_region"],
        weight_sharing: str | dict[str, str] = DEFAULTS["weight_sharing"],
        lstm_curvature: str = DEFAULTS["lstm_curvature"],
        loss_reduction: str = DEFAULTS["loss_reduction"],
        param_groups: list[dict[str, Any]] | None = None,
        process_group: dist.ProcessGroup | None = None,
        distributed_inverses: str = DEFAULTS["distributed_inverses"],
        max_factor_dim: int | None = DEFAULTS["max_factor_dim"],
        max_grad_norm: float | None = DEFAULTS["max_grad_norm"],
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"KFAC needs the nn.Module it optimizes, got {type(model).__name__}.")
        defaults = dict(lr=lr, momentum=momentum, kfac_clip=kfac_clip, damping=damping, stats_decay=stats_decay)
        self._check_group_options(defaults)
        options = dict(
            stats_warm_up=stats_warm_up,
            inverse_interval=inverse_interval,
            stats_interval=stats_interval,
            stats_samples=stats_samples,
            inverse_method=inverse_method,
            trust_region=trust_region,
            lstm_curvature=lstm_curvature,
            loss_reduction=loss_reduction,
            distributed_inverses=distributed_inverses,
            max_factor_dim=max_factor_dim,
        )
        for name, value in options.items():
            HYPERPARAMETERS[name].check(name, value)

        self.model = model
        self.stats_warm_up = stats_warm_up
        self.inverse_interval = inverse_interval
        self.stats_interval = stats_interval
        self.stats_samples = stats_samples
        self.inverse_method = inverse_method
        self.trust_region = trust_region
        self.loss_reduction = loss_reduction
        self.lstm_curvature = lstm_curvature
        self.max_factor_dim = max_factor_dim
        self.max_grad_norm = max_grad_norm
        self.layers = find_layers(model, lstm_curvature, max_factor_dim)
        self._set_weight_sharing(weight_sharing)
        trainable = [param for param in model.parameters() if param.requires_grad]
        if not trainable:
            raise ValueError("model has no trainable parameter (every requires_grad is False).")
        covered = {id(param) for layer in self.layers for param in layer.params}
        self.fallback_params = [param for param in trainable if id(param) not in covered]
        groups = self._check_param_groups(param_groups, trainable)
        super().__init__(groups, defaults)
        for index, group in enumerate(self.param_groups):
            self._check_group_options(group, f"param_groups[{index}]")
        self._index_parameters()
        # Counters, saved by state_dict() under the key "kfac"
        self.steps = 0
        self.curvature_updates = 0
        self.skipped_steps = 0
        self.skipped_curvature_updates = 0
        #: Parameters whose statistics were found damaged (NaN/inf) and reset
        self.reset_statistics = 0
        #: Trust-region figures of the last step(), per group: nu, vg (Δᵀ∇), quadratic_kl
        self.last_step_info: list[dict[str, float]] = []
        self.distributed_inverses = distributed_inverses
        #: Whether all_reduce_gradients() ran since the last step()
        self._gradients_averaged = False
        self._join_process_group(process_group)

    def _join_process_group(self, process_group: dist.ProcessGroup | None) -> None:
        """Check that every rank is configured alike, start from the first rank's parameters, assign the inverses."""
        if process_group is not None and dist.get_world_size(process_group) == 1:
            process_group = None
        #: The group given (None: the default group, looked up at each use by :attr:`process_group`)
        self._given_process_group = process_group
        self._follows_default_group = process_group is None and default_process_group() is not None
        process_group = self.process_group
        #: DistributedDataParallel averages the gradients in its backward pass; otherwise step() does
        self.average_gradients = not isinstance(self.model, DistributedDataParallel)
        #: The rank computing each layer's inverses (every rank its own under "all_ranks" or outside a distributed run)
        self._inverse_owner: dict[str, int | None] = dict.fromkeys((layer.name for layer in self.layers), None)
        if process_group is None:
            return
        if any(layer.lstm_layer is not None and layer.weight_sharing == "reduce" for layer in self.layers):
            raise ValueError(
                "KFAC: the reduce form of nn.LSTM layers does not run data-parallel yet (its factors are normalised by "
                "each rank's sequences). Use weight_sharing='expand' for them under torch.distributed."
            )
        check_same_on_all_ranks("KFAC", self._configuration(), process_group)
        if self.average_gradients:
            broadcast_parameters_([param for group in self.param_groups for param in group["params"]], process_group)
        if self.distributed_inverses == "one_rank":
            costs = [float(layer.a_dim) ** 3 + float(layer.g_dim) ** 3 for layer in self.layers]
            owners = assign_owners(costs, dist.get_world_size(process_group))
            self._inverse_owner = {layer.name: owner for layer, owner in zip(self.layers, owners, strict=True)}

    @property
    def process_group(self) -> dist.ProcessGroup | None:
        """
        The process group the statistics and gradients are reduced over (None: a single process). Built without one,
        KFAC looks the default group up at each use instead of holding it: ``dist.destroy_process_group()`` then frees
        the group and stops gloo's threads, which would otherwise run on into the interpreter's shutdown and abort the
        process when one needs the GIL ("terminate called without an active exception").
        """
        return default_process_group() if self._follows_default_group else self._given_process_group

    def _configuration(self) -> dict[str, Any]:
        """What must be equal on every rank of a distributed run."""
        options = (
            "stats_warm_up",
            "inverse_interval",
            "stats_interval",
            "stats_samples",
            "inverse_method",
            "trust_region",
            "lstm_curvature",
            "max_factor_dim",
            "max_grad_norm",
        )
        return {
            **{name: getattr(self, name) for name in options},
            "loss_reduction": self.loss_reduction,
            "distributed_inverses": self.distributed_inverses,
            "layers": [(layer.name, layer.a_dim, layer.g_dim, layer.weight_sharing) for layer in self.layers],
            "parameters": [(tuple(param.shape), str(param.dtype)) for group in self.param_groups for param in group["params"]],
            "param_groups": [{key: value for key, value in group.items() if key != "params"} for group in self.param_groups],
        }

    @property
    def max_grad_norm(self) -> float | None:
        """The global gradient norm :meth:`step` clips to (None: no clipping), checked when set."""
        return self._max_grad_norm

    @max_grad_norm.setter
    def max_grad_norm(self, value: float | None) -> None:
        HYPERPARAMETERS["max_grad_norm"].check("max_grad_norm", value)
        self._max_grad_norm = value

    def _index_parameters(self) -> None:
        """The lookups by parameter identity (``id``), rebuilt whenever the parameters are new objects (a copy)."""
        self._layer_of_weight = {id(layer.weight): layer for layer in self.layers}
        self._fallback_ids = {id(param) for param in self.fallback_params}
        self._group_index = {id(param): index for index, group in enumerate(self.param_groups) for param in group["params"]}

    def __getstate__(self) -> dict[str, Any]:
        """
        Everything but the lookups by ``id``, for ``copy.deepcopy`` and pickle (torch's keeps only the state, the
        groups and the defaults, which would lose the model, the layers and the counters).
        """
        return {
            key: value
            for key, value in self.__dict__.items()
            if key not in ("_layer_of_weight", "_fallback_ids", "_group_index", "_given_process_group")
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._index_parameters()
        # A process group cannot be copied: a copy made on every rank joins the default one, as a new KFAC would
        self._given_process_group = None
        self._follows_default_group = default_process_group() is not None

    def _set_weight_sharing(self, weight_sharing: str | dict[str, str]) -> None:
        """Give each weight-sharing layer its form; reject a form for a layer it does not apply to."""
        sharing = {layer.name: layer for layer in self.layers if isinstance(layer.module, WEIGHT_SHARING_MODULES)}
        if isinstance(weight_sharing, str):
            HYPERPARAMETERS["weight_sharing"].check("weight_sharing", weight_sharing)
            if weight_sharing != "expand" and not sharing:
                raise ValueError(
                    f"weight_sharing={weight_sharing!r} applies to nn.Conv2d and nn.LSTM layers, but "
                    f"{type(self.model).__name__} has none with Kronecker factors. Leave weight_sharing at 'expand'."
                )
            forms = dict.fromkeys(sharing, weight_sharing)
        elif isinstance(weight_sharing, dict):
            for name, form in weight_sharing.items():
                HYPERPARAMETERS["weight_sharing"].check(f"weight_sharing[{name!r}]", form)
                if name not in sharing:
                    raise ValueError(
                        f"weight_sharing names layer {name!r}, which is not an nn.Conv2d or nn.LSTM layer with Kronecker "
                        f"factors{self._why_not_sharing(name, sharing)}; the form applies to these layers: {sorted(sharing)}."
                    )
            forms = weight_sharing
        else:
            raise TypeError(
                f"weight_sharing must be one of {WEIGHT_SHARING_FORMS} or a dict from layer names to them, "
                f"got {type(weight_sharing).__name__}."
            )
        for name, form in forms.items():
            sharing[name].weight_sharing = form

    def _why_not_sharing(self, name: str, sharing: dict[str, KroneckerLayer]) -> str:
        """
        Why a module named in a ``weight_sharing`` dict is not among the weight-sharing layers, for the error.

        :param name: The name given
        :param sharing: The weight-sharing layers by name
        :return: `` (reason)``, or "" when ``name`` is no convolution or LSTM
        """
        module = dict(self.model.named_modules()).get(name)
        if not isinstance(module, WEIGHT_SHARING_MODULES):
            return ""
        own = sorted(layer for layer, kronecker_layer in sharing.items() if kronecker_layer.module is module)
        if own:  # an LSTM's layers are named "<name>.l<k>"
            return f" (the layers of nn.LSTM {name!r} are {own})"
        if not any(param.requires_grad for param in module.parameters()):
            return f" ({type(module).__name__} {name!r} is frozen: KFAC does not optimize it)"
        # The constructor left it to the diagonal Fisher, and its warning said why
        return (
            f" ({type(module).__name__} {name!r} is on the diagonal Fisher: groups != 1, a factor wider than "
            "max_factor_dim, lstm_curvature='diagonal', an LSTM without Kronecker factors or a frozen weight)"
        )

    def _check_param_groups(
        self, param_groups: list[dict[str, Any]] | None, trainable: list[nn.Parameter]
    ) -> list[dict[str, Any]]:
        """Validate user parameter groups: they partition the trainable parameters, a layer stays in one group."""
        if param_groups is None:
            return [{"params": trainable}]
        group_of: dict[int, int] = {}
        groups = []
        for index, group in enumerate(param_groups):
            if not isinstance(group, dict) or "params" not in group:
                raise ValueError(f"param_groups[{index}] must be a dict with a 'params' entry, got {group!r}.")
            # torch also accepts a single tensor
            params = [group["params"]] if isinstance(group["params"], th.Tensor) else list(group["params"])
            for param in params:
                if id(param) in group_of:
                    raise ValueError(f"A parameter appears in param_groups[{group_of[id(param)]}] and [{index}].")
                group_of[id(param)] = index
            groups.append({**group, "params": params})
        missing = [p for p in trainable if id(p) not in group_of]
        foreign = set(group_of) - {id(p) for p in trainable}
        if missing or foreign:
            raise ValueError(
                f"param_groups must partition the model's trainable parameters: {len(missing)} missing, "
                f"{len(foreign)} not trainable parameters of the model."
            )
        for layer in self.layers:
            if len({group_of[id(param)] for param in layer.params}) > 1:
                raise ValueError(
                    f"The parameters of layer '{layer.name}' (weights and biases) must be in the same parameter group."
                )
        return groups

    @staticmethod
    def _check_group_options(options: dict[str, Any], where: str = "") -> None:
        """Raise a ValueError naming the option (``lr`` or ``param_groups[i]['lr']``) unless each is in its range."""
        for name in GROUP_OPTIONS:
            HYPERPARAMETERS[name].check(f"{where}[{name!r}]" if where else name, options[name])

    @property
    def curvature_update_due(self) -> bool:
        """Whether the statistics interval asks for a curvature update before the next :meth:`step`."""
        return self.steps % self.stats_interval == 0

    @contextmanager
    def record_curvature(self, enabled: bool = True) -> Iterator[None]:
        """
        Context in which forward passes of the covered layers are recorded for :meth:`update_curvature`.

        Hooks exist only inside this context: rollouts, ``predict`` and evaluation are never recorded.
        Only the inputs and outputs are kept (no copy); the statistics are computed by :meth:`update_curvature`.
        Each context starts a new recording: what an earlier one recorded and no update consumed is dropped
        (it would keep its graph alive).

        :param enabled: If False, record nothing (convenient with :attr:`curvature_update_due`)
        """
        if not enabled:
            yield
            return
        # One layer per LSTM (its modules are shared by its layers)
        lstms = {id(layer.module): (layer.name, layer.module) for layer in self.layers if isinstance(layer.module, nn.LSTM)}
        for name, lstm in lstms.values():
            if "forward" in vars(lstm):
                raise RuntimeError(
                    f"KFAC.record_curvature: the nn.LSTM of layer '{name}' got a forward of its own after "
                    "KFAC was built; the curvature pass would replace it (it runs nn.LSTM's cell step by step). Set it "
                    "before building KFAC (the LSTM then uses the diagonal Fisher) or remove it."
                )
        for layer in self.layers:
            layer.records = []
        handles = [
            layer.module.register_forward_hook(self._make_recorder(layer)) for layer in self.layers if layer.lstm_layer is None
        ]
        for _, lstm in lstms.values():
            # An instance attribute shadows nn.LSTM.forward until the context ends: the fused kernel does not run twice
            lstm.forward = self._make_lstm_recorder(lstm)  # type: ignore[method-assign]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            for _, lstm in lstms.values():
                del lstm.forward

    @staticmethod
    def _make_recorder(layer: KroneckerLayer) -> Callable[[nn.Module, tuple[Any, ...], th.Tensor], None]:
        def record(module: nn.Module, inputs: tuple[Any, ...], output: th.Tensor) -> None:
            if output.requires_grad:
                layer.records.append(Record(layer, inputs[0].detach(), output, inputs[0]._version, output._version))

        return record

    def _make_lstm_recorder(self, lstm: nn.LSTM) -> Callable[..., Any]:
        """
        The LSTM's forward inside :meth:`record_curvature`: the cell run step by step, exposing each layer's inputs and
        gates (:func:`~sb3_acktr.kfac.recurrent.lstm_forward`); the fused kernel when gradients are off.
        """
        layers = sorted((layer for layer in self.layers if layer.module is lstm), key=lambda layer: layer.lstm_layer or 0)

        def forward(input: th.Tensor, hx: tuple[th.Tensor, th.Tensor] | None = None) -> Any:
            if not th.is_grad_enabled():
                return nn.LSTM.forward(lstm, input, hx)
            output, states, recorded = lstm_forward(lstm, input, hx)
            for layer, (rows, probe) in zip(layers, recorded, strict=True):
                layer.records.append(Record(layer, rows, probe, rows._version, probe._version))
            return output, states

        return forward

    def update_curvature(
        self, fisher_loss: th.Tensor, retain_graph: bool = True, sample_mask: th.Tensor | None = None
    ) -> None:
        """
        Update the running Kronecker factors (and the diagonal fallback) from the Fisher loss.

        Differentiates ``fisher_loss`` only with respect to the outputs of the layers recorded by
        :meth:`record_curvature` (and the fallback parameters): no weight gradient is computed and
        ``.grad`` is left untouched.

        :param fisher_loss: Scalar negative log-likelihood of model-sampled targets (see ``loss_reduction``)
        :param retain_graph: Keep the graph for the training loss's backward pass
        :param sample_mask: Which rows of the batch are samples (a boolean tensor of the batch size), for batches
            padded to a common shape, such as the sequences of a recurrent rollout: only those rows enter the factors,
            and the Fisher loss must be a mean (or sum) over them. Every recorded forward pass must then see the
            batch's rows. ``None``: every row
        """
        self._check_not_modified_in_place()
        records = [record for layer in self.layers for record in layer.records]
        for layer in self.layers:
            layer.records = []
        if not records:
            raise RuntimeError(
                "KFAC.update_curvature: no forward pass was recorded. Run the model's forward pass inside "
                "`with optimizer.record_curvature():`, with gradients enabled."
            )
        if not fisher_loss.requires_grad:
            raise RuntimeError("KFAC.update_curvature: the Fisher loss does not require grad (computed under no_grad?).")
        fallback: list[th.Tensor] = [param for param in self.fallback_params if param.requires_grad]
        grads = th.autograd.grad(
            fisher_loss, [record.output for record in records] + fallback, retain_graph=retain_graph, allow_unused=True
        )
        fallback_grads = grads[len(records) :]
        records, output_grads, sequence_steps = self._merge_lstm_calls(records, grads[: len(records)])
        # The samples of the Fisher loss: the first dimension of the layers' inputs (an LSTM's steps if it has no other)
        batch_size = records[0].inputs.shape[0]
        rows = None if sample_mask is None else self._masked_rows(records, sample_mask)
        if rows is not None:
            batch_size = rows.numel()
        scale = batch_size if self.loss_reduction == "mean" else 1
        with th.no_grad():
            # Gradients of the Fisher loss summed over the samples, Σ_i g_i, for the diagonal fallback
            summed_grads = {
                param: grad * scale for param, grad in zip(fallback, fallback_grads, strict=True) if grad is not None
            }
            # An LSTM's reduce form aggregates whole sequences: from every real step, before rows are drawn
            reduced = self._reduced_lstm_factors(records, output_grads, sequence_steps, sample_mask, scale, batch_size)
            records, output_grads = self._without_layers(records, output_grads, set(reduced))
            factor_samples = batch_size
            if self.stats_samples is not None and batch_size > self.stats_samples:
                if rows is None:
                    self._check_one_batch_size(records, batch_size)
                chosen = th.randperm(batch_size, device=records[0].inputs.device)[: self.stats_samples]
                rows = chosen if rows is None else rows[chosen]
                factor_samples = self.stats_samples
            if rows is not None:
                records, output_grads = self._select_rows(records, output_grads, rows)
            new_factors = {**self._batch_factors(records, output_grads, scale, factor_samples), **reduced}
            if self.process_group is not None:
                new_factors, summed_grads, batch_size = self._sum_over_ranks(
                    new_factors, summed_grads, factor_samples, batch_size
                )
            # Diagonal Fisher of the other parameters: Var(Σ_i g_i) = N·E[g²] since E[g] = 0 under model samples
            new_diagonals = {param: grad.square() / batch_size for param, grad in summed_grads.items()}
            tensors = [t for pair in new_factors.values() for t in pair] + list(new_diagonals.values())
            if not all_finite(tensors):
                self.skipped_curvature_updates += 1
                warnings.warn(
                    "KFAC: non-finite curvature statistics (NaN/inf in activations or Fisher-loss gradients); "
                    f"this curvature update is skipped ({self.skipped_curvature_updates} so far).",
                    RuntimeWarning,
                )
                return
            averages = [
                (layer.weight, {"A": a_new, "G": g_new}, self.stats_warm_up) for layer, (a_new, g_new) in new_factors.items()
            ]
            # One draw of N·(∇L_F)² per update (a χ²₁-like estimate): average the first ones plainly
            averages += [(param, {"fisher_diag": diagonal}, True) for param, diagonal in new_diagonals.items()]
            self._running_averages(averages)
        self.curvature_updates += 1

    def _sum_over_ranks(
        self,
        new_factors: dict[KroneckerLayer, tuple[th.Tensor, th.Tensor]],
        summed_grads: dict[th.Tensor, th.Tensor],
        factor_samples: int,
        batch_size: int,
    ) -> tuple[dict[KroneckerLayer, tuple[th.Tensor, th.Tensor]], dict[th.Tensor, th.Tensor], int]:
        """
        The statistics of the union of the ranks' batches, in one collective per dtype: each rank's factors (means
        over its samples) weighted by its sample count, the summed gradients added, the counts added.
        """
        assert self.process_group is not None
        layers, params = list(new_factors), list(summed_grads)
        counts = th.tensor([factor_samples, batch_size], dtype=th.float64, device=self.layers[0].weight.device)
        tensors = [factor * factor_samples for layer in layers for factor in new_factors[layer]]
        totals = all_reduce_sum([*tensors, *(summed_grads[param] for param in params), counts], self.process_group)
        total_factor_samples, total_batch_size = (int(count) for count in totals[-1].tolist())
        factors = {
            layer: (totals[2 * index] / total_factor_samples, totals[2 * index + 1] / total_factor_samples)
            for index, layer in enumerate(layers)
        }
        grads = dict(zip(params, totals[len(tensors) : len(tensors) + len(params)], strict=True))
        return factors, grads, total_batch_size

    def _check_not_modified_in_place(self) -> None:
        """
        Raise if a recorded input or output was changed in place after the forward pass saw it: A would be built
        from the changed input, and G from the gradient with respect to the changed output (after an
        ``nn.ReLU(inplace=True)``, ∂L/∂relu(h) instead of ∂L/∂h).
        """
        for layer in self.layers:
            for record in layer.records:
                changed = [
                    name
                    for name, tensor, version in (
                        ("output", record.output, record.output_version),
                        ("input", record.inputs, record.input_version),
                    )
                    if tensor._version != version
                ]
                if changed:
                    for other in self.layers:
                        other.records = []
                    raise RuntimeError(
                        f"KFAC: the {' and '.join(changed)} of layer '{layer.name}' was modified in place after the layer "
                        "used it (e.g. by nn.ReLU(inplace=True) or another in-place operation), so its Kronecker factors "
                        "would be wrong. Use out-of-place operations (inplace=False) on the tensors that flow in and out "
                        "of nn.Linear and nn.Conv2d layers."
                    )

    def _check_one_batch_size(self, records: list[Record], batch_size: int) -> None:
        """Rows can be selected only if every recorded forward pass saw the same batch."""
        sizes = {record.inputs.shape[0] for record in records}
        if sizes != {batch_size}:
            raise ValueError(
                f"KFAC selects rows of the batch (stats_samples={self.stats_samples}, or a sample_mask), but the recorded "
                f"forward passes have batch sizes {sorted(sizes)}: every recorded call must see the same batch. Use "
                "stats_samples=None and no sample_mask."
            )

    def _masked_rows(self, records: list[Record], sample_mask: th.Tensor) -> th.Tensor:
        """The indices of the rows ``sample_mask`` keeps, after checking it fits the recorded batch."""
        batch_size = records[0].inputs.shape[0]
        if not (isinstance(sample_mask, th.Tensor) and sample_mask.dtype == th.bool and sample_mask.shape == (batch_size,)):
            raise ValueError(
                f"sample_mask must be a boolean tensor of shape ({batch_size},) (the recorded batch), got "
                f"{sample_mask.dtype if isinstance(sample_mask, th.Tensor) else type(sample_mask).__name__} "
                f"{tuple(sample_mask.shape) if isinstance(sample_mask, th.Tensor) else ''}".rstrip() + "."
            )
        self._check_one_batch_size(records, batch_size)
        rows = sample_mask.nonzero().squeeze(1)
        if rows.numel() == 0:
            raise ValueError("sample_mask keeps no row of the batch: there is no sample to estimate the curvature from.")
        return rows

    @staticmethod
    def _merge_lstm_calls(
        records: list[Record], output_grads: tuple[th.Tensor | None, ...]
    ) -> tuple[list[Record], tuple[th.Tensor | None, ...], dict[KroneckerLayer, int]]:
        """
        The records with each LSTM layer's calls merged into one of per-step rows, ``(sequences · steps, ·)``
        sequence-major (:func:`~sb3_acktr.kfac.recurrent.sequence_rows`), after the other layers' records; a call
        without gradient counts zero, a layer with none has a gradient of None. Also the steps per sequence of each
        LSTM layer whose calls all ran on the same sequences.
        """
        merged = [
            (record, grad) for record, grad in zip(records, output_grads, strict=True) if record.layer.lstm_layer is None
        ]
        calls: dict[KroneckerLayer, list[tuple[Record, th.Tensor | None]]] = {}
        for record, grad in zip(records, output_grads, strict=True):
            if record.layer.lstm_layer is not None:
                calls.setdefault(record.layer, []).append((record, grad))
        steps = {
            layer: sum(record.inputs.shape[0] for record, _ in layer_calls)
            for layer, layer_calls in calls.items()
            if len({record.inputs.shape[1] for record, _ in layer_calls}) == 1
        }
        for layer_calls in calls.values():
            first = layer_calls[0][0]._replace(inputs=sequence_rows([record.inputs for record, _ in layer_calls]))
            if all(grad is None for _, grad in layer_calls):
                merged.append((first, None))
                continue
            grads = [th.zeros_like(record.output) if grad is None else grad for record, grad in layer_calls]
            merged.append((first, sequence_rows(grads)))
        return [record for record, _ in merged], tuple(grad for _, grad in merged), steps

    @staticmethod
    def _reduced_lstm_factors(
        records: list[Record],
        output_grads: tuple[th.Tensor | None, ...],
        sequence_steps: dict[KroneckerLayer, int],
        sample_mask: th.Tensor | None,
        scale: int,
        samples: int,
    ) -> dict[KroneckerLayer, tuple[th.Tensor, th.Tensor]]:
        """A and G of the LSTM layers in the reduce form (:func:`~sb3_acktr.kfac.recurrent.reduced_sequence_factors`)."""
        factors = {}
        for record, grad in zip(records, output_grads, strict=True):
            layer = record.layer
            if layer.lstm_layer is None or layer.weight_sharing != "reduce" or grad is None:
                continue
            if layer not in sequence_steps:
                raise ValueError(
                    f"KFAC: the reduce form of nn.LSTM layer '{layer.name}' needs every call of the LSTM on the same "
                    "sequences (successive steps of one batch). Use weight_sharing='expand' for it."
                )
            factors[layer] = reduced_sequence_factors(
                record.inputs, grad * scale, sequence_steps[layer], sample_mask, layer.bias_column, samples
            )
        return factors

    @staticmethod
    def _without_layers(
        records: list[Record], output_grads: tuple[th.Tensor | None, ...], layers: set[KroneckerLayer]
    ) -> tuple[list[Record], tuple[th.Tensor | None, ...]]:
        """The records (and their gradients) of the other layers."""
        kept = [(record, grad) for record, grad in zip(records, output_grads, strict=True) if record.layer not in layers]
        return [record for record, _ in kept], tuple(grad for _, grad in kept)

    @staticmethod
    def _select_rows(
        records: list[Record], output_grads: tuple[th.Tensor | None, ...], rows: th.Tensor
    ) -> tuple[list[Record], tuple[th.Tensor | None, ...]]:
        """The same ``rows`` of every recorded input and output gradient (inputs fed to several layers stay shared)."""
        inputs: dict[tuple[Any, ...], th.Tensor] = {}
        selected = []
        for record in records:
            key = _tensor_key(record.inputs)
            if key not in inputs:
                inputs[key] = record.inputs[rows]
            selected.append(record._replace(inputs=inputs[key]))
        return selected, tuple(None if grad is None else grad[rows] for grad in output_grads)

    @staticmethod
    def _batch_factors(
        records: list[Record], output_grads: Iterable[th.Tensor | None], scale: int, samples: int
    ) -> dict[KroneckerLayer, tuple[th.Tensor, th.Tensor]]:
        """
        A and G of this batch for each layer, pooling the layer's calls as extra samples; an LSTM layer's A is normalised
        by the ``samples`` of the Fisher loss (:mod:`sb3_acktr.kfac.recurrent`).
        """
        sums: dict[KroneckerLayer, _FactorSums] = {}
        # Linear layers fed the same tensor (an actor's and a critic's first layers on shared features) share A's sum
        linear_moments: dict[tuple[Any, ...], tuple[th.Tensor, int]] = {}
        for record, grad_output in zip(records, output_grads, strict=True):
            if grad_output is None:  # this call does not influence the Fisher loss
                continue
            layer = record.layer
            if layer.lstm_layer is not None:
                a_sum, a_norm = row_second_moment(record.inputs, layer.bias_column), samples
            elif isinstance(layer.module, nn.Linear):
                key = (*_tensor_key(record.inputs), layer.module.bias is not None)
                if key not in linear_moments:
                    linear_moments[key] = input_second_moment(layer.module, record.inputs)
                a_sum, a_norm = linear_moments[key]
            else:
                a_sum, a_norm = input_second_moment(layer.module, record.inputs, weight_sharing=layer.weight_sharing)
            # The rows unscaled: G's sum is scaled by scale² with the normalisation, in one fused operation below
            g_rows, g_norm = layer_output_grad_rows(layer.module, grad_output, 1, layer.weight_sharing)
            call = _FactorSums(a_sum, a_norm, g_rows.t() @ g_rows, g_norm)
            if layer in sums:
                old = sums[layer]
                call = _FactorSums(old.a_sum + a_sum, old.a_norm + a_norm, old.g_sum + call.g_sum, old.g_norm + g_norm)
            sums[layer] = call
        if not sums:
            return {}
        totals = [tensor for total in sums.values() for tensor in (total.a_sum, total.g_sum)]
        factors = th._foreach_div(totals, [x for total in sums.values() for x in (total.a_norm, total.g_norm / scale**2)])
        return {layer: (factors[2 * i], factors[2 * i + 1]) for i, layer in enumerate(sums)}

    def _running_averages(self, averages: list[tuple[th.Tensor, dict[str, th.Tensor], bool]]) -> None:
        """
        ``state[key] ← ε·state[key] + (1 − ε)·new[key]`` (ε = ``stats_decay``) for every ``(param, new, warm_up)``; the
        first value initialises it. The tensors sharing a decay are updated by one fused (``_foreach``) operation.

        With ``warm_up``, ``ε_k = min(ε, 1 − 1/k)`` at the parameter's k-th update: a plain average of the first
        ``1/(1−ε)`` values, then the running average.
        """
        by_decay: dict[float, tuple[list[th.Tensor], list[th.Tensor]]] = {}
        for param, new, warm_up in averages:
            state = self.state[param]
            state["stats_updates"] = state.get("stats_updates", 0) + 1
            decay = self._group_of(param)["stats_decay"]
            if warm_up:
                decay = min(decay, 1.0 - 1.0 / state["stats_updates"])
            for key, value in new.items():
                if key in state:
                    olds, news = by_decay.setdefault(decay, ([], []))
                    olds.append(state[key])
                    # A loaded state may hold another dtype than the batch's statistics
                    news.append(value if value.dtype == state[key].dtype else value.to(state[key].dtype))
                else:
                    state[key] = value.clone()
        for decay, (olds, news) in by_decay.items():
            # ε·old + (1 − ε)·new as old + (1 − ε)·(new − old): one fused operation
            th._foreach_lerp_(olds, news, 1.0 - decay)

    def _group_of(self, param: th.Tensor) -> dict[str, Any]:
        return self.param_groups[self._group_index[id(param)]]

    def _layer_update(self, layer: KroneckerLayer, grad: th.Tensor, group: dict[str, Any]) -> th.Tensor:
        """
        The preconditioned gradient matrix ``F̂⁻¹[∇W, ∇b]`` of a layer.

        :param layer: The layer
        :param grad: Its gradient matrix (:meth:`~sb3_acktr.kfac.layers.KroneckerLayer.gradient_matrix`)
        :param group: Its parameter group
        :return: The preconditioned matrix, in the shape and dtype of ``grad``
        """
        state = self.state[layer.weight]
        if "A" not in state and self.curvature_updates + self.skipped_curvature_updates == 0:
            raise RuntimeError(
                f"KFAC: layer '{layer.name}' has no curvature statistics yet. Call update_curvature() "
                "(after a forward pass inside record_curvature()) before the first step()."
            )
        damping = group["damping"]
        if "A" not in state:
            # No statistics (the first curvature update was skipped, or they were reset): zero factors under damping
            # give ∇/λ, as the diagonal fallback before its first estimate; the trust region still bounds the step
            return grad / damping
        # Statistics may have another dtype than the weights (a state loaded from a model of another dtype): the
        # preconditioning runs in A's dtype, the result comes back in the weights'
        dtype = state["A"].dtype
        if dtype != grad.dtype:
            return self._layer_update_in(grad.to(dtype), state, layer.bias_column, damping).to(grad.dtype)
        return self._layer_update_in(grad, state, layer.bias_column, damping)

    def _layer_update_in(self, grad: th.Tensor, state: dict[str, Any], bias: bool, damping: float) -> th.Tensor:
        """The preconditioned gradient matrix in the dtype of ``grad`` (an inverse of another dtype is cast to it)."""
        keys = INVERSE_KEYS[self.inverse_method]
        inverses = [state[key] if state[key].dtype == grad.dtype else state[key].to(grad.dtype) for key in keys]
        if self.inverse_method == "cholesky":
            return precondition_cholesky(grad, inverses[0], inverses[1], bias=bias)
        return precondition_eigen(grad, (inverses[0], inverses[1]), (inverses[2], inverses[3]), damping)

    def all_reduce_gradients(self) -> None:
        """
        Average the gradients over the ranks of a data-parallel run, in one collective per dtype (nothing to do in one
        process, or when ``model`` is a ``DistributedDataParallel``). :meth:`step` does it unless called first: call
        it yourself before anything that needs the whole batch's gradient, such as ``clip_grad_norm_`` (or let
        :meth:`step` clip it: ``max_grad_norm``).
        """
        if self.process_group is not None and self.average_gradients:
            grads = [param.grad for group in self.param_groups for param in group["params"] if param.grad is not None]
            if grads:
                all_reduce_mean_(grads, self.process_group)
        self._gradients_averaged = True

    def _refresh_inverses(self, refresh: bool) -> None:
        """
        Recompute the damped inverses of every layer with statistics if ``refresh``, and of those that have none yet;
        reset damaged factors first. In a distributed run with ``distributed_inverses="one_rank"``, each layer's
        owner computes them and one collective shares them (the others contribute zeros to the sum).
        """
        keys = INVERSE_KEYS[self.inverse_method]
        with_factors = [layer for layer in self.layers if "A" in self.state[layer.weight]]
        factors = [self.state[layer.weight][key] for layer in with_factors for key in ("A", "G")]
        # One host sync for every layer; a layer at a time only once something is known to be damaged
        damaged = refresh and bool(factors) and not all_finite(factors)
        due = []
        for layer in with_factors:
            state = self.state[layer.weight]
            if damaged and not all_finite([state["A"], state["G"]]):
                self._reset_statistics(layer.weight, f"the Kronecker factors of layer '{layer.name}'")
            elif refresh or keys[0] not in state:
                due.append(layer)
        rank = None if self.process_group is None else dist.get_rank(self.process_group)
        for layer in due:
            if self._inverse_owner[layer.name] in (None, rank):
                self._compute_inverses(layer)
        shared = [layer for layer in due if self._inverse_owner[layer.name] is not None]
        if not shared:
            return
        assert self.process_group is not None
        tensors = []
        for layer in shared:
            state = self.state[layer.weight]
            shapes = self._expected_shapes(layer.weight)
            mine = self._inverse_owner[layer.name] == rank
            dtype = state["A"].dtype
            tensors += [state[key] if mine else th.zeros(shapes[key], dtype=dtype, device=state["A"].device) for key in keys]
        totals = iter(all_reduce_sum(tensors, self.process_group))
        for layer in shared:
            state = self.state[layer.weight]
            for key in keys:
                state[key] = next(totals).clone()  # not a view of the collective's buffer, which state_dict() would save

    def _compute_inverses(self, layer: KroneckerLayer) -> None:
        """The damped inverses (or eigen-decompositions) of a layer's factors, in A's dtype."""
        state = self.state[layer.weight]
        dtype = state["A"].dtype
        if self.inverse_method == "cholesky":
            damping = self._group_of(layer.weight)["damping"]
            state["A_inv"], state["G_inv"] = cholesky_inverses(state["A"], state["G"].to(dtype), damping)
        else:
            state["A_eigenvalues"], state["A_eigenvectors"] = eigen_decomposition(state["A"])
            state["G_eigenvalues"], state["G_eigenvectors"] = eigen_decomposition(state["G"].to(dtype))

    def _group_updates(self, group: dict[str, Any]) -> _GroupUpdate:
        """The preconditioned gradient of every parameter of ``group`` with a gradient, by parameter and by block."""
        update = _GroupUpdate([], [])
        for param in group["params"]:
            layer = self._layer_of_weight.get(id(param))
            if layer is not None:
                grad = layer.gradient_matrix()
                if grad is not None:
                    delta = self._layer_update(layer, grad, group)
                    update.steps.extend(layer.split_update(delta))
                    update.blocks.append((grad, delta))
            elif id(param) in self._fallback_ids and param.grad is not None:
                fisher_diag = self.state[param].get("fisher_diag")
                denominator = group["damping"] if fisher_diag is None else fisher_diag + group["damping"]
                delta = (param.grad / denominator).to(param.dtype)
                update.steps.append((param, delta))
                update.blocks.append((param.grad, delta))
        return update

    @th.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """
        Perform one K-FAC update with the trust-region scale and momentum.

        :param closure: A closure that re-evaluates the model and returns the loss (optional)
        :return: The loss returned by ``closure``, if any
        """
        loss = None
        if closure is not None:
            with th.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            self._check_group_options(group, f"param_groups[{index}]")
        if not self._gradients_averaged:
            self.all_reduce_gradients()
        self._gradients_averaged = False
        self._refresh_inverses(self.steps % self.inverse_interval == 0)
        self.steps += 1
        self.last_step_info = []
        group_updates = [self._group_updates(group) for group in self.param_groups]
        max_grad_norm = self.max_grad_norm
        grads = None
        if max_grad_norm is not None:
            grads = [param.grad for group in self.param_groups for param in group["params"] if param.grad is not None]
        # Δᵀ∇ = ΔᵀF̂Δ per group: the quadratic model of the KL (ACKTR paper sec. 3.2)
        vgs, grad_norm = self._step_scalars(group_updates, grads)
        if not (all(math.isfinite(vg) for vg in vgs) and math.isfinite(grad_norm)):
            self.skipped_steps += 1
            warnings.warn(
                "KFAC: non-finite gradient or preconditioned gradient; this update is skipped and the weights "
                f"are unchanged ({self.skipped_steps} skipped so far). Check the loss and the inputs for NaN/inf.",
                RuntimeWarning,
            )
            self._reset_damaged_statistics()
            return loss
        # clip_grad_norm_'s coefficient: Δ is linear in ∇, so clipping ∇ by c scales Δ by c and Δᵀ∇ by c²
        clip = 1.0 if max_grad_norm is None else min(1.0, max_grad_norm / (grad_norm + 1e-6))
        if grads and clip < 1.0:
            th._foreach_mul_(grads, clip)
            vgs = [clip**2 * vg for vg in vgs]
        nus = self._trust_region_scales(vgs)
        # The new momentum buffers (ν·c·Δ: the step of the clipped gradient), checked before any weight moves
        buffers = [
            self._momentum_buffers(update.steps, group["momentum"], nu * clip)
            for group, update, nu in zip(self.param_groups, group_updates, nus, strict=True)
        ]
        flat = [buffer for group_buffers in buffers for buffer in group_buffers]
        if flat and not all_finite(flat):
            self._skip_non_finite_momentum()
            return loss
        for group, update, group_buffers, vg, nu in zip(self.param_groups, group_updates, buffers, vgs, nus, strict=True):
            lr, momentum = group["lr"], group["momentum"]
            params = [param for param, _ in update.steps]
            for param, buffer in zip(params, group_buffers, strict=True):
                self.state[param]["momentum_buffer"] = buffer
            if params:
                # θ <- θ - lr·(1 - m)·buf (a loaded buffer may have another dtype than the weight)
                steps = [
                    buffer if buffer.dtype == param.dtype else buffer.to(param.dtype)
                    for param, buffer in zip(params, group_buffers, strict=True)
                ]
                th._foreach_add_(params, steps, alpha=-lr * (1 - momentum))
            quadratic_kl = 0.5 * (lr * nu) ** 2 * max(vg, 0.0)
            self.last_step_info.append({"nu": nu, "vg": vg, "quadratic_kl": quadratic_kl})
        return loss

    @staticmethod
    def _step_scalars(group_updates: list[_GroupUpdate], grads: list[th.Tensor] | None) -> tuple[list[float], float]:
        """
        ``Δᵀ∇`` of each group's blocks ``(∇, Δ)`` (one product of the concatenated vectors per group) and, given the
        gradients, their global 2-norm, in one host sync. A layer's matrices give the same ``Δᵀ∇`` as its parameters (a
        bias coordinate shared by k biases: ``Δ_b/k`` on each of them, against its column ``Σ∇b_i / k``), in fewer,
        contiguous pieces. The norm is that of the parameters' own gradients, as ``clip_grad_norm_`` takes it: the root
        sum of squares of their norms, which come back in the same sync (no copy of the gradients).

        :param group_updates: The groups' preconditioned gradients
        :param grads: The gradients to take the norm of (None: no norm)
        :return: ``Δᵀ∇`` per group (0 for a group without gradient) and the norm (0 without gradients)
        """
        products: list[th.Tensor | None] = []
        for update in group_updates:
            if not update.blocks:
                products.append(None)
                continue
            deltas = th.cat([delta.reshape(-1) for _, delta in update.blocks])
            flat_grads = th.cat([grad.reshape(-1) for grad, _ in update.blocks])
            products.append(th.dot(deltas, flat_grads.to(deltas.dtype)))
        tensors = [product for product in products if product is not None] + (list(th._foreach_norm(grads)) if grads else [])
        if not tensors:
            return [0.0] * len(group_updates), 0.0
        if any(tensor.dtype != tensors[0].dtype or tensor.device != tensors[0].device for tensor in tensors):
            tensors = [tensor.to(tensors[0].device, th.float64) for tensor in tensors]
        values = iter(th.stack(tensors).tolist())
        vgs = [0.0 if product is None else next(values) for product in products]
        return vgs, math.sqrt(sum(norm**2 for norm in values))

    def _momentum_buffers(self, updates: list[tuple[th.Tensor, th.Tensor]], momentum: float, nu: float) -> list[th.Tensor]:
        """
        The new momentum buffers of a group's parameters (OpenAI baselines: ``buf ← m·buf + ν·Δ``, ``ν·Δ`` at the first
        step), as new tensors; the stored buffers are left as they are. Fused (``_foreach``) operations in the steady state.
        """
        if not updates:  # no parameter of the group has a gradient (torch's _foreach ops refuse empty lists)
            return []
        olds = [self.state[param].get("momentum_buffer") for param, _ in updates]
        deltas = [delta for _, delta in updates]
        present = [old for old in olds if old is not None]
        if len(present) == len(olds):  # every step but the first: m·buf + ν·Δ, fused over the group
            buffers = list(th._foreach_mul(present, momentum))
            th._foreach_add_(buffers, deltas, alpha=nu)
            return buffers
        # A parameter's first step (ν·Δ), possibly beside parameters that already have a buffer
        return [
            delta * nu if old is None else th.add(old * momentum, delta, alpha=nu)
            for old, delta in zip(olds, deltas, strict=True)
        ]

    #: The statistics of a parameter, removed together when they are damaged (the counter restarts their average)
    STATISTICS = (
        "A",
        "G",
        "A_inv",
        "G_inv",
        "A_eigenvalues",
        "A_eigenvectors",
        "G_eigenvalues",
        "G_eigenvectors",
        "fisher_diag",
        "stats_updates",
    )

    def _reset_statistics(self, param: th.Tensor, what: str) -> None:
        """Drop a parameter's damaged curvature statistics, count it and say so; the next curvature update restarts them."""
        state = self.state[param]
        for key in self.STATISTICS:
            state.pop(key, None)
        self.reset_statistics += 1
        warnings.warn(
            f"KFAC: {what} hold NaN/inf; they are reset ({self.reset_statistics} resets so far) and rebuilt by the next "
            "curvature updates. Until then the parameter steps by ∇/λ inside the trust region.",
            RuntimeWarning,
        )

    def _reset_damaged_statistics(self) -> None:
        """After a non-finite step: reset every statistic holding NaN/inf, so that the next steps are not skipped too."""
        for group in self.param_groups:
            for param in group["params"]:
                state = self.state[param]
                tensors = [state[key] for key in self.STATISTICS if isinstance(state.get(key), th.Tensor)]
                if tensors and not all_finite(tensors):
                    layer = self._layer_of_weight.get(id(param))
                    what = f"the Kronecker factors of layer '{layer.name}'" if layer else "the diagonal Fisher of a parameter"
                    self._reset_statistics(param, what)

    def _skip_non_finite_momentum(self) -> None:
        """Skip a step whose update is not finite although Δ is: drop the damaged momentum buffers, count the skip."""
        self.skipped_steps += 1
        damaged = [
            param
            for group in self.param_groups
            for param in group["params"]
            if "momentum_buffer" in self.state[param] and not bool(self.state[param]["momentum_buffer"].isfinite().all())
        ]
        for param in damaged:
            del self.state[param]["momentum_buffer"]
        warnings.warn(
            f"KFAC: non-finite update (the momentum buffers of {len(damaged)} parameters hold NaN/inf, or the step "
            f"overflowed); this update is skipped and the weights are unchanged ({self.skipped_steps} skipped so far). "
            "The damaged momentum buffers are reset, so the next step starts their momentum afresh.",
            RuntimeWarning,
        )

    def _trust_region_scales(self, vgs: list[float]) -> list[float]:
        """ν = min(1, √(kfac_clip / Σ lr²·Δᵀ∇)), jointly or per group (ACKTR paper sec. 3.2)."""

        def scale(kfac_clip: float, weighted_vg: float) -> float:
            # Δᵀ∇ <= 0 means a zero gradient (F̂ is positive definite) or lr = 0: nothing to scale
            return 1.0 if weighted_vg <= 0 else min(1.0, math.sqrt(kfac_clip / weighted_vg))

        weighted = [group["lr"] ** 2 * vg for group, vg in zip(self.param_groups, vgs, strict=True)]
        if self.trust_region == "joint":
            return [scale(self.param_groups[0]["kfac_clip"], sum(weighted))] * len(vgs)
        return [scale(group["kfac_clip"], w) for group, w in zip(self.param_groups, weighted, strict=True)]

    def state_dict(self) -> dict[str, Any]:
        """
        The optimizer state: factors, inverses, diagonal Fisher, momentum buffers, and the counters.

        :return: A dict with torch's ``"state"`` and ``"param_groups"`` plus ``"kfac"`` (the counters)
        """
        state_dict = super().state_dict()
        state_dict["kfac"] = {
            "steps": self.steps,
            "curvature_updates": self.curvature_updates,
            "skipped_steps": self.skipped_steps,
            "skipped_curvature_updates": self.skipped_curvature_updates,
            "reset_statistics": self.reset_statistics,
        }
        return state_dict

    def _expected_shapes(self, param: th.Tensor) -> dict[str, tuple[int, ...]]:
        """The shape of each statistic this optimizer keeps for ``param``."""
        shapes: dict[str, tuple[int, ...]] = {"momentum_buffer": tuple(param.shape), "fisher_diag": tuple(param.shape)}
        layer = self._layer_of_weight.get(id(param))
        if layer is not None:
            a_dim, g_dim = layer.a_dim, layer.g_dim
            shapes.update(A=(a_dim, a_dim), A_inv=(a_dim, a_dim), A_eigenvectors=(a_dim, a_dim), A_eigenvalues=(a_dim,))
            shapes.update(G=(g_dim, g_dim), G_inv=(g_dim, g_dim), G_eigenvectors=(g_dim, g_dim), G_eigenvalues=(g_dim,))
        return shapes

    def _check_loadable(self, state_dict: dict[str, Any]) -> None:
        """Check a saved state against this optimizer before anything is loaded (a failure leaves it unchanged)."""
        saved_groups = state_dict["param_groups"]
        if [len(group["params"]) for group in saved_groups] != [len(group["params"]) for group in self.param_groups]:
            raise ValueError(
                "This KFAC state was saved for another model: its parameter groups hold "
                f"{[len(group['params']) for group in saved_groups]} parameters, this optimizer's "
                f"{[len(group['params']) for group in self.param_groups]}."
            )
        saved_ids = [param_id for group in saved_groups for param_id in group["params"]]
        param_of = dict(zip(saved_ids, [param for group in self.param_groups for param in group["params"]], strict=True))
        for param_id, param_state in state_dict["state"].items():
            param = param_of[param_id]
            expected = self._expected_shapes(param)
            for key, value in param_state.items():
                if not isinstance(value, th.Tensor):
                    continue
                if key in self.STATISTICS and key not in expected:
                    raise ValueError(
                        f"This KFAC state holds Kronecker factors ('{key}') for a parameter of shape {tuple(param.shape)} "
                        "that this optimizer preconditions with the diagonal Fisher: it was saved for another model, or "
                        "with another max_factor_dim."
                    )
                if key in expected and tuple(value.shape) != expected[key]:
                    raise ValueError(
                        f"This KFAC state was saved for another model: its '{key}' of a parameter of shape "
                        f"{tuple(param.shape)} has shape {tuple(value.shape)}, expected {expected[key]}."
                    )
                if key in expected and not value.is_floating_point():
                    raise ValueError(
                        f"This KFAC state's '{key}' holds {value.dtype} values: K-FAC statistics are floating point."
                    )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """
        Load a state saved by :meth:`state_dict`, keeping every tensor's dtype (torch would cast them). The state is
        checked first (groups, each statistic's shape and dtype), so a state of another model or dtype raises a
        ``ValueError`` and leaves this optimizer unchanged.

        :param state_dict: The saved state
        """
        state_dict = dict(state_dict)
        if "kfac" not in state_dict:
            raise ValueError("This is not a KFAC state_dict (no 'kfac' entry): it was saved by another optimizer.")
        counters = state_dict.pop("kfac")
        self._check_loadable(state_dict)
        dtypes = {
            (param_id, key): value.dtype
            for param_id, param_state in state_dict["state"].items()
            for key, value in param_state.items()
            if isinstance(value, th.Tensor)
        }
        super().load_state_dict(state_dict)
        saved_ids = [param_id for group in state_dict["param_groups"] for param_id in group["params"]]
        params = [param for group in self.param_groups for param in group["params"]]
        param_of = dict(zip(saved_ids, params, strict=True))
        for (param_id, key), dtype in dtypes.items():
            param_state = self.state[param_of[param_id]]
            param_state[key] = param_state[key].to(dtype)
        self.steps = int(counters["steps"])
        self.curvature_updates = int(counters["curvature_updates"])
        self.skipped_steps = int(counters["skipped_steps"])
        self.skipped_curvature_updates = int(counters["skipped_curvature_updates"])
        # States saved before the counter existed have none
        self.reset_statistics = int(counters.get("reset_statistics", 0))
