"""
One sample-efficiency run of the benchmark protocol: ACKTR or A2C on one env and seed, evaluated as it learns.

The env and the model are built as ``rl_zoo3.train`` builds them (rl-zoo's ``ExperimentManager``): ACKTR with the
package's ``hyperparams/acktr.yml``, A2C with rl-zoo's own ``a2c.yml``. rl-zoo 2.9.2 has A2C MuJoCo entries only for
``-v4`` ids, so a ``-v5`` env uses its ``-v4`` entry, and a MuJoCo env with no entry at all (Reacher,
InvertedDoublePendulum) uses ``mujoco-defaults`` (normalize: true); the results file says which. ``--algo
a2c_at_acktr`` is A2C at ACKTR's settings: ACKTR's entry with A2C's optimizer at a tuned learning rate
(``benchmarks/a2c_at_acktr.py``).

Every ``--eval-freq`` environment steps (at the first update boundary at or after each multiple, so that the policy
evaluated has been updated on every step counted; plus step 0 and the end), the deterministic policy plays
10 episodes on a separate evaluation env: 10 envs, env ``i`` reset with seed ``EVAL_SEED + i``, so every algorithm,
seed and evaluation starts from the same 10 states. After each evaluation the run saves its model, VecNormalize
statistics and the evaluations so far under ``--out-dir``; rerunning the same command continues from there
(a continued run uses the seed ``seed + 1000 * resumes`` for its fresh envs, so it does not replay the first
segment's random streams: a resumed run is not bit-identical to an uninterrupted one).

    python benchmarks/sample_efficiency.py --env CartPole-v1 --algo acktr --seed 0
    python benchmarks/sample_efficiency.py --env HalfCheetah-v5 --algo a2c --seed 0 --budget 1000000
    python benchmarks/sample_efficiency.py --quick --algo acktr --out-dir /tmp/se    # 2k CartPole steps, seconds
    python benchmarks/sample_efficiency.py --env MountainCarContinuous-v0 --algo acktr --seed 3 --stop-at 20000 \
        --out-dir /tmp/mid                         # stopped, unfinished, after the evaluation at 20k (a checkpoint)
    python benchmarks/sample_efficiency.py --env MinAtar/Breakout-v1 --algo acktr --seed 0 \
        --params kfac_weight_sharing:"'reduce'" --variant reduce                     # reported as "acktr-reduce"
    torchrun --standalone --nproc_per_node 2 benchmarks/sample_efficiency.py --env HalfCheetah-v5 --algo acktr \
        --seed 0                                                                     # reported as "acktr-2ranks"

Under ``torchrun`` (ACKTR only) every rank builds the zoo's env and model (its envs seeded apart, see
``ACKTR.set_random_seed``), the budget and ``--eval-freq`` count the steps of all ranks, and rank 0 alone evaluates
and writes; the run is a variant named after the number of ranks.
"""

import argparse
import datetime
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

# Small networks on 2 shared cores: one torch thread, as rl-zoo's --num-threads 1
th.set_num_threads(1)

import a2c_at_acktr  # noqa: E402
import gymnasium as gym  # noqa: E402
import rl_zoo3  # noqa: E402
import rl_zoo3.import_envs  # noqa: E402  (registers rl-zoo's envs and patches, as rl_zoo3.train does)
import yaml  # noqa: E402
from machine import git_commit, versions  # noqa: E402
from protocol import (  # noqa: E402
    DEFAULT_BUDGET,
    DEFAULT_BUDGETS,
    DEFAULT_EVAL_FREQ,
    DEFAULT_EVAL_FREQS,
    EVAL_SEED,
    N_EVAL_EPISODES,
    RESULTS_DIR,
    THRESHOLDS,
    run_label,
    run_name,
)
from rl_zoo3.exp_manager import ExperimentManager  # noqa: E402
from rl_zoo3.utils import StoreDict  # noqa: E402
from stable_baselines3.common.base_class import BaseAlgorithm  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402
from stable_baselines3.common.logger import configure  # noqa: E402
from stable_baselines3.common.utils import set_random_seed  # noqa: E402
from stable_baselines3.common.vec_env import VecEnv, sync_envs_normalization  # noqa: E402
from tqdm import tqdm  # noqa: E402

from sb3_acktr.minatar import ENV_ID_PREFIX, register_minatar_envs  # noqa: E402
from sb3_acktr.zoo import HYPERPARAMS, ZOO_CONFIGS, register  # noqa: E402

