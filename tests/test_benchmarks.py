"""The benchmark scripts run (--quick, as subprocesses) and the report computes the protocol's figures correctly."""

import csv
import functools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from sb3_acktr.zoo import HYPERPARAMS

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from report import (  # noqa: E402
    Steps,
    commits_note,
    curve_average,
    cut_at,
    first_step,
    load_runs,
    median_ratio,
    median_steps,
    run_metrics,
    steps_ratio,
    sustained_step,
    table_cells,
)


def start_script(script: str, *args: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, str(BENCHMARKS / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=BENCHMARKS.parent,
    )


def finish_script(process: "subprocess.Popen[str]") -> str:
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, f"{process.args!r}\n{stdout[-3000:]}\n{stderr[-3000:]}"
    return stdout


def run_script(script: str, *args: str) -> str:
    return finish_script(start_script(script, *args))


def test_throughput_quick(tmp_path):
    out = tmp_path / "throughput.json"
    # The quick configuration with two timed runs of 3 updates each (--repeats/--updates override the configuration's)
    stdout = run_script("throughput.py", "--quick", "--repeats", "2", "--updates", "3", "--out", str(out))
    data = json.loads(out.read_text())
    (row,) = data["throughput"]
    assert row["env_id"] == "CartPole-v1" and row["batch"] == 160
    assert row["ratio"] > 0 and len(row["seconds"]["A2C"]) == len(row["seconds"]["ACKTR"]) == len(row["pair_ratios"]) == 2
    assert row["repeats"] == 2 and row["updates"] == 3 and row["steps_per_run"] == 3 * 160
    assert row["median_pair_ratio"] == pytest.approx(sum(row["pair_ratios"]) / 2)  # the median of two
    # The zoo row runs ACKTR with the CartPole entry's K-FAC keys
    entry = yaml.safe_load(HYPERPARAMS.read_text())["CartPole-v1"]
    assert row["acktr_kwargs"] == {key: value for key, value in entry.items() if key.startswith("kfac_")} != {}
    (breakdown,) = data["breakdown"]
    phases = breakdown["ACKTR"]["phases"]
    for phase in (
        "rollout collection",
        "Fisher backward",
        "factor computation",
        "inverses",
        "preconditioning",
        "trust region",
    ):
        assert any(name.startswith(phase) for name in phases), phase
    # Exclusive times: the phases add up to the update
    assert sum(phases.values()) == pytest.approx(breakdown["ACKTR"]["seconds_per_update"])
    assert out.with_suffix(".md").read_text() == data["markdown"]
    assert "ACKTR / A2C" in stdout


def test_sample_efficiency_quick_and_report(tmp_path):
    # Both algorithms at once (2 cores): most of each run is imports
    processes = [
        start_script(
            "sample_efficiency.py", "--quick", "--algo", algo, "--seed", "0", "--out-dir", str(tmp_path), "--no-progress",
            *(["--train-log", str(tmp_path / "train_log")] if algo == "acktr" else []),
        )
        for algo in ("acktr", "a2c")
    ]  # fmt: skip
    # --stop-at: the same ACKTR run, stopped after its first evaluation at or past 1,000 steps
    stopped_dir = tmp_path / "stopped"
    processes.append(
        start_script(
            "sample_efficiency.py", "--quick", "--algo", "acktr", "--seed", "0", "--out-dir", str(stopped_dir),
            "--no-progress", "--stop-at", "1000",
        )
    )  # fmt: skip
    for process in processes:
        finish_script(process)
    # --train-log: SB3's logger output of each update (2,000 steps of 8 envs x 20 steps: 13 updates). SB3 dumps before
    # train(): a row holds the previous update's train/ keys, the first row none, and the last update is not dumped
    with open(tmp_path / "train_log" / "progress.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 13 and not rows[0]["train/exact_kl"]
    assert all(float(row["train/exact_kl"]) >= 0 for row in rows[1:])
    for algo in ("acktr", "a2c"):
        results = json.loads((tmp_path / f"CartPole-v1__{algo}__seed0.json").read_text())
        assert results["done"] and results["timesteps"][0] == 0 and results["timesteps"][-1] >= 2000
        assert all(len(returns) == 10 for returns in results["returns"])
        assert (tmp_path / "checkpoints" / f"CartPole-v1__{algo}__seed0" / "model.zip").is_file()
    acktr = json.loads((tmp_path / "CartPole-v1__acktr__seed0.json").read_text())
    a2c = json.loads((tmp_path / "CartPole-v1__a2c__seed0.json").read_text())
    # Same initial weights (same seed) and the same seeded evaluation start states
    assert acktr["returns"][0] == a2c["returns"][0]
    # Stopped at the evaluation after 1,000 steps (8 envs x 20 steps: 1,120), unfinished, its policy checkpointed, and
    # the same run as the whole one up to there (the learning rate's schedule spans the same budget)
    stopped = json.loads((stopped_dir / "CartPole-v1__acktr__seed0.json").read_text())
    assert not stopped["done"] and stopped["timesteps"] == acktr["timesteps"][:2] == [0, 1120]
    assert stopped["returns"] == acktr["returns"][:2]
    assert (stopped_dir / "checkpoints" / "CartPole-v1__acktr__seed0" / "model.zip").is_file()

    # The checkout's commit, "+" when tracked files differ from it (a working tree being edited)
    assert re.fullmatch(r"[0-9a-f]{7,}\+?", acktr["git_commit"]) and a2c["git_commit"] == acktr["git_commit"]

    report_dir = tmp_path / "report"
    stdout = run_script("report.py", "--results", str(tmp_path), "--out-dir", str(report_dir))
    assert "CartPole-v1" in stdout
    assert (
        f"Commits the runs were made at: A2C `{a2c['git_commit']}` (1 run); ACKTR `{acktr['git_commit']}` (1 run)." in stdout
    )
    assert (report_dir / "sample_efficiency.md").is_file()
    assert (report_dir / "sample_efficiency_CartPole-v1.png").stat().st_size > 0


def test_report_metrics_on_a_hand_made_curve():
    steps = [0, 10, 20, 30, 40, 50]
    means = [0.0, 100.0, 50.0, 100.0, 120.0, 100.0]
    assert first_step(steps, means, 100) == Steps(10)
    # 50 at step 20 breaks the first crossing: sustained only from step 30
    assert sustained_step(steps, means, 100) == Steps(30)
    # Trapezoids: 500 + 750 + 750 + 1100 + 1100 = 4200 over 50 steps
    assert curve_average(steps, means) == pytest.approx(84.0)
    # Never reached: the budget, as a bound
    assert first_step(steps, means, 200) == Steps(50, censored=True)
    assert sustained_step(steps, means, 200) == Steps(50, censored=True)
    # Reached, then lost at the end: not sustained
    assert first_step(steps, [*means[:-1], 90.0], 100) == Steps(10)
    assert sustained_step(steps, [*means[:-1], 90.0], 100) == Steps(50, censored=True)

    run = {"env_id": "CartPole-v1", "timesteps": steps, "returns": [[m - 1, m + 1] for m in means], "done": True}
    metrics = run_metrics(run)
    assert metrics["first"] == Steps(50, censored=True)  # CartPole's threshold, 475
    assert metrics["final_mean"] == 100.0 and metrics["final_std"] == 1.0
    assert run_metrics({**run, "threshold": 100})["sustained"] == Steps(30)


def test_report_names_the_commits_of_the_runs():
    runs = [{"git_commit": "abc1234"}, {"git_commit": "abc1234"}, {}, {"git_commit": "0de5678+"}]
    assert commits_note(runs) == "`0de5678+` (1 run), `abc1234` (2 runs), not recorded (1 run)"


def test_report_leaves_out_unfinished_runs(tmp_path, capsys):
    run = {"env_id": "CartPole-v1", "algo": "acktr", "seed": 0, "budget": 100, "timesteps": [0, 100], "returns": [[1], [2]]}
    (tmp_path / "done.json").write_text(json.dumps({**run, "done": True}))
    (tmp_path / "going.json").write_text(json.dumps({**run, "seed": 1, "timesteps": [0, 50], "done": False}))
    runs = load_runs([tmp_path])
    assert [r["seed"] for r in runs["CartPole-v1"]["acktr"]] == [0]
    assert "left out going.json: unfinished at 50 of 100 steps" in capsys.readouterr().err


def test_report_compares_runs_over_their_first_steps(tmp_path, capsys):
    """``--up-to``: every run that got there, finished or not, cut after its first evaluation at or past the step count
    (as ``--stop-at``), with no A2C / ACKTR summary when A2C did not run; a run short of it is left out."""
    import report

    def write(algo: str, seed: int, timesteps: list[int], means: list[float], done: bool) -> None:
        run: dict[str, Any] = {"env_id": "CarRacing-v3", "algo": algo, "variant": None, "seed": seed, "budget": 1000}
        run |= {"done": done, "eval_freq": 50, "timesteps": timesteps, "returns": [[m - 10, m + 10] for m in means]}
        (tmp_path / f"CarRacing-v3__{algo}__seed{seed}.json").write_text(json.dumps(run))

    write("acktr", 0, [0, 50, 100, 150], [0.0, 400.0, 300.0, 950.0], done=False)
    write("acktr", 1, [0, 50, 100, 150, 1000], [0.0, 200.0, 500.0, 600.0, 920.0], done=True)
    write("ppo", 0, [0, 53, 102, 151], [100.0, 400.0, 600.0, 700.0], done=False)
    write("ppo", 1, [0, 53], [100.0, 400.0], done=False)
    report.main(["--results", str(tmp_path), "--out-dir", str(tmp_path / "out"), "--no-plots", "--up-to", "100"])
    out, err = capsys.readouterr()
    assert "left out CarRacing-v3__ppo__seed1.json: at 53 steps, short of 100" in err
    assert "Every run over its first 100 steps, finished or not" in out and "Median sustained ratio" not in out
    rows = {(cells[0], cells[1]): cells for line in out.splitlines() if len(cells := table_cells(line)) == 7}
    # Trapezoids over [0, 100]: (200 * 50 + 350 * 50) / 100 and (100 * 50 + 350 * 50) / 100; PPO's over [0, 102]:
    # (250 * 53 + 500 * 49) / 102; the last evaluation kept is the final one, ± its episodes' std
    assert rows[("ACKTR", "0")][4:] == ["275.0", "300.0 ± 10.0", "100"]
    assert rows[("ACKTR", "1")][4:] == ["225.0", "500.0 ± 10.0", "100"]
    assert rows[("PPO", "0")][4:] == [f"{(250 * 53 + 500 * 49) / 102:.1f}", "600.0 ± 10.0", "102"]
    assert rows[("**ACKTR median**", "2 seeds")][4] == "**250.0**"
    # CarRacing's threshold (900) is never reached by step 100: the bound is the last step kept
    assert rows[("ACKTR", "0")][2] == "≥ 100" and rows[("PPO", "0")][3] == "≥ 102"
    assert cut_at({"timesteps": [0, 50], "returns": [[0], [1]], "budget": 1000}, 60) is None
    with pytest.raises(SystemExit):
        report.main(["--results", str(tmp_path), "--up-to", "0"])


def test_report_medians_and_ratio_bounds():
    assert median_steps([Steps(10), Steps(50, censored=True), Steps(30)]) == Steps(30)
    assert median_steps([Steps(10), Steps(50, censored=True), Steps(50, censored=True)]) == Steps(50, censored=True)
    assert median_steps([Steps(40), Steps(20), Steps(10), Steps(30, censored=True)]) == Steps(30)
    assert median_steps([Steps(40), Steps(10), Steps(30, censored=True), Steps(30, censored=True)]) == Steps(35, censored=True)
    assert steps_ratio(Steps(30_000), Steps(10_000)) == "3.00"
    assert steps_ratio(Steps(100_000, censored=True), Steps(20_000)) == "≥ 5.00"
    assert steps_ratio(Steps(10_000), Steps(50_000, censored=True)) == "≤ 0.20"
    assert steps_ratio(Steps(100_000, censored=True), Steps(100_000, censored=True)) == "n/a"
    assert str(Steps(100_000, censored=True)) == "≥ 100,000"


def test_fisher_check_quick(tmp_path):
    """Two updates of RecurrentACKTR on CartPoleNoVel: every figure is there and positive, and the exact KL of the
    small early step matches the exact Fisher's quadratic model (two independent computations)."""
    out = tmp_path / "fisher.json"
    stdout = run_script("fisher_check.py", "--quick", "--out", str(out))
    (row,) = json.loads(out.read_text())["rows"]
    assert row["seed"] == 0 and row["updates"] == 2
    assert all(row[key] > 0 for key in row if key.startswith(("exact", "kfac", "lstm")))
    assert row["exact_kl"] == pytest.approx(row["exact_fisher_all"], rel=0.25)
    assert "| **median** |" in stdout and out.with_suffix(".md").is_file()


def test_recurrent_throughput_quick(tmp_path):
    out = tmp_path / "throughput.json"
    stdout = run_script("recurrent_throughput.py", "--quick", "--out", str(out))
    result = json.loads(out.read_text())
    assert set(result["medians"]) == {"RecurrentPPO", "RecurrentACKTR (kronecker)", "RecurrentACKTR (diagonal)"}
    assert all(len(runs) == 1 for runs in result["runs"].values())
    assert all(values["steps_per_s"] > 0 and values["train_ms"] > 0 for values in result["medians"].values())
    assert "| RecurrentACKTR (kronecker) |" in stdout and out.with_suffix(".md").is_file()


def test_kl_check_quick(tmp_path):
    # At a constant rate, as the CartPole check in docs/benchmark.md (the entry's lin_0.25 reaches 0 at the last update)
    stdout = run_script("kl_check.py", "--quick", "--hyperparams", "learning_rate:0.25", "--out-dir", str(tmp_path))
    data = json.loads((tmp_path / "CartPole-v1.json").read_text())
    assert [run["momentum"] for run in data["runs"]] == [0.9, 0.0]
    for run in data["runs"]:
        # 2,000 steps in rollouts of 8 envs x 20 steps: 13 updates, each read once
        assert len(run["exact_kl"]) == len(run["quadratic_kl"]) == len(run["quadratic_kl_actor"]) == 13
        # The joint trust region: the quadratic-model KL of every step is at most delta, the actor's part below it
        assert max(run["quadratic_kl"]) <= run["delta"] * (1 + 1e-9)
        assert all(0 < actor <= total for actor, total in zip(run["quadratic_kl_actor"], run["quadratic_kl"], strict=True))
        assert all(kl > 0 for kl in run["exact_kl"])
    # Without momentum the applied step is the fresh one: its model, computed from the optimizer's held curvature and
    # the parameters' change, is the trust region's figure computed from Δᵀ∇ (two independent computations)
    no_momentum = data["runs"][1]
    assert no_momentum["applied_step_model_kl_actor"] == pytest.approx(no_momentum["quadratic_kl_actor"], rel=1e-4)
    # With momentum it is another step: a blend of past ones
    with_momentum = data["runs"][0]
    assert with_momentum["applied_step_model_kl_actor"] != pytest.approx(with_momentum["quadratic_kl_actor"], rel=0.1)
    assert (tmp_path / "kl_check_CartPole-v1.png").stat().st_size > 10_000
    assert "kfac_momentum=0.0" in stdout


def test_median_ratio_counts_only_the_counted_tasks():
    def summary(env_id, a2c, acktr):
        return {"env_id": env_id, "a2c": {"sustained": a2c}, "acktr": {"sustained": acktr}}

    summaries = [
        summary("CartPole-v1", Steps(90_000), Steps(10_000)),  # sanity check: 9.0, not counted
        summary("Pendulum-v1", Steps(400_000), Steps(100_000)),  # 4.0
        summary("HalfCheetah-v5", Steps(1_000_000, censored=True), Steps(500_000)),  # >= 2.0, at its bound
        summary("Hopper-v5", Steps(300_000), Steps(1_000_000, censored=True)),  # <= 0.3
        {"env_id": "Reacher-v5", "acktr": {"sustained": Steps(10_000)}},  # no A2C run yet
    ]
    text = median_ratio(summaries)
    assert text.startswith("2.00 over 3 tasks (some ratios are bounds")
    assert "Pendulum-v1 4.00" in text and "HalfCheetah-v5 ≥ 2.00" in text and "Hopper-v5 ≤ 0.30" in text
    assert "CartPole" not in text and "Reacher" not in text
    assert median_ratio(summaries[:1]) == "no counted task yet"


@pytest.mark.parametrize("network", ["nature", "minatar"])
def test_cost_model_counts_what_torch_counts(network):
    """The cost model's forward pass and factors against torch's own FLOP counter (2 FLOPs per multiply-add) on the
    package's functions; its bias columns, which torch does not count as products, make it slightly larger."""
    import numpy as np
    import torch as th
    from cost_model import costs, layer_shapes
    from gymnasium import spaces
    from stable_baselines3.common.torch_layers import NatureCNN
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    from sb3_acktr.kfac.factors import input_second_moment
    from sb3_acktr.minatar import MinAtarCNN

    if network == "nature":
        extractor = NatureCNN(spaces.Box(0, 255, shape=(4, 84, 84), dtype=np.uint8), features_dim=512)
        batch, obs_shape = 8, (4, 84, 84)
    else:
        extractor = MinAtarCNN(spaces.Box(0.0, 1.0, shape=(4, 10, 10), dtype=np.float32))
        batch, obs_shape = 8, (4, 10, 10)
    heads = [nn.Linear(extractor.features_dim, 3), nn.Linear(extractor.features_dim, 1)]
    shapes = layer_shapes(extractor, n_actions=3)
    x = th.rand(batch, *obs_shape)
    with FlopCounterMode(display=False) as counter:
        features = extractor(x)
        for head in heads:
            head(features)
    # Two forward passes (the rollout's and the loss's) of FLOPs / 2 multiply-adds each
    assert costs(shapes, batch, "expand")["A2C forward (rollout + loss)"] == counter.get_total_flops()

    inputs: list[th.Tensor] = []
    modules = [m for m in extractor.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles = [m.register_forward_hook(lambda m, i, o: inputs.append(i[0])) for m in modules]
    features = extractor(x)
    for handle in handles:
        handle.remove()
    for form in ("expand", "reduce"):
        with FlopCounterMode(display=False) as counter:
            for module, layer_input in zip([*modules, *heads], [*inputs, features, features], strict=True):
                input_second_moment(module, layer_input.detach(), weight_sharing=form)
        counted = counter.get_total_flops() / 2
        modelled = costs(shapes, batch, form)["A factors"]
        assert counted <= modelled <= 1.05 * counted, (form, counted, modelled)


def test_cnn_microbenchmark_times_both_forms():
    """The NatureCNN pieces at a tiny batch: every layer timed, the convolutions in both forms, the projections."""
    from cnn_costs import A_FACTOR, A_REDUCE, cnn_microbenchmark, cnn_tables

    result = cnn_microbenchmark(batch=4, repeats=1)
    layers = result["layers"]
    assert [name for name, entry in layers.items() if entry["type"] == "Conv2d"] == [
        f"features_extractor.cnn.{index}" for index in (0, 2, 4)
    ]
    assert all((A_REDUCE in entry) == (entry["type"] == "Conv2d") and entry[A_FACTOR] > 0 for entry in layers.values())
    assert {"kfac_weight_sharing=reduce", "statistics every update, whole batch (ACKTR's default)"} <= set(
        result["projections"]
    )
    assert "kfac_weight_sharing=reduce" in cnn_tables(result)


def write_monitor(path: Path, episodes: list[tuple[float, float, int]]) -> None:
    """An SB3 Monitor file: a JSON header line, then r, l, t per episode."""
    lines = ['#{"t_start": 0.0, "env_id": "PongNoFrameskip-v4"}', "r,l,t"]
    lines += [f"{r},{length},{t}" for t, r, length in episodes]
    path.write_text("\n".join(lines) + "\n")


def test_training_episodes_counts_the_papers_way(tmp_path):
    """Episodes of two envs interleave by completion time, a resumed run continues in a second folder, and the count
    is the episode that completes the first 100-episode window at the threshold."""
    from training_episodes import summarize

    first, second = tmp_path / "PongNoFrameskip-v4_1", tmp_path / "PongNoFrameskip-v4_2"
    first.mkdir()
    second.mkdir()
    # 120 episodes of return -21 (env 0 at even times, env 1 at odd ones), then 150 of return 21 in the resumed run
    write_monitor(first / "0.monitor.csv", [(2.0 * i, -21.0, 10) for i in range(60)])
    write_monitor(first / "1.monitor.csv", [(2.0 * i + 1, -21.0, 10) for i in range(60)])
    write_monitor(second / "0.monitor.csv", [(float(i), 21.0, 20) for i in range(150)])
    summary = summarize([first, second], threshold=9.3)
    assert summary["episodes"] == 270 and summary["steps_in_episodes"] == 120 * 10 + 150 * 20
    # A window of the last 100 reaches 9.3 once k of them are 21: 21k - 21(100 - k) >= 930 -> k >= 73 (72.1 rounded up)
    assert summary["episodes_to_threshold"] == 120 + 73
    assert summary["steps_to_threshold"] == 120 * 10 + 73 * 20
    assert summary["best_rolling_mean"] == pytest.approx(21.0)
    # Two labelled runs (the second one segment only) and their curves: the command line, the summaries and the plot
    stdout = run_script(
        "training_episodes.py", "--plot", str(tmp_path / "curves.png"),
        "--run", "ACKTR", str(first), str(second), "--run", "A2C", str(first),
    )  # fmt: skip
    summaries = json.loads(stdout)
    assert summaries["ACKTR"] == summary and summaries["ACKTR"]["threshold"] == 9.3  # human level, from the name
    assert summaries["A2C"]["episodes"] == 120 and summaries["A2C"]["episodes_to_threshold"] is None
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_kl_in_runs_reads_the_updates_of_a_train_log(tmp_path):
    """Ten updates with exact KL 0.1δ, ..., 1.0δ... 2.0δ and a model half the exact KL: statistics in units of δ."""
    from kl_in_runs import kl_statistics

    delta = 0.01
    exact = [delta * k / 5 for k in range(1, 11)]  # 0.2δ, 0.4δ, ..., 2.0δ
    lines = ["time/iterations,train/exact_kl,train/quadratic_kl_actor", "1,,"]  # the first row: a rollout, no update
    lines += [f"{index + 2},{kl!r},{kl / 2!r}" for index, kl in enumerate(exact)]
    (tmp_path / "progress.csv").write_text("\n".join(lines) + "\n")
    stats = kl_statistics(tmp_path, delta)
    assert stats["updates"] == 10
    assert stats["median"] == pytest.approx(1.1) and stats["largest"] == pytest.approx(2.0)
    assert stats["p90"] == pytest.approx(1.82)  # numpy's linear interpolation between 1.8δ and 2.0δ
    # 1.2δ ... 2.0δ are above δ; none is above 2δ
    assert stats["above_delta"] == pytest.approx(0.5) and stats["above_two_delta"] == 0.0
    assert stats["exact_over_model"] == pytest.approx(2.0)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "progress.csv").write_text("time/iterations,train/exact_kl\n1,\n")
    with pytest.raises(ValueError, match=r"has no train/exact_kl: write it with sample_efficiency\.py --train-log"):
        kl_statistics(empty, delta)


def test_scale_quick(tmp_path):
    out = tmp_path / "scale.json"
    stdout = run_script("scale.py", "--quick", "--out", str(out))
    (result,) = json.loads(out.read_text())["results"]
    assert result["config"] == "CartPole-v1 8x20" and result["batch_per_rank"] == 160
    assert len(result["runs"]["1"]) == len(result["runs"]["2"]) == 1
    assert result["ratio_2_to_1"] == pytest.approx(result["median_steps_per_s"]["2"] / result["median_steps_per_s"]["1"])
    assert result["runs"]["2"][0]["ranks"] == 2 and result["all_reduce_alone_s"] > 0
    # Every timed phase was seen (ACKTR collects its rollouts through _collect_rollout)
    assert all(result["runs"][ranks][0]["per_update_s"].get(phase, 0) > 0 for ranks in "12" for phase in ("rollout", "update"))
    one_rank = [row for row in result["projection"] if row["ranks"] == 1]
    assert all(row["speedup"] == 1 and row["communication_s"] == 0 for row in one_rank)
    assert "**2 / 1**" in stdout and out.with_suffix(".md").is_file()


def test_scale_bytes_and_projection_from_the_shapes():
    from scale import INTERCONNECTS, communicated_bytes, projection
    from torch import nn

    from sb3_acktr import KFAC

    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2), nn.BatchNorm1d(2))
    with pytest.warns(UserWarning, match="diagonal Fisher fallback"):
        sizes = communicated_bytes(KFAC(model))
    # A: 4² and 5², G: 4² and 2², the BatchNorm's 2 + 2 on the diagonal; two float64 counts
    assert sizes["factors"] == 4 * (16 + 25 + 16 + 4 + 4) + 16
    assert sizes["gradients"] == 4 * (12 + 4 + 8 + 2 + 4)
    assert sizes["inverses_one_rank_per_refresh"] == 4 * (16 + 25 + 16 + 4)
    one_rank = {"seconds": 2.0, "updates": 4, "bytes": sizes}
    rows = projection(one_rank, batch=100)
    name, latency, bandwidth = INTERCONNECTS[0]
    (row,) = [row for row in rows if row["interconnect"] == name and row["ranks"] == 4]
    size = sizes["factors"] + sizes["gradients"] + sizes["stop_flag"]
    communication = 6 * latency + 1.5 * size / bandwidth  # ring all-reduce: 2(N-1)·α + 2(N-1)/N·bytes/B
    assert row["communication_s"] == pytest.approx(communication)
    assert row["steps_per_s"] == pytest.approx(4 * 100 / (0.5 + communication))


