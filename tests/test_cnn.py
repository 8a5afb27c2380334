"""
Ported from Stable-Baselines3's tests/test_cnn.py: the A2C cases, with ACKTR in A2C's place (K-FAC
preconditions the convolutions of the CnnPolicy).
"""

import os

import numpy as np
import pytest
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecNormalize, VecTransposeImage, is_vecenv_wrapped

from sb3_acktr import ACKTR


@pytest.mark.parametrize("share_features_extractor", [True, False])
def test_cnn(tmp_path, share_features_extractor):
    SAVE_NAME = "cnn_model.zip"
    # Fake grayscale with frameskip
    # Atari after preprocessing: 84x84x1, here we are using lower resolution
    # to check that the network handle it automatically
    env = FakeImageEnv(screen_height=40, screen_width=40, n_channels=1, discrete=True)
    kwargs = dict(
        n_steps=64,
        policy_kwargs=dict(
            share_features_extractor=share_features_extractor,
        ),
    )
    model = ACKTR("CnnPolicy", env, **kwargs).learn(250)

    # FakeImageEnv is channel last by default and should be wrapped
    assert is_vecenv_wrapped(model.get_env(), VecTransposeImage)

    obs, _ = env.reset()

    # Test stochastic predict with channel last input
    for _ in range(10):
        model.predict(obs, deterministic=False)

    action, _ = model.predict(obs, deterministic=True)

    model.save(tmp_path / SAVE_NAME)
    del model

    model = ACKTR.load(tmp_path / SAVE_NAME)

    # Check that the prediction is the same
    assert np.allclose(action, model.predict(obs, deterministic=True)[0])

    os.remove(str(tmp_path / SAVE_NAME))


def test_vec_transpose_skip(tmp_path):
    # Fake grayscale with frameskip
    env = FakeImageEnv(screen_height=41, screen_width=40, n_channels=10, discrete=True, channel_first=True)
    env = DummyVecEnv([lambda: env])
    # Stack 5 frames so the observation is now (50, 40, 40) but the env is still channel first
    env = VecFrameStack(env, 5, channels_order="first")
    obs_shape_before = env.reset().shape
    # The observation space should be different as the heuristic thinks it is channel last
    assert not np.allclose(obs_shape_before, VecTransposeImage(env).reset().shape)
    env = VecTransposeImage(env, skip=True)
    # The observation space should be the same as we skip the VecTransposeImage
    assert np.allclose(obs_shape_before, env.reset().shape)

    kwargs = dict(
        n_steps=64,
        policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=32)),
        seed=1,
    )
    # One update instead of SB3's four: K-FAC's input factor of the first convolution is 3201x3201 here
    # (50 channels x 8x8 kernel + bias), ~2 s per update on one CPU thread
    model = ACKTR("CnnPolicy", env, **kwargs).learn(64)

    obs = env.reset()
    model.predict(obs, deterministic=True)


def test_channel_first_env(tmp_path):
    # test_cnn uses environment with HxWxC setup that is transposed, but we
    # also want to work with CxHxW envs directly without transposing wrapper.
    SAVE_NAME = "cnn_model.zip"

    # Create environment with transposed images (CxHxW).
    # If underlying CNN processes the data in wrong format,
    # it will raise an error of negative dimension sizes while creating convolutions
    env = FakeImageEnv(screen_height=40, screen_width=40, n_channels=1, discrete=True, channel_first=True)

    model = ACKTR("CnnPolicy", env, n_steps=100).learn(250)

    assert not is_vecenv_wrapped(model.get_env(), VecTransposeImage)

    obs, _ = env.reset()

    action, _ = model.predict(obs, deterministic=True)

    model.save(tmp_path / SAVE_NAME)
    del model

    model = ACKTR.load(tmp_path / SAVE_NAME)

    # Check that the prediction is the same
    assert np.allclose(action, model.predict(obs, deterministic=True)[0])

    os.remove(str(tmp_path / SAVE_NAME))


@pytest.mark.parametrize("normalize_images", [True, False])
def test_image_like_input(normalize_images):
    """
    Check that we can handle image-like input (3D tensor)
    when normalize_images=False
    """
    # Fake grayscale with frameskip
    # Atari after preprocessing: 84x84x1, here we are using lower resolution
    # to check that the network handle it automatically
    env = FakeImageEnv(
        screen_height=36,
        screen_width=36,
        n_channels=1,
        channel_first=True,
        discrete=True,
    )
    vec_env = VecNormalize(DummyVecEnv([lambda: env]))
    # Reduce the size of the features
    # deactivate normalization
    kwargs = dict(
        policy_kwargs=dict(
            normalize_images=normalize_images,
            features_extractor_kwargs=dict(features_dim=32),
        ),
        seed=1,
        n_steps=64,
    )

    if normalize_images:
        with pytest.raises(AssertionError):
            ACKTR("CnnPolicy", vec_env, **kwargs).learn(128)
    else:
        ACKTR("CnnPolicy", vec_env, **kwargs).learn(128)


def test_mlp_policy_on_pixels_leaves_the_wide_layers_to_the_diagonal_fisher():
    """
    MlpPolicy on a 96x96 image (A2C's pipeline with ACKTR in its place): the first layers' A would be 9217 wide
    (0.68 GB with its inverse, minutes per refresh); they get the diagonal Fisher with a warning, and training runs.
    """
    env = FakeImageEnv(screen_height=96, screen_width=96, n_channels=1, discrete=True)
    with pytest.warns(UserWarning, match=r"'mlp_extractor.policy_net.0' \(Linear, A 9217 x 9217, .* CnnPolicy"):
        model = ACKTR("MlpPolicy", env, n_steps=8, seed=0)
    optimizer = model.policy.optimizer
    first_layers = [model.policy.mlp_extractor.policy_net[0], model.policy.mlp_extractor.value_net[0]]
    assert not any(layer.name.endswith("_net.0") for layer in optimizer.layers)
    assert {id(layer.weight) for layer in first_layers} <= {id(param) for param in optimizer.fallback_params}
    model.learn(24)
    assert optimizer.steps == 3 and optimizer.skipped_steps == 0
    assert all("fisher_diag" in optimizer.state[layer.weight] for layer in first_layers)
    assert "A" in optimizer.state[model.policy.action_net.weight]