#: This process's rank and the number of ranks (torchrun sets them; one process otherwise)
RANK, WORLD_SIZE = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
RL_ZOO_HYPERPARAMS = Path(rl_zoo3.__file__).parent / "hyperparams"
#: Entries for envs rl-zoo has none for (MinAtar): ``benchmarks/hyperparams/{algo}.yml``
BENCHMARK_HYPERPARAMS = Path(__file__).resolve().parent / "hyperparams"


def zoo_entry(algo: str, env_id: str) -> tuple[Path, dict[str, Any] | None, str]:
    """
    The hyperparameters file rl-zoo reads for ``algo`` on ``env_id``, and the entry to substitute when the protocol
    says so: for rl-zoo's algorithms, the entry of another version of the same env when rl-zoo lags gymnasium
    (``LunarLanderNoVel-v2`` for ``-v3``; MuJoCo ``-v5`` ids: the ``-v4`` entry, or ``mujoco-defaults`` when there is
    none).

    For ``a2c_at_acktr``, the substitute is A2C's entry at ACKTR's settings (:mod:`a2c_at_acktr`).

    :param algo: ``"acktr"``, ``"acktr_lstm"``, ``"a2c_at_acktr"``, or an rl-zoo algorithm (``"a2c"``, ``"ppo"``,
        ``"ppo_lstm"``)
    :param env_id: Environment id
    :return: ``(yaml path, substitute entry or None, description of the entry used)``
    """
    if algo == a2c_at_acktr.NAME:
        rate = a2c_at_acktr.tuned_learning_rate(env_id)
        return (
            HYPERPARAMS,
            a2c_at_acktr.a2c_entry(env_id, rate),
            f"{HYPERPARAMS.name}: {env_id} less ACKTR's keys, A2C's optimizer at learning rate {rate:g} "
            f"({a2c_at_acktr.TUNED.name})",
        )
    ours = algo in ZOO_CONFIGS
    path = ZOO_CONFIGS[algo] if ours else RL_ZOO_HYPERPARAMS / f"{algo}.yml"
    own = BENCHMARK_HYPERPARAMS / f"{algo}.yml"
    if not ours and own.is_file() and env_id in yaml.safe_load(own.read_text()):
        path = own
    text = path.read_text()
    entries = yaml.safe_load(text)
    if env_id in entries:
        return path, None, f"{path.name}: {env_id}"
    name = env_id.rsplit("-v", 1)[0]
    other_versions = sorted((key for key in entries if key.rsplit("-v", 1)[0] == name), reverse=True)
    if not ours and other_versions and "mujoco" not in str(gym.spec(env_id).entry_point):
        return path, dict(entries[other_versions[0]]), f"{path.name}: {other_versions[0]} (rl-zoo has no {env_id} entry)"
    if not ours and "mujoco" in str(gym.spec(env_id).entry_point):
        v4 = env_id.rsplit("-v", 1)[0] + "-v4"
        if v4 in entries:
            return path, dict(entries[v4]), f"{path.name}: {v4} (rl-zoo has no {env_id} entry)"
        # The entry that carries the anchor (a2c.yml: HalfCheetah-v4, ppo.yml: Ant-v4)
        anchored = re.search(r"^([^\s#:]+):\s*&mujoco-defaults\b", text, re.MULTILINE)
        if anchored is None:
            raise ValueError(f"{path} has no entry for {env_id} or {v4}, nor a mujoco-defaults anchor to fall back to.")
        return path, dict(entries[anchored.group(1)]), f"{path.name}: mujoco-defaults (no entry for {env_id} or {v4})"
    fallback = "atari" if ExperimentManager.is_atari(env_id) else "default"
    return path, None, f"{path.name}: {fallback}"


class FreshBox2DWorld(gym.Wrapper):
    """
    A new Box2D world at every reset of a BipedalWalker (and its Hardcore version), so that a seeded reset replays the
    same physics. Gymnasium (1.4.0) builds the walker's world once and keeps it across resets, and what the world keeps
    from earlier episodes changes the next one's physics from its first step (openai/gym#2390); LunarLander builds a new
    world at each reset since Gymnasium PR #979, which Box2D's author also advises ("just create a new world"). The
    walker's bodies are destroyed first, with the world they belong to, as its own reset would.
    """

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        from Box2D import b2World  # only here: a BipedalWalker exists, so Box2D is installed

        walker = self.env.unwrapped
        walker._destroy()  # type: ignore[attr-defined]
        walker.world = b2World()  # type: ignore[attr-defined]
        return self.env.reset(**kwargs)