@pytest.fixture
def a2c_at_acktr_registered(monkeypatch):
    """rl-zoo's dicts as they were once the test is over (the script registers ``a2c_at_acktr`` in them)."""
    import a2c_at_acktr
    import rl_zoo3
    from rl_zoo3 import hyperparams_opt
    from stable_baselines3 import A2C

    monkeypatch.setitem(rl_zoo3.ALGOS, a2c_at_acktr.NAME, A2C)
    monkeypatch.setitem(hyperparams_opt.HYPERPARAMS_SAMPLER, a2c_at_acktr.NAME, None)
    monkeypatch.setitem(hyperparams_opt.HYPERPARAMS_CONVERTER, a2c_at_acktr.NAME, None)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    return a2c_at_acktr


def test_a2c_at_acktr_entry_is_acktrs_less_its_own_keys():
    from a2c_at_acktr import a2c_entry

    # Hopper-v5 in hyperparams/acktr.yml, written out by hand: kfac_stats_warm_up, kfac_clip, trust_region are ACKTR's
    shared = {
        "normalize": True,
        "n_envs": 1,
        "n_timesteps": 1e6,
        "policy": "MlpPolicy",
        "n_steps": 2500,
        "gamma": 0.99,
        "gae_lambda": 0.97,
        "ent_coef": 0.0,
        "vf_coef": 0.25,
        "max_grad_norm": 0.5,
        "policy_kwargs": "dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=nn.Tanh)",
    }
    assert a2c_entry("Hopper-v5", 3e-4) == {**shared, "learning_rate": 3e-4}
    # CartPole-v1 leaves n_steps and vf_coef to ACKTR's defaults (20, 0.25), which A2C's (5, 0.5) must not replace;
    # Hopper-v5's learning rate is constant, CartPole-v1's and MountainCarContinuous-v0's linear: A2C's keeps the shape
    assert a2c_entry("CartPole-v1", 1e-3) == {
        "normalize": True,
        "n_envs": 8,
        "n_timesteps": 1e5,
        "policy": "MlpPolicy",
        "n_steps": 20,
        "ent_coef": 0.0,
        "vf_coef": 0.5,
        "learning_rate": "lin_0.001",
    }
    assert a2c_entry("MountainCarContinuous-v0", 1e-3)["learning_rate"] == "lin_0.001"
    assert a2c_entry("MountainCarContinuous-v0", 1e-3)["vf_coef"] == 0.25
    assert "learning_rate" not in a2c_entry("MountainCarContinuous-v0", None)
    with pytest.raises(KeyError, match=r"acktr\.yml has no entry for NoSuchEnv-v0"):
        a2c_entry("NoSuchEnv-v0", 1e-3)


