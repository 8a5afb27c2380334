"""
Where a trained Gaussian policy asks for actions beyond the action bounds: the last evaluation of a sample-efficiency
run, replayed from its checkpoint with the distribution's mean recorded at every step.

The environment clips a Gaussian policy's actions to the bounds. Where the mean sits many standard deviations beyond
a bound, every sampled action is clipped to that bound, the return no longer depends on the sample, and the policy
gradient there is zero in expectation: nothing pulls the mean back. The run's checkpoint (model and VecNormalize
statistics) is rebuilt as the run built it (rl-zoo's ``ExperimentManager`` on the same entry and ``--params``) and
evaluated as the run evaluates: the same 10 seeded start states, deterministic actions. Per episode: its return and
length, the largest excess of the mean over the bounds (``|mean - centre| / half-width``, largest over the action's
components: above 1 is beyond a bound) in its first ``--first-steps`` steps and over the whole episode, and the
share of its steps with any component beyond a bound. The returns must equal the run's last evaluation (checked: a
run whose envs do not repeat from their seeds, such as a BipedalWalker run made before the protocol gave the walker a
new Box2D world at each reset, ``sample_efficiency.FreshBox2DWorld``, is refused).

    python benchmarks/action_saturation.py DIR/InvertedDoublePendulum-v5__acktr__seed0.json \\
        DIR/InvertedDoublePendulum-v5__a2c_at_acktr__seed0.json --out saturation.json
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import sample_efficiency
import torch as th
from gymnasium import spaces
from protocol import N_EVAL_EPISODES
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.distributions import DiagGaussianDistribution, StateDependentNoiseDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecEnv, sync_envs_normalization
from tables import table_header


def rebuild(results: dict[str, Any], results_path: Path, folder: Path) -> tuple[BaseAlgorithm, VecEnv]:
    """
    A run's model at its checkpoint and its evaluation envs, built as ``sample_efficiency.py`` builds them.

    :param results: The run's results (its JSON)
    :param results_path: Where they are (the checkpoint is in ``checkpoints/`` beside it)
    :param folder: Where rl-zoo may write the logs of the rebuild (not the run's own folder)
    :return: The model, with its training env, and the evaluation envs with the training env's statistics
    """
    argv = ["--env", results["env_id"], "--algo", results["algo"], "--seed", str(results["seed"])]
    argv += ["--out-dir", str(results_path.parent), "--eval-freq", str(results["eval_freq"])]
    argv += ["--eval-seed", str(results["eval_seed"]), "--budget", str(results["budget"]), "--no-progress"]
    if results["variant"] is not None:
        params = results["params"]
        argv += ["--variant", results["variant"], "--params", *(f"{key}:{value}" for key, value in params.items())]
    args = sample_efficiency.parse_args(argv)
    sample_efficiency.register_for(args)
    run = sample_efficiency.Run(args)
    if not run.model_path.is_file():
        sys.exit(f"error: no checkpoint {run.model_path} for {results_path}: the run's checkpoints/ folder must be beside it")
    run.checkpoint_dir = folder  # rl-zoo's logs of this rebuild go here; the model is read from run.model_path
    manager = run.experiment(resume=True)
    setup = manager.setup_experiment()
    assert setup is not None
    model = setup[0]
    eval_env = manager.create_envs(N_EVAL_EPISODES, eval_env=True, no_log=True)
    train_env = model.get_env()
    assert train_env is not None
    sync_envs_normalization(train_env, eval_env)
    eval_env.seed(results["eval_seed"])
    return model, eval_env


def bound_excess(mean: np.ndarray, space: spaces.Box) -> np.ndarray:
    """
    How far each row of means lies from the centre of the bounds, in half-widths (above 1: beyond a bound).

    :param mean: The distribution's means, one row per env
    :param space: The action space
    :return: The largest excess over each row's components
    """
    centre = (space.high + space.low) / 2
    half_width = (space.high - space.low) / 2
    return np.max(np.abs(mean - centre) / half_width, axis=1)


def replay(model: BaseAlgorithm, eval_env: VecEnv, first_steps: int) -> list[dict[str, Any]]:
    """
    One episode per evaluation env, as SB3's ``evaluate_policy`` runs them, with the mean's excess at every step.

    :param model: The trained model (a Gaussian policy on a bounded action space, see the check below)
    :param eval_env: The evaluation envs, seeded
    :param first_steps: The early steps whose largest excess is reported apart
    :return: Per episode: return, length, largest excess in the first steps and overall, share of steps beyond
    """
    space, policy = model.action_space, model.policy
    if not isinstance(policy, ActorCriticPolicy) or isinstance(policy, RecurrentActorCriticPolicy):
        sys.exit(f"error: {policy.__class__.__name__}: only feed-forward actor-critic policies are replayed")
    # The deterministic action is the Gaussian's mean: a diagonal Gaussian's, or gSDE's without a squashing bijector
    gaussian = isinstance(policy.action_dist, DiagGaussianDistribution) or (
        isinstance(policy.action_dist, StateDependentNoiseDistribution) and policy.action_dist.bijector is None
    )
    if not isinstance(space, spaces.Box) or not gaussian:
        sys.exit(
            f"error: {policy.action_dist.__class__.__name__} on {space}: only Gaussian policies whose deterministic "
            "action is the mean (diagonal, or gSDE without squash_output)"
        )
    n_envs = eval_env.num_envs
    excess: list[list[float]] = [[] for _ in range(n_envs)]
    returns = np.zeros(n_envs)
    episodes: list[dict[str, Any] | None] = [None] * n_envs
    observations = eval_env.reset()
    while any(episode is None for episode in episodes):
        assert isinstance(observations, np.ndarray)
        with th.no_grad():
            distribution = policy.get_distribution(policy.obs_to_tensor(observations)[0])
        step_excess = bound_excess(distribution.distribution.mean.cpu().numpy(), space)  # type: ignore[union-attr]
        actions, _ = model.predict(observations, deterministic=True)
        observations, rewards, dones, infos = eval_env.step(actions)
        for i in range(n_envs):
            if episodes[i] is not None:
                continue
            excess[i].append(float(step_excess[i]))
            returns[i] += rewards[i]
            if dones[i]:
                # The Monitor's return where there is one, as evaluate_policy counts it
                episode_return = infos[i]["episode"]["r"] if "episode" in infos[i] else returns[i]
                steps = np.array(excess[i])
                episodes[i] = {
                    "return": float(episode_return),
                    "length": len(steps),
                    "largest_excess_first_steps": float(steps[:first_steps].max()),
                    "largest_excess": float(steps.max()),
                    "share_beyond": float(np.mean(steps > 1)),
                }
    return [episode for episode in episodes if episode is not None]


def markdown(rows: list[dict[str, Any]], first_steps: int) -> str:
    """One line per episode of every run."""
    lines = table_header(
        [
            "run",
            "episode",
            "return",
            "length",
            f"largest excess, first {first_steps} steps",
            "largest excess",
            "steps beyond a bound",
        ]
    )
    for row in rows:
        for i, episode in enumerate(row["episodes"]):
            lines.append(
                f"| {row['run']} | {i} | {episode['return']:.1f} | {episode['length']} | "
                f"{episode['largest_excess_first_steps']:.2f} | {episode['largest_excess']:.2f} | "
                f"{episode['share_beyond']:.0%} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path, help="Results JSON of sample_efficiency.py runs")
    parser.add_argument("--first-steps", type=int, default=10, help="Early steps reported apart (default 10)")
    parser.add_argument("--out", type=Path, help="Write the episodes as JSON here, and the markdown beside it (.md)")
    args = parser.parse_args(argv)
    if args.first_steps <= 0:
        parser.error("--first-steps must be positive")
    th.set_num_threads(1)
    rows = []
    for results_path in args.results:
        results = json.loads(results_path.read_text())
        with tempfile.TemporaryDirectory() as folder:
            model, eval_env = rebuild(results, results_path, Path(folder))
            episodes = replay(model, eval_env, args.first_steps)
            eval_env.close()
        last = results["returns"][-1]
        replayed = [episode["return"] for episode in episodes]
        # evaluate_policy lists the episodes as they end, the replay by start state
        if not np.allclose(sorted(replayed), sorted(last), rtol=1e-5, atol=1e-3):
            sys.exit(f"error: {results_path}: the replay's returns {replayed} are not the run's last evaluation {last}")
        rows.append({"run": results_path.stem, "timesteps": results["timesteps"][-1], "episodes": episodes})
    text = markdown(rows, args.first_steps)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"first_steps": args.first_steps, "runs": rows}, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(text)
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