def protocol_wrapper(entry_wrapper: Callable[[gym.Env], gym.Env] | None) -> Callable[[gym.Env], gym.Env]:
    """
    The wrapper of the protocol's envs: the entry's own (``env_wrapper``, if any), then :class:`FreshBox2DWorld` on a
    BipedalWalker; any other env as the entry wraps it.

    :param entry_wrapper: The entry's wrapper (rl-zoo's ``env_wrapper``), or None
    :return: The wrapper to build each env with
    """

    def wrap(env: gym.Env) -> gym.Env:
        env = env if entry_wrapper is None else entry_wrapper(env)
        # Loaded once a BipedalWalker was made: the protocol does not need Box2D for the other envs
        walker_module = sys.modules.get("gymnasium.envs.box2d.bipedal_walker")
        if walker_module is not None and isinstance(env.unwrapped, walker_module.BipedalWalker):
            return FreshBox2DWorld(env)
        return env

    return wrap


class ProtocolExperimentManager(ExperimentManager):
    """rl-zoo's ``ExperimentManager``, whose envs (training and evaluation) are built with :func:`protocol_wrapper`."""

    def create_envs(self, n_envs: int, eval_env: bool = False, no_log: bool = False) -> VecEnv:
        entry_wrapper = self.env_wrapper
        self.env_wrapper = protocol_wrapper(entry_wrapper)
        try:
            return super().create_envs(n_envs, eval_env=eval_env, no_log=no_log)
        finally:
            self.env_wrapper = entry_wrapper


def episode_limits(venv: VecEnv) -> set[int | None]:
    """The time limits (``max_episode_steps``) of a VecEnv's envs; None for an env without one."""
    return {None if spec is None else spec.max_episode_steps for spec in venv.get_attr("spec")}


def registered_episode_limit(env_id: str) -> int | None:
    """
    The time limit of ``env_id`` as ``gym.make(env_id)`` builds it: its registration's, or, for an id whose entry
    point makes another registered env (rl-zoo's ``CartPoleNoVel-v1`` wraps ``CartPole-v1``'s 500 steps and registers
    none of its own), that env's.

    :param env_id: Environment id
    :return: ``max_episode_steps``, None for an env without a time limit
    """
    env = gym.make(env_id)
    try:
        return None if env.spec is None else env.spec.max_episode_steps
    finally:
        env.close()


def check_evaluation_episodes(eval_env: VecEnv, env_id: str) -> None:
    """
    Evaluations play the task's own episodes: an entry's ``env_kwargs`` may shorten the training episodes
    (``max_episode_steps``, e.g. InvertedDoublePendulum-v5's), which rl-zoo passes to the training envs only; should
    the evaluation envs get them too, the returns would no longer be comparable with the thresholds.

    :param eval_env: The evaluation envs
    :param env_id: Environment id
    :raises RuntimeError: If an evaluation env's time limit is not the one ``gym.make(env_id)`` gives
        (:func:`registered_episode_limit`)
    """
    registered = registered_episode_limit(env_id)
    limits = episode_limits(eval_env)
    if limits != {registered}:
        raise RuntimeError(
            f"the evaluation envs of {env_id} end episodes after {sorted(limits, key=str)} steps, not after the "
            f"{registered} gymnasium registered: rl-zoo passed the entry's env_kwargs (for the training envs) to them, "
            "and the thresholds are for the registered episodes. Build the evaluation envs without the entry's "
            "max_episode_steps."
        )


def display_path(path: Path) -> str:
    """A hyperparameters file as ``hyperparams/acktr.yml`` (this repository) or ``rl_zoo3/hyperparams/a2c.yml``."""
    try:
        return str(path.resolve().relative_to(Path(__file__).resolve().parent.parent))
    except ValueError:
        return str(path.resolve().relative_to(Path(rl_zoo3.__file__).resolve().parent.parent))