def test_a2c_at_acktr_run_trains_a2c_on_acktrs_batch(tmp_path, monkeypatch, a2c_at_acktr_registered, capsys):
    import sample_efficiency
    import torch as th
    from stable_baselines3 import A2C

    tuned = tmp_path / "tuned.yml"
    monkeypatch.setattr(a2c_at_acktr_registered, "TUNED", tuned)
    tuned.write_text("# nothing tuned yet\n")
    with pytest.raises(SystemExit):
        sample_efficiency.parse_args(["--algo", "a2c_at_acktr", "--env", "CartPole-v1"])
    assert "no tuned learning rate for CartPole-v1" in capsys.readouterr().err

    tuned.write_text("CartPole-v1:\n  learning_rate: 0.0021\n")
    sample_efficiency.main(["--quick", "--algo", "a2c_at_acktr", "--out-dir", str(tmp_path), "--no-progress"])
    name = "CartPole-v1__a2c_at_acktr__seed0"
    results = json.loads((tmp_path / f"{name}.json").read_text())
    assert results["done"] and results["timesteps"][-1] >= 2000
    assert "less ACKTR's keys" in results["hyperparams_source"]
    model = A2C.load(tmp_path / "checkpoints" / name / "model.zip")
    # ACKTR's CartPole batch (8 envs x ACKTR's default 20 steps), A2C's RMSprop at the tuned rate on the entry's
    # linear schedule
    assert (model.n_envs, model.n_steps, model.vf_coef, model.ent_coef) == (8, 20, 0.5, 0.0)
    assert (model.lr_schedule(1.0), model.lr_schedule(0.0)) == (0.0021, 0.0)
    assert isinstance(model.policy.optimizer, th.optim.RMSprop)
    run_script("report.py", "--results", str(tmp_path), "--out-dir", str(tmp_path / "report"))
    assert "| A2C at ACKTR's settings |" in (tmp_path / "report" / "sample_efficiency.md").read_text()


