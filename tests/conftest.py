"""Test-wide settings: small, deterministic CPU runs."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402

# Compile quickly: tests run tiny models for a few steps, where XLA's optimisations cost more than
# they save (the trick big_vision and the Flax examples use in their tests).
jax.config.update("jax_disable_most_optimizations", True)


import pytest  # noqa: E402


@pytest.fixture
def mock_cifar(monkeypatch):
    """CIFAR through tfds' real `data_source` path with `tfds.testing.mock_data` (12 examples per split).
    tfds 4.9.10's mock assigns the batched `__getitems__` to a MagicMock instance as an unbound
    `functools.partial(_getitems, generator=...)`, so it is called without `self` and fails; patched here."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.testing import mocking

    monkeypatch.setattr(mocking, "_getitems", lambda keys, generator, serialized=False: [generator[k] for k in keys])
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        yield
