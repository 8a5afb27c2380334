"""ACKTR's own save/load checks: the K-FAC state (factors, inverses, momentum, counters) round-trips exactly."""

import io
import warnings
import zipfile
from copy import deepcopy

import pytest
import torch as th
from stable_baselines3.common import save_util

from sb3_acktr import ACKTR, KFAC
from tests.helpers import assert_kfac_states_equal


@pytest.mark.parametrize("kfac_inverse_method", ["cholesky", "eigen"])
@pytest.mark.parametrize("trust_region", ["joint", "per_network"])
def test_save_load_kfac_state_weights_only(tmp_path, monkeypatch, kfac_inverse_method, trust_region):
    """
    SB3 loads the saved state dicts with ``torch.load(weights_only=True)``: the KFAC state (Kronecker factors,
    inverses, momentum buffers, counters, group names) must load this way, and round-trip exactly.
    """
    model = ACKTR(
        "MlpPolicy",
        "Pendulum-v1",
        n_steps=8,
        seed=0,
        kfac_inverse_method=kfac_inverse_method,
        trust_region=trust_region,
        policy_kwargs=dict(net_arch=[16]),
    ).learn(8 * 12)
    optimizer = model.policy.optimizer
    assert isinstance(optimizer, KFAC)
    # Curvature was recorded and the inverses computed: there is state to save
    assert optimizer.steps == 12
    assert any("A" in state and "momentum_buffer" in state for state in optimizer.state.values())
    inverse_key = "A_inv" if kfac_inverse_method == "cholesky" else "A_eigenvectors"
    assert any(inverse_key in state for state in optimizer.state.values())
    saved_state = deepcopy(optimizer.state_dict())
    model.save(tmp_path / "acktr.zip")

    # The optimizer state in the archive can be read with weights_only=True (no pickled object in it)
    with zipfile.ZipFile(tmp_path / "acktr.zip") as archive:
        assert "policy.optimizer.pth" in archive.namelist()
        with archive.open("policy.optimizer.pth") as file:
            optimizer_state = th.load(io.BytesIO(file.read()), map_location="cpu", weights_only=True)
    assert_kfac_states_equal(saved_state, optimizer_state)

    # SB3's own loading path: every state dict goes through torch.load(weights_only=True)
    torch_load_calls = []
    original_torch_load = save_util.th.load

    def checked_torch_load(*args, **kwargs):
        torch_load_calls.append(kwargs.get("weights_only"))
        return original_torch_load(*args, **kwargs)

    monkeypatch.setattr(save_util.th, "load", checked_torch_load)
    loaded_model = ACKTR.load(tmp_path / "acktr.zip", env=model.get_env())
    monkeypatch.undo()
    assert len(torch_load_calls) >= 2  # policy and policy.optimizer
    assert all(weights_only is True for weights_only in torch_load_calls)

    loaded_optimizer = loaded_model.policy.optimizer
    assert isinstance(loaded_optimizer, KFAC)
    assert_kfac_states_equal(saved_state, loaded_optimizer.state_dict())
    assert [group.get("name") for group in loaded_optimizer.param_groups] == [
        group.get("name") for group in optimizer.param_groups
    ]
    # The loaded state belongs to the loaded policy's parameters
    loaded_params = {id(param) for param in loaded_model.policy.parameters()}
    assert all(id(param) in loaded_params for param in loaded_optimizer.state)
    for name, tensor in loaded_model.policy.state_dict().items():
        assert th.equal(tensor, model.policy.state_dict()[name]), name

    # Training goes on from the saved state
    loaded_model.learn(8 * 2, reset_num_timesteps=False)
    assert loaded_optimizer.steps == 14


def test_load_same_updates_as_original(tmp_path):
    """An ACKTR model reloaded from a file makes the same K-FAC updates as the original one (optimizer state saved)."""
    model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=8, seed=0, policy_kwargs=dict(net_arch=[16])).learn(8 * 5)
    model.save(tmp_path / "acktr.zip")
    loaded_model = ACKTR.load(tmp_path / "acktr.zip")

    # Same rollout buffer content, then one training step for each
    loaded_model.set_logger(model.logger)
    loaded_model.rollout_buffer = deepcopy(model.rollout_buffer)
    th.manual_seed(1)
    model.train()
    th.manual_seed(1)
    loaded_model.train()
    for name, tensor in model.policy.state_dict().items():
        assert th.allclose(tensor, loaded_model.policy.state_dict()[name]), name


def test_load_warns_nothing(tmp_path):
    """Saving and loading an ACKTR model does not warn (e.g. about the optimizer or policy_kwargs)."""
    ACKTR("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[16])).save(tmp_path / "acktr.zip")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ACKTR.load(tmp_path / "acktr.zip")
    assert not [warning for warning in record if not issubclass(warning.category, DeprecationWarning)]