def test_a2c_at_acktr_tunes_the_learning_rate_alone(tmp_path, a2c_at_acktr_registered):
    import optuna
    from rl_zoo3.utils import SimpleLinearSchedule

    a2c_at_acktr = a2c_at_acktr_registered
    storage = tmp_path / "study.log"
    a2c_at_acktr.main(
        ["--env", "MountainCar-v0", "-n", "640", "-optimize", "--n-trials", "2", "--n-evaluations", "1",
         "--eval-episodes", "1", "--n-startup-trials", "2", "--no-optim-plots", "--storage", str(storage),
         "--study-name", "lr", "--seed", "100", "--num-threads", "1", "-f", str(tmp_path / "logs")]
    )  # fmt: skip
    study = optuna.load_study(
        study_name="lr", storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(storage)))
    )
    assert len(study.trials) == 2
    low, high = a2c_at_acktr.LEARNING_RATE_RANGE
    assert all(
        set(trial.params) == {"learning_rate"} and low <= trial.params["learning_rate"] <= high for trial in study.trials
    )
    # MountainCar's ACKTR entry is a linear schedule: so is the A2C rate drawn (and written back) for it
    sampled = a2c_at_acktr.sample_learning_rate(optuna.trial.FixedTrial({"learning_rate": 1e-3}), 3, 16, {}, linear=True)
    assert isinstance(sampled["learning_rate"], SimpleLinearSchedule) and sampled["learning_rate"](1.0) == 1e-3
    assert a2c_at_acktr.convert_learning_rate({"learning_rate": 1e-3}, linear=True) == {"learning_rate": "lin_0.001"}
    with pytest.raises(SystemExit):
        a2c_at_acktr.main(["--env", "MountainCar-v0", "--algo", "a2c"])


