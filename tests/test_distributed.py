"""Data-parallel K-FAC and ACKTR over torch.distributed (gloo), each test a real ``torchrun`` of two processes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch as th

from tests.distributed_worker import STEPS, supervised_run

WORKER = Path(__file__).parent / "distributed_worker.py"


def torchrun(command: str, out_dir: Path, timeout: float = 600, nproc: int = 2) -> subprocess.CompletedProcess:
    """Run a worker command under ``torchrun --standalone`` with one torch thread per rank."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parent.parent)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    return subprocess.run(
        [*launcher, str(WORKER), command, str(out_dir)], env=env, capture_output=True, text=True, timeout=timeout
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