class Run:
    """
    One run: its files, its zoo experiment, its evaluations.

    :param args: The parsed command line
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.name = run_name(args.env, run_label(args.algo, args.variant), args.seed)
        self.results_path: Path = args.out_dir / f"{self.name}.json"
        self.checkpoint_dir: Path = args.out_dir / "checkpoints" / self.name
        self.model_path = self.checkpoint_dir / "model.zip"
        self.results: dict[str, Any] = self._load_or_start()
        #: Rank 0 evaluates and writes; the other ranks of a torchrun only train
        self.primary = RANK == 0
        self.model: BaseAlgorithm | None = None
        self.eval_env: VecEnv | None = None
        self.progress: tqdm | None = None
        self.elapsed = 0.0
        self.start = time.perf_counter()
        #: Set by the evaluation at or past ``--stop-at``: training stops there, the run left unfinished
        self.stopped = False

    def _load_or_start(self) -> dict[str, Any]:
        args = self.args
        if self.results_path.is_file():
            results = json.loads(self.results_path.read_text())
            if results["eval_freq"] != args.eval_freq or results["eval_seed"] != args.eval_seed:
                sys.exit(
                    f"error: {self.results_path} was run with --eval-freq {results['eval_freq']} and eval seed "
                    f"{results['eval_seed']}; use the same, or another --out-dir."
                )
            if args.budget != results["budget"]:
                print(f"budget {results['budget']} -> {args.budget}", file=sys.stderr)
                results["budget"] = args.budget
                results["done"] = bool(results["timesteps"]) and results["timesteps"][-1] >= args.budget
            return results
        path, substitute, source = zoo_entry(args.algo, args.env)
        return {
            "env_id": args.env,
            "algo": args.algo,
            "variant": args.variant,
            "params": {key: repr(value) for key, value in args.params.items()},
            "seed": args.seed,
            "ranks": WORLD_SIZE,
            "budget": args.budget,
            "eval_freq": args.eval_freq,
            "n_eval_episodes": N_EVAL_EPISODES,
            "eval_seed": args.eval_seed,
            "deterministic": True,
            "threshold": THRESHOLDS.get(args.env),
            "hyperparams_file": display_path(path),
            "hyperparams_source": source,
            "hyperparams_substitute": substitute,
            "hyperparams": None,
            "timesteps": [],
            "returns": [],
            "lengths": [],
            "wall_time_s": [],
            "resumes": 0,
            "done": False,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "versions": versions(),
            "git_commit": git_commit(),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        }

    def experiment(self, resume: bool) -> ExperimentManager:
        """rl-zoo's ExperimentManager for this run (continuing from the checkpoint if ``resume``), its envs wrapped as
        the protocol wraps them (:func:`protocol_wrapper`)."""
        args = self.args
        path, substitute, _ = zoo_entry(args.algo, args.env)
        config = str(path)
        if substitute is not None:
            # The substitute entry under this env's id, in a yaml of its own beside the checkpoint
            config = str(self.checkpoint_dir / f"{args.algo}_hyperparams{f'_rank{RANK}' if RANK else ''}.yml")
            Path(config).write_text(yaml.safe_dump({args.env: substitute}))
        seed = args.seed + 1000 * self.results["resumes"]
        set_random_seed(seed)
        return ProtocolExperimentManager(
            args,
            args.algo,
            args.env,
            str(self.checkpoint_dir / ("zoo" if self.primary else f"zoo_rank{RANK}")),
            n_timesteps=self.results["budget"],
            eval_freq=-1,
            save_freq=-1,
            trained_agent=str(self.model_path) if resume else "",
            hyperparams=dict(args.params),
            seed=seed,
            verbose=0,
            device="cpu",
            config=config,
        )

    def evaluate(self) -> None:
        """Evaluate the current policy on the seeded evaluation envs, then save model, statistics and results."""
        model, eval_env = self.model, self.eval_env
        assert model is not None and eval_env is not None
        train_env = model.get_env()
        assert train_env is not None
        sync_envs_normalization(train_env, eval_env)
        eval_env.seed(self.results["eval_seed"])  # env i is reset with eval_seed + i: the same 10 start states
        returns, lengths = evaluate_policy(
            model, eval_env, n_eval_episodes=N_EVAL_EPISODES, deterministic=True, return_episode_rewards=True
        )
        self.results["timesteps"].append(int(model.num_timesteps))
        assert isinstance(returns, list) and isinstance(lengths, list)
        self.results["returns"].append([float(r) for r in returns])
        self.results["lengths"].append([int(n) for n in lengths])
        self.results["wall_time_s"].append(self.elapsed + time.perf_counter() - self.start)
        self.save()
        if self.progress is not None:
            self.progress.set_postfix(eval=f"{np.mean(returns):.1f}", refresh=False)
        self.stopped = self.args.stop_at is not None and model.num_timesteps >= self.args.stop_at

    def close(self) -> None:
        """The progress bar, the evaluation envs and the training envs, once the run has learnt (or stopped)."""
        assert self.progress is not None and self.eval_env is not None and self.model is not None
        self.progress.close()
        self.eval_env.close()
        env = self.model.get_env()
        if env is not None:
            env.close()

    def save(self) -> None:
        """Model, VecNormalize statistics, then the results (written last, atomically)."""
        model = self.model
        assert model is not None
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        model.save(self.model_path)
        vec_normalize = model.get_vec_normalize_env()
        if vec_normalize is not None:
            # Where rl-zoo's continue-training (-i model.zip) looks for them
            statistics = self.checkpoint_dir / self.args.env / "vecnormalize.pkl"
            statistics.parent.mkdir(exist_ok=True)
            vec_normalize.save(str(statistics))
        self.write_results()

    def write_results(self) -> None:
        self.results_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.results_path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.results, indent=1) + "\n")
        os.replace(temporary, self.results_path)

    def next_evaluation(self) -> int:
        """The step count from which the next evaluation is due."""
        timesteps = self.results["timesteps"]
        if not timesteps:
            return 0
        return (timesteps[-1] // self.args.eval_freq + 1) * self.args.eval_freq

    def maybe_evaluate(self) -> None:
        model = self.model
        assert model is not None
        if not self.primary:
            return
        if self.progress is not None:
            self.progress.update(model.num_timesteps - self.progress.n)
        if model.num_timesteps >= self.next_evaluation():
            self.evaluate()

    def execute(self) -> None:
        """Build (or continue) the run, learn to the budget, evaluating as it goes."""
        if self.results["done"]:
            print(f"{self.results_path} is complete ({self.results['timesteps'][-1]} steps)", file=sys.stderr)
            return
        resume = self.model_path.is_file() and bool(self.results["timesteps"])
        if resume:
            self.results["resumes"] += 1
        elif self.results["timesteps"]:
            # Evaluations without the checkpoint they continue from (e.g. a results file from another machine)
            print(f"no checkpoint {self.model_path}: {self.name} starts over", file=sys.stderr)
            for key in ("timesteps", "returns", "lengths", "wall_time_s"):
                self.results[key] = []
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        manager = self.experiment(resume)
        setup = manager.setup_experiment()
        assert setup is not None
        self.model, saved_hyperparams = setup
        if self.results["hyperparams"] is None:
            self.results["hyperparams"] = {key: str(value) for key, value in saved_hyperparams.items()}
        self.eval_env = manager.create_envs(N_EVAL_EPISODES, eval_env=True, no_log=True)
        check_evaluation_episodes(self.eval_env, self.args.env)
        self.elapsed = self.results["wall_time_s"][-1] if self.results["wall_time_s"] else 0.0
        self.start = time.perf_counter()
        budget = self.results["budget"]
        self.progress = tqdm(
            total=budget,
            initial=self.model.num_timesteps,
            desc=self.name,
            unit="step",
            disable=self.args.no_progress or not self.primary,
            dynamic_ncols=True,
        )
        if resume:
            print(f"continuing {self.name} from {self.model.num_timesteps} steps", file=sys.stderr)
        self.maybe_evaluate()  # step 0 (or a checkpoint written before its results)
        callbacks = [*manager.callbacks, EvaluateAfterUpdates(self)]
        if self.args.train_log is not None:
            self.model.set_logger(configure(str(self.args.train_log), ["csv"]))
        self.model.learn(
            max(budget - self.model.num_timesteps, 0),
            callback=callbacks,
            reset_num_timesteps=not resume,
            # None turns SB3's logging off (rl-zoo does the same), although SB3 annotates an int
            log_interval=None if self.args.train_log is None else 1,  # type: ignore[arg-type]
        )
        if not self.primary:
            return
        if self.stopped:
            # Unfinished (the report leaves it out); the checkpoint holds the policy of the last evaluation
            self.close()
            print(f"{self.name}: stopped after the evaluation at {self.results['timesteps'][-1]} steps", file=sys.stderr)
            return
        if self.results["timesteps"][-1] != self.model.num_timesteps:
            self.evaluate()  # the end of the budget
        self.results["done"] = True
        self.write_results()
        self.close()
        final = self.results["returns"][-1]
        print(
            f"{self.name}: {self.model.num_timesteps} steps, final evaluation {np.mean(final):.2f} +/- {np.std(final):.2f}; "
            f"results in {self.results_path}",
            file=sys.stderr,
        )


class EvaluateAfterUpdates(BaseCallback):
    """
    Evaluate at the start of a rollout, i.e. after the update on the previous one: the policy then reflects every
    step counted in ``num_timesteps``. Training stops at the next step once an evaluation set ``run.stopped``
    (``--stop-at``): no update follows that evaluation.

    :param run: The run to evaluate
    """

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.run = run

    def _on_rollout_start(self) -> None:
        self.run.maybe_evaluate()

    def _on_step(self) -> bool:
        return not self.run.stopped


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1", help="Environment id (default: CartPole-v1)")
    parser.add_argument("--algo", required=True, choices=["acktr", "acktr_lstm", "a2c", a2c_at_acktr.NAME, "ppo", "ppo_lstm"])
    parser.add_argument("--seed", type=int, default=0, help="Training seed")
    parser.add_argument(
        "--budget", type=int, help="Environment steps (default: benchmarks/protocol.py, DEFAULT_BUDGETS, else DEFAULT_BUDGET)"
    )
    parser.add_argument(
        "--eval-freq", type=int, help="Evaluate every N steps (default: benchmarks/protocol.py, DEFAULT_EVAL_FREQS)"
    )
    parser.add_argument(
        "--params",
        nargs="+",
        action=StoreDict,
        default={},
        help="Override yaml entries, as rl-zoo's -params (key:value); name the variant with --variant",
    )
    parser.add_argument("--variant", help="Name of a --params variant: reported as its own row (e.g. acktr-reduce)")
    parser.add_argument("--eval-seed", type=int, default=EVAL_SEED, help="Seed of the evaluation envs")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="Results (json) and checkpoints go here")
    parser.add_argument("--quick", action="store_true", help="2,000 steps, an evaluation every 1,000: a smoke test")
    parser.add_argument("--no-progress", action="store_true", help="No progress bar")
    parser.add_argument(
        "--stop-at",
        type=int,
        help="Stop after the first evaluation at or past this step, leaving the run unfinished (the report leaves it "
        "out) with the checkpoint of that evaluation, e.g. to replay a policy from the middle of a run "
        "(action_saturation.py). The schedules still span --budget: the run is the same up to there",
    )
    parser.add_argument(
        "--train-log",
        type=Path,
        help="Also write SB3's logger output (the train/ keys) of every update to TRAIN_LOG/progress.csv, to see why a "
        "run learns as it does (nothing else changes: the run stays the same). SB3 dumps before each update: a row "
        "holds the previous update's train/ keys, and the last update's are not written",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.budget = args.budget or 2_000
        args.eval_freq = args.eval_freq or 1_000
    args.budget = args.budget or DEFAULT_BUDGETS.get(args.env, DEFAULT_BUDGET)
    args.eval_freq = args.eval_freq or DEFAULT_EVAL_FREQS.get(args.env, DEFAULT_EVAL_FREQ)
    if args.budget <= 0 or args.eval_freq <= 0:
        parser.error("--budget and --eval-freq must be positive")
    if args.stop_at is not None and not 0 <= args.stop_at < args.budget:
        parser.error(f"--stop-at must be in [0, --budget) = [0, {args.budget}), got {args.stop_at}")
    if args.algo == a2c_at_acktr.NAME:
        try:
            a2c_at_acktr.tuned_learning_rate(args.env)
        except KeyError as error:
            parser.error(error.args[0])
    if bool(args.params) != bool(args.variant):
        parser.error("--params and --variant go together: a run with other hyperparameters is reported as a variant")
    if WORLD_SIZE > 1:
        if args.algo not in ZOO_CONFIGS:
            parser.error(f"under torchrun only acktr and acktr_lstm train data-parallel, got --algo {args.algo}")
        args.variant = f"{args.variant}-{WORLD_SIZE}ranks" if args.variant else f"{WORLD_SIZE}ranks"
    return args


def register_for(args: argparse.Namespace) -> None:
    """
    What a run needs in rl-zoo and gymnasium: ACKTR, A2C at ACKTR's settings for its env, MinAtar's envs.

    :param args: The run's parsed command line
    """
    register()
    if args.algo == a2c_at_acktr.NAME:
        a2c_at_acktr.register(args.env)
    if args.env.startswith(ENV_ID_PREFIX):
        register_minatar_envs()


def main(argv: list[str] | None = None) -> None:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    """
    args = parse_args(argv)
    register_for(args)
    Run(args).execute()


if __name__ == "__main__":
    main()