def test_zoo_entry_falls_back_to_each_files_own_mujoco_defaults(tmp_path, monkeypatch):
    """A MuJoCo env with no rl-zoo entry (nor a -v4 one) gets the entry carrying that file's `mujoco-defaults` anchor."""
    import sample_efficiency

    rl_zoo = sample_efficiency.RL_ZOO_HYPERPARAMS
    for algo, anchored in (("a2c", "HalfCheetah-v4"), ("ppo", "Ant-v4")):
        path, entry, source = sample_efficiency.zoo_entry(algo, "Reacher-v5")
        assert path == rl_zoo / f"{algo}.yml"
        assert entry == sample_efficiency.yaml.safe_load(path.read_text())[anchored]
        assert source == f"{algo}.yml: mujoco-defaults (no entry for Reacher-v5 or Reacher-v4)"
    # PPO's defaults there, not its tuned HalfCheetah entry
    assert sample_efficiency.zoo_entry("ppo", "Reacher-v5")[1] == {
        "normalize": True,
        "n_timesteps": 1e6,
        "policy": "MlpPolicy",
    }
    (tmp_path / "ppo.yml").write_text("# HalfCheetah-v4: &mujoco-defaults\nHalfCheetah-v4:\n  normalize: true\n")
    monkeypatch.setattr(sample_efficiency, "RL_ZOO_HYPERPARAMS", tmp_path)
    with pytest.raises(ValueError, match=r"no entry for Reacher-v5 or Reacher-v4, nor a mujoco-defaults anchor"):
        sample_efficiency.zoo_entry("ppo", "Reacher-v5")


