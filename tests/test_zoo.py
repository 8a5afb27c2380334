"""rl-zoo integration: registration, every yaml entry, and the command line (subprocesses, as rl-zoo tests itself)."""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import rl_zoo3
import yaml
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER

from sb3_acktr import ACKTR, RecurrentACKTR
from sb3_acktr.minatar import ENV_ID_PREFIX, register_minatar_envs
from sb3_acktr.zoo import HYPERPARAMS, RECURRENT_HYPERPARAMS, register

with open(HYPERPARAMS) as file:
    ENTRIES = sorted(yaml.safe_load(file))
with open(RECURRENT_HYPERPARAMS) as file:
    RECURRENT_ENTRIES = sorted(yaml.safe_load(file))

ZOO = [sys.executable, "-m", "sb3_acktr.zoo"]
POSTGRES_SCRIPT = Path(__file__).parent.parent / "scripts" / "postgres.sh"
# Every run: one torch thread, no progress bars
COMMON = ["--num-threads", "1", "--seed", "0"]


def run(args: list[str], cwd: Path, expect_success: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(ZOO + args, cwd=cwd, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    if expect_success:
        assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_register_is_idempotent():
    register()
    register()
    assert rl_zoo3.ALGOS["acktr"] is ACKTR
    assert rl_zoo3.ALGOS["acktr_lstm"] is RecurrentACKTR
    assert HYPERPARAMS_SAMPLER["acktr"].__name__ == HYPERPARAMS_SAMPLER["acktr_lstm"].__name__ == "sample_acktr_params"
    assert HYPERPARAMS_CONVERTER["acktr"].__name__ == "convert_acktr_params"
    assert rl_zoo3.ALGOS["a2c"].__name__ == "A2C"


@pytest.mark.parametrize("path", [HYPERPARAMS, RECURRENT_HYPERPARAMS])
def test_hyperparams_ship_inside_the_package(path):
    assert path.is_file()
    assert (Path(__file__).parent.parent / "sb3_acktr" / "hyperparams" / path.name).resolve() == path.resolve()


@pytest.mark.parametrize(
    "algo, entry", [("acktr", entry) for entry in ENTRIES] + [("acktr_lstm", entry) for entry in RECURRENT_ENTRIES]
)
def test_every_yaml_entry_builds_its_model(algo, entry, tmp_path):
    """rl-zoo's own ExperimentManager builds env and model for each entry: no key can be misspelled."""
    register()
    # default: an env without an entry of its own
    env_id = {"default": "FrozenLake-v1", "atari": "PongNoFrameskip-v4"}.get(entry, entry)
    if env_id.startswith(ENV_ID_PREFIX):
        register_minatar_envs()
    config = HYPERPARAMS if algo == "acktr" else RECURRENT_HYPERPARAMS
    manager = ExperimentManager(argparse.Namespace(), algo, env_id, str(tmp_path), config=str(config), eval_freq=-1, verbose=0)
    model, _ = manager.setup_experiment()
    assert type(model) is (ACKTR if algo == "acktr" else RecurrentACKTR)
    model.get_env().close()


def test_rl_zoo_mujoco_ids_get_the_v5_entries():
    """rl-zoo's own entries name the MuJoCo -v4 ids: each gets its -v5 entry, not the default one."""
    import gymnasium as gym

    with open(HYPERPARAMS) as file:
        entries = yaml.safe_load(file)
    v4_ids = [env_id for env_id, spec in gym.registry.items() if env_id.endswith("-v4") and "mujoco" in str(spec.entry_point)]
    # Pusher-v4 cannot be made with mujoco >= 3 (gymnasium raises an ImportError)
    v4_ids.remove("Pusher-v4")
    assert len(v4_ids) == 10
    for env_id in v4_ids:
        assert entries[env_id] == entries[env_id.replace("-v4", "-v5")], env_id


@pytest.mark.parametrize("algo, config", [("acktr", HYPERPARAMS), ("acktr_lstm", RECURRENT_HYPERPARAMS)])
@pytest.mark.parametrize("env_id, entry", [("FrozenLake-v1", "default"), ("ALE/Breakout-v5", "atari")])
def test_unlisted_envs_get_the_default_or_atari_entry(algo, config, env_id, entry, tmp_path):
    """A pipeline that swaps its algorithm (a2c, ppo_lstm, ...) for acktr or acktr_lstm finds an entry for any env."""
    register()
    manager = ExperimentManager(argparse.Namespace(), algo, env_id, str(tmp_path), config=str(config), verbose=0)
    hyperparams, _ = manager.read_hyperparameters()
    with open(config) as file:
        assert hyperparams == yaml.safe_load(file)[entry]


def test_sampler_builds_valid_kwargs():
    import optuna

    register()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        kwargs = HYPERPARAMS_SAMPLER["acktr"](study.ask(), n_actions=2, n_envs=1, additional_args={})
        ACKTR("MlpPolicy", "CartPole-v1", **kwargs)  # every key is an ACKTR argument, every value valid
        RecurrentACKTR("MlpLstmPolicy", "CartPole-v1", **kwargs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One short ACKTR run on CartPole-v1 with evaluation and checkpoints, shared by the tests below."""
    folder = tmp_path_factory.mktemp("zoo")
    args = ["train", "--algo", "acktr", "--env", "CartPole-v1", "-n", "640", "--eval-freq", "320", "--eval-episodes", "2"]
    run([*args, "--save-freq", "320", "-f", "logs", *COMMON], folder)
    return folder


def test_train_writes_model_evaluations_and_checkpoints(trained):
    run_dir = trained / "logs" / "acktr" / "CartPole-v1_1"
    for name in ("CartPole-v1.zip", "best_model.zip", "evaluations.npz", "rl_model_320_steps.zip", "CartPole-v1/config.yml"):
        assert (run_dir / name).exists(), name
    assert str(HYPERPARAMS) in (run_dir / "CartPole-v1" / "args.yml").read_text()
    assert isinstance(ACKTR.load(run_dir / "CartPole-v1.zip"), ACKTR)


def test_results_prints_and_plots(trained):
    result = run(["results", "--env", "CartPole-v1", "-f", "logs"], trained)
    assert "mean return" in result.stdout and "best" in result.stdout
    assert (trained / "logs" / "acktr" / "CartPole-v1_1" / "evaluations.png").is_file()


def test_continue_training(trained):
    model = trained / "logs" / "acktr" / "CartPole-v1_1" / "CartPole-v1.zip"
    run(["train", "--algo", "acktr", "--env", "CartPole-v1", "-n", "320", "-i", str(model), "-f", "logs", *COMMON], trained)
    assert (trained / "logs" / "acktr" / "CartPole-v1_2" / "CartPole-v1.zip").is_file()


@pytest.mark.parametrize("flag", ["--load-best", "--load-checkpoint=320", None])
def test_enjoy(trained, flag):
    args = ["enjoy", "--algo", "acktr", "--env", "CartPole-v1", "-f", "logs", "--exp-id", "1", "-n", "50", "--no-render"]
    run(args + ([flag] if flag else []) + ["--num-threads", "1"], trained)


def test_record_video(trained):
    args = ["record_video", "--algo", "acktr", "--env", "CartPole-v1", "-f", "logs", "--exp-id", "1", "-n", "20"]
    run([*args, "-o", "videos"], trained)
    assert list((trained / "videos").glob("*.mp4"))


def test_pendulum_with_vec_env_subproc_params_and_tensorboard(tmp_path):
    args = ["train", "--algo", "acktr", "--env", "Pendulum-v1", "-n", "256", "--eval-freq", "128", "--eval-episodes", "1"]
    args += ["--vec-env", "subproc", "-tb", "tb", "-params", "n_steps:32", "kfac_clip:0.002", "-f", "logs", *COMMON]
    args += ["--env-kwargs", "g:9.0", "-P", "--save-freq", "128"]
    run(args, tmp_path)
    run_dir = tmp_path / "logs" / "acktr" / "Pendulum-v1_1"
    for name in ("Pendulum-v1.zip", "best_model.zip", "evaluations.npz", "rl_model_128_steps.zip"):
        assert (run_dir / name).exists(), name
    params = run_dir / "Pendulum-v1"
    config = (params / "config.yml").read_text()
    assert "kfac_clip" in config and "0.002" in config
    assert "g: 9.0" in (params / "args.yml").read_text()
    assert list((tmp_path / "tb" / "Pendulum-v1").glob("ACKTR_*"))


@pytest.mark.parametrize("sampler, pruner", [("random", "median"), ("tpe", "halving")])
def test_optimize(tmp_path, sampler, pruner):
    args = ["train", "--algo", "acktr", "--env", "CartPole-v1", "-n", "400", "-optimize", "--n-trials", "2"]
    args += ["--n-evaluations", "2", "--n-startup-trials", "1", "--sampler", sampler, "--pruner", pruner, "--no-optim-plots"]
    args += ["--storage", f"sqlite:///{tmp_path}/study.db", "--study-name", "acktr", "-f", "logs", *COMMON]
    run(args, tmp_path)
    assert list((tmp_path / "logs" / "acktr").glob("report_CartPole-v1_2-trials-400-*.csv"))


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server (Debian's package) started by scripts/postgres.sh in a scratch folder, stopped after."""
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql); .ci/run installs it")
    folder = tempfile.mkdtemp(prefix="sb3_acktr_postgres_")
    os.chmod(folder, 0o755)  # the server runs as the postgres user when the tests run as root
    data_dir = str(Path(folder) / "data")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    started = subprocess.run(["bash", str(POSTGRES_SCRIPT), "start", data_dir, port], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    yield started.stdout.strip()
    subprocess.run(["bash", str(POSTGRES_SCRIPT), "stop", data_dir], check=True)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_optimize_workers_share_one_study(tmp_path, kind, request):
    """Two worker processes on one --storage/--study-name, run at the same time, add their trials to the same study:
    through Optuna's JournalStorage file (a path ending in .log) and through a PostgreSQL server."""
    import optuna

    if kind == "journal":
        storage = str(tmp_path / "study.log")
        optuna_storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    else:
        storage = optuna_storage = request.getfixturevalue("postgres_url")
    study_name = f"shared-{tmp_path.name}"
    # Created once beforehand (as `optuna create-study` does): two processes creating it at the same instant race
    optuna.create_study(study_name=study_name, storage=optuna_storage, direction="maximize")
    args = ["train", "--algo", "acktr", "--env", "CartPole-v1", "-n", "200", "-optimize", "--n-trials", "2"]
    args += ["--n-evaluations", "1", "--sampler", "random", "--pruner", "none", "--no-optim-plots"]
    args += ["--storage", storage, "--study-name", study_name, "--num-threads", "1"]
    workers = [
        subprocess.Popen(
            ZOO + args + ["-f", f"logs{i}", "--seed", str(i)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for i in range(2)
    ]
    for worker in workers:
        output, _ = worker.communicate()
        assert worker.returncode == 0, output.decode()[-3000:]
    trials = optuna.load_study(study_name=study_name, storage=optuna_storage).trials
    assert len(trials) == 4 and all(trial.state == optuna.trial.TrialState.COMPLETE for trial in trials)
    assert sorted(trial.number for trial in trials) == [0, 1, 2, 3]


def test_a2c_through_the_same_command(tmp_path):
    run(["train", "--algo", "a2c", "--env", "CartPole-v1", "-n", "100", "-f", "logs", *COMMON], tmp_path)
    assert (tmp_path / "logs" / "a2c" / "CartPole-v1_1" / "CartPole-v1.zip").is_file()


def test_unknown_algo_gives_the_zoo_error(tmp_path):
    result = run(["train", "--algo", "acktrr", "--env", "CartPole-v1"], tmp_path, expect_success=False)
    assert result.returncode == 2
    assert "argument --algo: invalid choice: 'acktrr'" in result.stderr


def test_env_without_entry_or_default_gives_the_zoo_error(tmp_path):
    (tmp_path / "conf.yml").write_text("Pendulum-v1:\n  n_timesteps: 100\n  policy: MlpPolicy\n")
    result = run(["train", "--algo", "acktr", "--env", "CartPole-v1", "-conf", "conf.yml"], tmp_path, expect_success=False)
    assert result.returncode != 0
    assert "Hyperparameters not found for acktr-CartPole-v1" in result.stderr
    assert "sb3_acktr" not in result.stderr.strip().splitlines()[-2]


def test_unknown_yaml_key_names_the_key(tmp_path):
    (tmp_path / "conf.yml").write_text("CartPole-v1:\n  n_timesteps: 100\n  policy: MlpPolicy\n  kfac_clipp: 0.01\n")
    result = run(["train", "--algo", "acktr", "--env", "CartPole-v1", "-conf", "conf.yml"], tmp_path, expect_success=False)
    assert result.returncode != 0
    assert "unexpected keyword argument 'kfac_clipp'" in result.stderr
    assert "check the spelling in conf.yml" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_params_key_names_params(tmp_path):
    args = ["train", "--algo", "acktr", "--env", "CartPole-v1", "-n", "100", "-params", "n_steps:8", "kfac_clipp:0.01"]
    result = run(args, tmp_path, expect_success=False)
    assert result.returncode != 0
    assert "unexpected keyword argument 'kfac_clipp'" in result.stderr
    assert "check the spelling in -params" in result.stderr and "acktr.yml" not in result.stderr


def test_usage_error(tmp_path):
    result = run(["fly"], tmp_path, expect_success=False)
    assert result.returncode == 2 and "usage: python -m sb3_acktr.zoo" in result.stderr


BENCHMARK_HYPERPARAMS = Path(__file__).resolve().parent.parent / "benchmarks" / "hyperparams"


@pytest.mark.parametrize("algo", ["acktr", "a2c", "ppo"])
def test_minatar_from_yaml(tmp_path, algo):
    """ACKTR from the package's yaml, A2C and PPO from the benchmark's, through the same command; then the results."""
    args = ["train", "--algo", algo, "--env", "MinAtar/Breakout-v1", "-n", "640", "--eval-freq", "320"]
    if algo != "acktr":
        args += ["--conf-file", str(BENCHMARK_HYPERPARAMS / f"{algo}.yml")]
    run([*args, "--eval-episodes", "1", "-f", "logs", *COMMON], tmp_path)
    run_folder = tmp_path / "logs" / algo / "MinAtar-Breakout-v1_1"
    assert (run_folder / "MinAtar-Breakout-v1.zip").is_file() and (run_folder / "evaluations.npz").is_file()
    if algo == "acktr":
        result = run(["results", "--algo", algo, "--env", "MinAtar/Breakout-v1", "-f", "logs"], tmp_path)
        assert "MinAtar" in result.stdout


@pytest.mark.parametrize("lr_schedule", ["linear", "constant"])
def test_train_with_a_stored_trial(tmp_path, lr_schedule):
    """`train --storage S --study-name N --trial-id K` rebuilds ACKTR from a stored trial's parameters, including a
    linear learning-rate schedule (rl-zoo accepts only numbers and `lin_X` strings there)."""
    import optuna

    register()
    params = {
        "n_steps": 8,
        "one_minus_gamma": 0.01,
        "one_minus_gae_lambda": 0.05,
        "learning_rate": 0.1,
        "lr_schedule": lr_schedule,
        "kfac_clip": 0.001,
        "ent_coef": 0.001,
        "vf_coef": 0.5,
        "vf_fisher_coef": 1.0,
        "net_arch": "tiny",
        "activation_fn": "tanh",
    }
    # The sampler's own distributions for these parameters, as -optimize stores them
    recorder = optuna.create_study()
    trial = recorder.ask(
        {
            name: (
                optuna.distributions.CategoricalDistribution([value])
                if isinstance(value, str) or name == "n_steps"
                else optuna.distributions.FloatDistribution(value / 2, value * 2)
            )
            for name, value in params.items()
        }
    )
    storage = str(tmp_path / "study.log")
    study = optuna.create_study(
        study_name="acktr-stored",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage)),
        direction="maximize",
    )
    # Trial 1: rl-zoo 2.9.2 ignores --trial-id 0 (it tests the id's truth value)
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(params=params, distributions=trial.distributions, value=1.0))
    converted = HYPERPARAMS_CONVERTER["acktr"](params)
    assert converted["learning_rate"] == ("lin_0.1" if lr_schedule == "linear" else 0.1)
    args = ["train", "--algo", "acktr", "--env", "CartPole-v1", "-n", "64", "-f", "logs", *COMMON]
    run([*args, "--storage", storage, "--study-name", "acktr-stored", "--trial-id", "1"], tmp_path)
    config = tmp_path / "logs" / "acktr" / "CartPole-v1_1" / "CartPole-v1" / "config.yml"
    saved = yaml.load(config.read_text(), Loader=yaml.UnsafeLoader)  # an OrderedDict, as rl-zoo writes and reads it
    assert dict(saved)["learning_rate"] == ("lin_0.1" if lr_schedule == "linear" else 0.1)
