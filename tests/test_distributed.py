"""Data-parallel K-FAC and ACKTR over torch.distributed (gloo), each test a real ``torchrun`` of two processes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_acktr import ACKTR
from tests.distributed_worker import STEPS, supervised_run

WORKER = Path(__file__).parent / "distributed_worker.py"


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parent.parent)}


def torchrun(command: str, out_dir: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a worker command under ``torchrun --standalone`` with two ranks, one torch thread each."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.run(
        [*launcher, str(WORKER), command, str(out_dir)], env=ENV, capture_output=True, text=True, timeout=timeout
    )


def check_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def kfac_runs(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("kfac")
    check_ok(torchrun("kfac_equivalence", out_dir))
    return [th.load(out_dir / f"kfac_{rank}.pt") for rank in range(2)]


@pytest.mark.parametrize("placement", ["all_ranks", "one_rank"])
def test_two_ranks_with_half_batches_equal_one_process_with_the_whole(kfac_runs, placement):
    """Factors, inverses, the diagonal Fisher and the parameters over 20 steps, on both ranks."""
    reference = supervised_run(slice(None))
    for rank_records in kfac_runs:
        records = rank_records[placement]
        assert len(records) == len(reference) == STEPS
        for step, (record, expected) in enumerate(zip(records, reference, strict=True)):
            assert record.keys() == expected.keys()
            for key in expected:
                th.testing.assert_close(record[key], expected[key], rtol=1e-5, atol=1e-5, msg=f"step {step}: {key}")


@pytest.fixture(scope="module")
def acktr_run(tmp_path_factory):
    """50 updates of ACKTR on 2 ranks × 4 envs: the summary rank 0 wrote and the model it saved."""
    out_dir = tmp_path_factory.mktemp("acktr")
    check_ok(torchrun("acktr_identical", out_dir))
    return json.loads((out_dir / "acktr.json").read_text()), out_dir / "model.zip"


def test_acktr_ranks_stay_bitwise_identical_and_count_global_steps(acktr_run):
    summary, _ = acktr_run
    assert summary["hashes"][0] == summary["hashes"][1]
    # target_kl adapted the learning rate to the KL averaged over the ranks: the same multiplier on both, after moving
    first, second = summary["kl_lr_multipliers"]
    trace = summary["kl_lr_multiplier_trace"]
    assert first == second and len(trace) == 50 and len(set(trace)) > 2
    # 50 updates of 2 ranks × 4 envs × 20 steps: num_timesteps counts both ranks' steps
    assert summary["n_updates"] == 50
    assert summary["num_timesteps"] == 50 * 2 * 4 * 20
    # Each rank's envs are seeded apart (seed + rank·n_envs): the ranks collect different episodes
    assert summary["distinct_first_observations"] == 2
    # The saved model, loaded into a distributed run, trains on with the ranks identical
    assert summary["reloaded"]["kfac_steps"] == 55
    assert summary["reloaded"]["hashes"][0] == summary["reloaded"]["hashes"][1] != summary["hashes"][0]


def test_acktr_saved_by_a_distributed_run_loads_in_one_process(acktr_run):
    """Only rank 0 writes the file, which loads and trains on in a single process."""
    model = ACKTR.load(acktr_run[1], env=make_vec_env("CartPole-v1", n_envs=4, seed=0))
    assert model.policy.optimizer.steps == 50
    assert model.policy.optimizer.process_group is None
    model.learn(4 * 20 * 2)
    assert model.policy.optimizer.steps == 52


def test_acktr_two_ranks_of_four_envs_learn_cartpole_within_the_one_process_budget(tmp_path):
    """The budget and threshold of tests/test_learning.py (one rank of 8 envs): 475 within 100k global steps."""
    check_ok(torchrun("acktr_learns", tmp_path))
    result = json.loads((tmp_path / "learn.json").read_text())
    assert result["best_mean_reward"] >= 475, result
    assert result["num_timesteps"] <= 100_000


@pytest.mark.parametrize(
    "command, message",
    [
        (
            "acktr_mismatch",
            "ACKTR: the ranks of the distributed run are configured differently: n_steps is 20 on rank 0 but 10 on rank 1",
        ),
        (
            "acktr_mismatch_network",
            "KFAC: the ranks of the distributed run are configured differently: layers is [('mlp_extractor.policy_net.0'",
        ),
    ],
)
def test_different_configurations_across_ranks_are_refused(tmp_path, command, message):
    result = torchrun(command, tmp_path)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert "on rank 1" in result.stdout + result.stderr


def test_reduce_form_of_an_lstm_is_refused_in_a_distributed_run(tmp_path):
    result = torchrun("kfac_lstm_reduce", tmp_path)
    assert result.returncode != 0
    assert "KFAC: the reduce form of nn.LSTM layers does not run data-parallel yet" in result.stdout + result.stderr


def test_leaving_the_group_stops_its_threads_while_the_model_lives(tmp_path):
    """
    Nothing of ACKTR's (its KFAC included) holds the default process group: leaving it stops gloo's threads at once.
    Threads that outlived it into the interpreter's shutdown aborted a rank ("terminate called without an active
    exception") when one of them needed the GIL to free a finished all-reduce.
    """
    check_ok(torchrun("acktr_leaves_the_group", tmp_path))
    for rank in range(2):
        threads = json.loads((tmp_path / f"threads_{rank}.json").read_text())
        assert threads["steps"] == 2
        assert threads["during"] > threads["before"], threads  # gloo's worker threads
        assert threads["after"] == threads["before"], threads


def test_a_killed_rank_ends_the_job_within_60_seconds(tmp_path):
    start = time.monotonic()
    result = torchrun("acktr_rank_killed", tmp_path, timeout=120)
    assert time.monotonic() - start < 60
    assert result.returncode != 0
    output = result.stdout + result.stderr
    # torchrun names the rank that failed first, and ends the others
    assert "rank      : 1 (local_rank: 1)" in output
    assert "Signal 9 (SIGKILL) received" in output


def zoo_train_arguments(log_folder: Path) -> list[str]:
    command = "-m sb3_acktr.zoo train --algo acktr --env CartPole-v1 -n 4000 --seed 0 --eval-freq 1000 --eval-episodes 2"
    return [*command.split(), "--log-folder", str(log_folder)]


def check_one_run_folder(log_folder: Path) -> None:
    """One run folder (rank 0's), holding the model of the 4000 global steps and rank 0's evaluations."""
    runs = list((log_folder / "acktr").iterdir())
    assert [run.name for run in runs] == ["CartPole-v1_1"]
    model = ACKTR.load(runs[0] / "CartPole-v1.zip")
    assert 4000 <= model.num_timesteps < 4000 + 2 * 8 * 20
    assert (runs[0] / "evaluations.npz").exists()


def test_zoo_train_on_one_node(tmp_path):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run([*launcher, *zoo_train_arguments(tmp_path)], env=ENV, capture_output=True, text=True, timeout=600)
    check_ok(result)
    check_one_run_folder(tmp_path)


def test_zoo_train_on_two_nodes(tmp_path):
    """Two torchrun agents (one per simulated node, one rank each) meeting at a c10d rendezvous on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1"]
    launcher += ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "two_nodes"]
    nodes = [
        subprocess.Popen(
            [*launcher, *zoo_train_arguments(tmp_path)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    for node in nodes:
        output, _ = node.communicate(timeout=600)
        assert node.returncode == 0, output[-3000:]
    check_one_run_folder(tmp_path)


def test_ctrl_c_on_torchrun_stops_every_rank(tmp_path):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    job = subprocess.Popen(
        [*launcher, str(WORKER), "acktr_long", str(tmp_path)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Wait until both ranks train, then interrupt torchrun as Ctrl-C in its terminal would
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"training_{rank}").exists() for rank in range(2)):
        assert time.monotonic() < deadline and job.poll() is None, "the ranks did not start training"
        time.sleep(0.2)
    start = time.monotonic()
    job.send_signal(signal.SIGINT)
    output, _ = job.communicate(timeout=60)
    assert time.monotonic() - start < 30
    assert job.returncode != 0
    assert "KeyboardInterrupt" in output or "SIGINT" in output or "Signals.SIGINT" in output


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--algo", "a2c"], "under torchrun only --algo acktr or acktr_lstm trains data-parallel, got --algo a2c"),
        (["--algo", "acktr", "-optimize"], "-optimize does not run under torchrun"),
    ],
)
def test_zoo_refuses_what_does_not_run_data_parallel(tmp_path, arguments, message):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = [*launcher, "-m", "sb3_acktr.zoo", "train", *arguments, "--env", "CartPole-v1", "-f", str(tmp_path)]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