def test_report_splices_the_figures_into_a_page_of_prose():
    from report import splice

    generated = "\n".join(
        [
            "## Sample efficiency",
            "",
            "| env | threshold | ratio |",
            "|---|---:|---:|",
            "| Hopper-v5 | 2000 | **2.00** |",
            "| CartPole-v1 (sanity check) | 475 | **1.50** |",
            "",
            "Median sustained ratio A2C / ACKTR over the counted tasks (sanity checks excluded): 2.00 over 1 task.",
            "",
            "### Hopper-v5 (threshold 2000)",
            "",
            "| algorithm | seed | curve average |",
            "|---|---:|---:|",
            "| ACKTR | 0 | 1800.0 |",
            "| ACKTR | 1 | 1900.0 |",
            "",
            "Hyperparameters: ACKTR: acktr.yml: Hopper-v5.",
            "",
            "### CartPole-v1 (threshold 475)",
            "",
            "| algorithm | seed | curve average |",
            "|---|---:|---:|",
            "| ACKTR | 0 | 420.0 |",
            "",
            "Hyperparameters: ACKTR: acktr.yml: CartPole-v1.",
            "",
            "### Pendulum-v1 (threshold -200)",
            "",
            "| algorithm | seed | curve average |",
            "|---|---:|---:|",
            "| ACKTR | 0 | -204.0 |",
            "",
            "Hyperparameters: ACKTR: acktr.yml: Pendulum-v1.",
        ]
    )
    page = "\n".join(
        [
            "## At a glance",
            "",
            "| env | ACKTR | PPO | pick |",  # another table, another width: left alone
            "| Hopper-v5 | 1400 | – | ACKTR |",
            "",
            "| env | threshold | ratio |",
            "|---|---:|---:|",
            "| Hopper-v5 | 2000 | **1.09** |",
            "",
            "Median sustained ratio A2C / ACKTR over the counted tasks (sanity checks excluded): 1.09 over 1 task.",
            "",
            "### Hopper-v5 (threshold 2000)",
            "",
            "| algorithm | seed | curve average |",
            "|---|---:|---:|",
            "| ACKTR | 0 | 1400.0 |",
            "",
            "Prose about Hopper stays.",
            "",
            "Hyperparameters: ACKTR: acktr.yml: Hopper-v5 (old).",
            "",
            "## Sanity checks",
            "",
            "| CartPole-v1 (sanity check) | 475 | **1.32** |",
            "",
            "**CartPole-v1** (threshold 475)",
            "",
            "| algorithm | seed | curve average |",
            "|---|---:|---:|",
            "| ACKTR | 0 | 413.0 |",
            "",
            "Prose about CartPole stays.",
        ]
    )
    spliced, missing = splice(generated, page)
    lines = spliced.split("\n")
    assert "| Hopper-v5 | 1400 | – | ACKTR |" in lines and "| Hopper-v5 | 2000 | **2.00** |" in lines
    assert "| Hopper-v5 | 2000 | **1.09** |" not in lines
    assert "| CartPole-v1 (sanity check) | 475 | **1.50** |" in lines
    assert "Median sustained ratio A2C / ACKTR over the counted tasks (sanity checks excluded): 2.00 over 1 task." in lines
    hopper = lines.index("### Hopper-v5 (threshold 2000)")
    assert lines[hopper + 4 : hopper + 10] == [
        "| ACKTR | 0 | 1800.0 |",
        "| ACKTR | 1 | 1900.0 |",
        "",
        "Prose about Hopper stays.",
        "",
        "Hyperparameters: ACKTR: acktr.yml: Hopper-v5.",
    ]
    cartpole = lines.index("**CartPole-v1** (threshold 475)")
    assert lines[cartpole + 4 : cartpole + 7] == ["| ACKTR | 0 | 420.0 |", "", "Prose about CartPole stays."]
    assert missing == ["section '### Pendulum-v1 (threshold -200)'"]


def test_report_splices_a_whole_report_into_a_block_of_the_page(tmp_path):
    """``--block``: the report replaces what is between the markers, a level deeper, its plots linked from the page."""
    import report

    results = tmp_path / "results"
    results.mkdir()
    for seed, returns in enumerate(([0.0, 12.0, 15.0], [0.0, 8.0, 14.0])):
        run = {"env_id": "MinAtar/Breakout-v1", "algo": "acktr", "variant": None, "seed": seed, "done": True}
        run |= {"budget": 100, "eval_freq": 50, "timesteps": [0, 50, 100], "returns": [[value] for value in returns]}
        (results / f"MinAtar-Breakout-v1__acktr__seed{seed}.json").write_text(json.dumps(run))
    page = tmp_path / "docs" / "benchmark.md"
    page.parent.mkdir()
    before, after = ["# Benchmarks", "", "Prose before."], ["<!-- minatar-end -->", "", "Prose after."]
    page.write_text("\n".join([*before, "<!-- minatar-start: generated -->", "", "| old | table |", "", *after]))
    out_dir = page.parent / "_static" / "minatar"
    report.main(["--results", str(results), "--out-dir", str(out_dir), "--splice", str(page), "--block", "minatar"])

    lines = page.read_text().split("\n")
    assert lines[:4] == [*before, "<!-- minatar-start: generated -->"] and lines[-3:] == after
    block = lines[4:-3]
    generated = (out_dir / "sample_efficiency.md").read_text().strip("\n").split("\n")
    assert block[-1] == "" and len(block) == len(generated)  # all but the title, and a blank line before the end marker
    assert "| old | table |" not in block and "#### MinAtar/Breakout-v1 (threshold 10)" in block
    assert "![MinAtar/Breakout-v1: ACKTR](_static/minatar/sample_efficiency_MinAtar-Breakout-v1.png)" in block
    assert (out_dir / "sample_efficiency_MinAtar-Breakout-v1.png").is_file()
    rows = {table_cells(line)[1]: table_cells(line) for line in block if line.startswith("| ")}
    # Seed 0 reaches 10 at 50 steps and stays; the curve averages by the trapezoid rule: (6 + 13.5) / 2 and (4 + 11) / 2
    assert rows["0"][2:5] == ["50", "50", "9.8"] and rows["1"][2:5] == ["100", "100", "7.5"]
    assert rows["2 seeds"][4] == "**8.6**"

    page.write_text("no markers here")
    with pytest.raises(ValueError, match=r"one line starting '<!-- minatar-start' .* it has 0 and 0"):
        report.main(["--results", str(results), "--out-dir", str(out_dir), "--splice", str(page), "--block", "minatar"])
    with pytest.raises(SystemExit):
        report.main(["--results", str(results), "--block", "minatar"])


def test_wall_clock_quick(tmp_path):
    """The three algorithms timed on the models the sample-efficiency runs train, with the minutes to hold CartPole."""
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    # One finished ACKTR run that holds 475 from 4,000 steps
    run = {"env_id": "CartPole-v1", "algo": "acktr", "variant": None, "seed": 0, "done": True, "budget": 8000}
    run |= {"timesteps": [0, 2000, 4000, 6000, 8000], "returns": [[9.0], [100.0], [480.0], [500.0], [490.0]]}
    (results_dir / "CartPole-v1__acktr__seed0.json").write_text(json.dumps(run))
    out = tmp_path / "wall_clock.json"
    run_script("wall_clock.py", "--quick", "--results", str(results_dir), "--out", str(out))
    (result,) = json.loads(out.read_text())["results"]
    assert list(result["median_steps_per_s"]) == ["acktr", "a2c", "ppo"]
    assert all(value > 0 for value in result["median_steps_per_s"].values())
    assert result["ratio_to_acktr"]["acktr"] == 1.0
    assert result["ratio_to_acktr"]["ppo"] == pytest.approx(
        result["median_steps_per_s"]["ppo"] / result["median_steps_per_s"]["acktr"]
    )
    minutes = 4000 / result["median_steps_per_s"]["acktr"] / 60
    assert result["holds"] == {"acktr": {"sustained": "4,000", "minutes": f"{minutes:.1f}"}}
    assert "| CartPole-v1 | 475 | PPO |" in out.with_suffix(".md").read_text()
    # Newer results: the hold times again, from the same timings
    (results_dir / "CartPole-v1__acktr__seed0.json").unlink()
    run_script("wall_clock.py", "--report", str(out), "--results", str(results_dir))
    (again,) = json.loads(out.read_text())["results"]
    assert again["holds"] == {} and again["median_steps_per_s"] == result["median_steps_per_s"]


def test_wall_clock_merge(tmp_path):
    """--merge times CartPole again in place, keeping another task's row and the machine line it was timed on."""
    out = tmp_path / "wall_clock.json"
    process = start_script("wall_clock.py", "--quick", "--merge", "--out", str(out))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2 and f"--merge replaces rows of an existing --out file; {out} is not one" in stderr
    run_script("wall_clock.py", "--quick", "--results", str(tmp_path), "--out", str(out))
    (cartpole,) = json.loads(out.read_text())["results"]
    acrobot = json.loads(json.dumps(cartpole)) | {"env_id": "Acrobot-v1"}
    acrobot["machine"]["date"] = "2026-01-01T00:00:00+00:00"
    out.write_text(json.dumps({"results": [acrobot, cartpole]}))
    run_script("wall_clock.py", "--quick", "--results", str(tmp_path), "--out", str(out), "--merge")
    first, second = json.loads(out.read_text())["results"]
    assert first == acrobot
    assert second["env_id"] == "CartPole-v1" and second["machine"]["date"] > cartpole["machine"]["date"]
    text = out.with_suffix(".md").read_text()
    assert text.count("| Acrobot-v1 |") == 3 and text.count("| CartPole-v1 |") == 3
    assert "\nAcrobot-v1: 2026-01-01T00:00:00+00:00; " in text
    assert f"\nCartPole-v1: {second['machine']['date']}; " in text


def test_action_saturation_replays_the_last_evaluation(tmp_path):
    """The checkpoint's replay gives the run's last evaluation, with the mean's excess over the bounds per step."""
    processes = [
        start_script(
            "sample_efficiency.py", "--quick", "--env", env_id, "--algo", "acktr", "--seed", "0", "--out-dir", str(tmp_path),
            "--no-progress", *(["--variant", "damped", "--params", "kfac_damping:0.1"] if env_id == "Pendulum-v1" else []),
        )
        for env_id in ("Pendulum-v1", "CartPole-v1")
    ]  # fmt: skip
    # A gSDE policy (the entry's use_sde), replayed from the middle of its run: stopped after the evaluation at 1,200
    processes.append(
        start_script(
            "sample_efficiency.py", "--quick", "--env", "MountainCarContinuous-v0", "--algo", "acktr", "--seed", "0",
            "--out-dir", str(tmp_path), "--no-progress", "--stop-at", "1000",
        )
    )  # fmt: skip
    for process in processes:
        finish_script(process)
    gsde_path = tmp_path / "MountainCarContinuous-v0__acktr__seed0.json"
    gsde_out = tmp_path / "saturation_gsde.json"
    run_script("action_saturation.py", str(gsde_path), "--out", str(gsde_out))
    (gsde_row,) = json.loads(gsde_out.read_text())["runs"]
    stopped = json.loads(gsde_path.read_text())
    assert not stopped["done"] and stopped["timesteps"][-1] == 1200
    replayed = sorted(episode["return"] for episode in gsde_row["episodes"])
    assert replayed == pytest.approx(sorted(stopped["returns"][-1]), abs=1e-3)
    results_path = tmp_path / "Pendulum-v1__acktr-damped__seed0.json"
    out = tmp_path / "saturation.json"
    run_script("action_saturation.py", str(results_path), "--first-steps", "5", "--out", str(out))
    (row,) = json.loads(out.read_text())["runs"]
    episodes = row["episodes"]
    last = json.loads(results_path.read_text())["returns"][-1]
    assert sorted(episode["return"] for episode in episodes) == pytest.approx(sorted(last), abs=1e-3)
    assert all(episode["length"] == 200 for episode in episodes)  # Pendulum's episodes are truncated at 200 steps
    for episode in episodes:
        assert 0 <= episode["largest_excess_first_steps"] <= episode["largest_excess"]
        assert episode["share_beyond"] == 0 or episode["largest_excess"] > 1
    assert "| Pendulum-v1__acktr-damped__seed0 | 9 |" in out.with_suffix(".md").read_text()
    # A categorical policy has no mean to compare with bounds
    process = start_script("action_saturation.py", str(tmp_path / "CartPole-v1__acktr__seed0.json"))
    _, stderr = process.communicate(timeout=120)
    assert (
        process.returncode == 1
        and "CategoricalDistribution on Discrete(2): only Gaussian policies whose deterministic action" in stderr
    )


def test_action_saturation_measures_the_excess_in_half_widths():
    from action_saturation import bound_excess
    from gymnasium import spaces

    space = spaces.Box(low=np.array([-2.0, 0.0]), high=np.array([2.0, 1.0]))
    # |3 - 0| / 2 = 1.5 beyond the first bound; |1.5 - 0.5| / 0.5 = 2 beyond the second; the centre is 0
    means = np.array([[3.0, 0.5], [0.0, 1.5], [0.0, 0.5]])
    np.testing.assert_allclose(bound_excess(means, space), [1.5, 2.0, 0.0])


def test_training_time_limit_stays_out_of_the_evaluations(tmp_path):
    """InvertedDoublePendulum-v5's entry shortens the training episodes only: evaluations play the registered 1000 steps."""
    import sample_efficiency
    from stable_baselines3.common.env_util import make_vec_env

    args = sample_efficiency.parse_args(
        ["--algo", "acktr", "--env", "InvertedDoublePendulum-v5", "--out-dir", str(tmp_path), "--quick", "--no-progress"]
    )
    sample_efficiency.register_for(args)
    manager = sample_efficiency.Run(args).experiment(resume=False)
    model, _ = manager.setup_experiment()
    eval_env = manager.create_envs(sample_efficiency.N_EVAL_EPISODES, eval_env=True, no_log=True)
    assert sample_efficiency.episode_limits(model.get_env()) == {200}
    assert sample_efficiency.episode_limits(eval_env) == {1000}
    sample_efficiency.check_evaluation_episodes(eval_env, "InvertedDoublePendulum-v5")
    shortened = make_vec_env("InvertedDoublePendulum-v5", n_envs=2, env_kwargs={"max_episode_steps": 200})
    with pytest.raises(RuntimeError, match=r"end episodes after \[200\] steps, not after the 1000 gymnasium registered"):
        sample_efficiency.check_evaluation_episodes(shortened, "InvertedDoublePendulum-v5")


def test_evaluation_episodes_of_an_env_that_wraps_another():
    """rl-zoo's CartPoleNoVel-v1 registers no time limit of its own: its episodes are the wrapped CartPole-v1's 500 steps."""
    import rl_zoo3.import_envs  # noqa: F401  (registers the NoVel envs)
    import sample_efficiency
    from gymnasium.wrappers import TimeLimit
    from stable_baselines3.common.env_util import make_vec_env

    assert sample_efficiency.registered_episode_limit("CartPoleNoVel-v1") == 500
    sample_efficiency.check_evaluation_episodes(make_vec_env("CartPoleNoVel-v1", n_envs=2), "CartPoleNoVel-v1")
    shortened = make_vec_env("CartPoleNoVel-v1", n_envs=2, wrapper_class=TimeLimit, wrapper_kwargs={"max_episode_steps": 200})
    with pytest.raises(RuntimeError, match=r"end episodes after \[200\] steps, not after the 500 gymnasium registered"):
        sample_efficiency.check_evaluation_episodes(shortened, "CartPoleNoVel-v1")


def play_seeded_episode(env, seed: int, actions: np.ndarray) -> np.ndarray:
    """The observations of an episode reset with ``seed`` and played with ``actions`` (until it ends)."""
    observations = [env.reset(seed=seed)[0]]
    for action in actions:
        observation, _, terminated, truncated, _ = env.step(action)
        observations.append(observation)
        if terminated or truncated:
            break
    return np.array(observations)


def test_bipedal_walker_replays_a_seeded_episode_exactly():
    """
    The protocol's BipedalWalker starts each episode in a new Box2D world: an env that played other episodes first
    replays a seeded episode as a new env plays it. Gymnasium's own walker (1.4.0) does not: it keeps its world.
    """
    import gymnasium as gym
    import sample_efficiency

    actions = np.random.default_rng(0).uniform(-1, 1, size=(200, 4)).astype(np.float32)

    def replay_after_other_episodes(wrapper):
        first = play_seeded_episode(wrapper(gym.make("BipedalWalker-v3")), 5, actions)
        walker = wrapper(gym.make("BipedalWalker-v3"))
        for seed in (7, 9):
            play_seeded_episode(walker, seed, actions)
        return first, play_seeded_episode(walker, 5, actions)

    first, replayed = replay_after_other_episodes(sample_efficiency.protocol_wrapper(gym.wrappers.ClipAction))
    np.testing.assert_array_equal(replayed, first)
    first, replayed = replay_after_other_episodes(gym.wrappers.ClipAction)
    assert first.shape != replayed.shape or not np.array_equal(first, replayed), "gymnasium's walker repeats now"
    walker = sample_efficiency.protocol_wrapper(gym.wrappers.ClipAction)(gym.make("BipedalWalker-v3"))
    assert isinstance(walker, sample_efficiency.FreshBox2DWorld) and isinstance(walker.env, gym.wrappers.ClipAction)
    # Another env than a BipedalWalker keeps the entry's wrapper alone
    cartpole = sample_efficiency.protocol_wrapper(None)(gym.make("CartPole-v1"))
    assert not isinstance(cartpole, sample_efficiency.FreshBox2DWorld)


@pytest.mark.parametrize("env_id, fresh_world", [("BipedalWalker-v3", True), ("Pendulum-v1", False)])
def test_protocol_builds_training_and_evaluation_envs_with_its_wrapper(tmp_path, env_id, fresh_world):
    import sample_efficiency

    args = sample_efficiency.parse_args(
        ["--algo", "a2c", "--env", env_id, "--out-dir", str(tmp_path), "--quick", "--no-progress"]
    )
    sample_efficiency.register_for(args)
    manager = sample_efficiency.Run(args).experiment(resume=False)
    model, _ = manager.setup_experiment()
    eval_env = manager.create_envs(sample_efficiency.N_EVAL_EPISODES, eval_env=True, no_log=True)
    for venv in (model.get_env(), eval_env):
        assert venv.env_is_wrapped(sample_efficiency.FreshBox2DWorld) == [fresh_world] * venv.num_envs
    assert manager.env_wrapper is None  # the entry's (rl-zoo's A2C entries have none), as the manager read it


def glance_rows() -> list[list[str]]:
    """The rows of docs/benchmark.md's "At a glance" table, as cells."""
    from protocol import DOCS_STATIC

    page = (DOCS_STATIC.parent / "benchmark.md").read_text()
    section = page.split("\n## At a glance\n")[1].split("\n## ")[0]
    return [table_cells(line) for line in section.splitlines() if line.startswith("| ") and not line.startswith("| task ")]


def shows(figure: str, value: float) -> bool:
    """Whether a figure as the page prints it ("1,918", "-98.3", "**180**") is ``value`` rounded, to its own decimals
    or to three significant figures."""
    shown = float(figure.strip("*").replace(",", ""))
    decimals = len(figure.strip("*").split(".")[1]) if "." in figure else 0
    return shown in (round(value, decimals), float(f"{value:.3g}"))


@functools.cache
def stored_runs() -> dict[str, dict[str, list[dict]]]:
    """The runs docs/benchmark.md reports, by env and algorithm."""
    from protocol import RESULTS_DIR

    return load_runs([RESULTS_DIR, RESULTS_DIR.parent / "minatar", RESULTS_DIR.parent / "recurrent"])


@pytest.mark.parametrize("row", glance_rows(), ids=lambda row: row[0])
def test_at_a_glance_figures_are_the_stored_runs(row):
    # The page's summary is typed by hand (report.py generates the tables below it): each curve average must be the
    # median over the stored runs' seeds, and the sustained ratio the one report.py computes from them
    task, recurrent = row[0].split(" (")[0], "Recurrent" in row[0]
    by_algo = stored_runs()[task]
    columns = {"a2c": row[2], "acktr_lstm" if recurrent else "acktr": row[3], "ppo_lstm" if recurrent else "ppo": row[4]}
    for algo, figure in columns.items():
        if figure == "–":
            assert algo not in by_algo, f"{task}: {algo} was run but the row shows no curve average"
            continue
        median = float(np.median([run_metrics(run)["curve_average"] for run in by_algo[algo]]))
        assert shows(figure, median), f"{task}: {algo}'s curve average is {median:.3f}, the row shows {figure}"
    if not recurrent:  # the recurrent rows compare RecurrentACKTR with RecurrentPPO, not the sustained ratio
        sustained = [median_steps([run_metrics(run)["sustained"] for run in by_algo[algo]]) for algo in ("a2c", "acktr")]
        assert row[5].replace("*", "").startswith(steps_ratio(*sustained)), f"{task}: ratio {steps_ratio(*sustained)}"
