"""Test-wide settings: small, deterministic CPU runs."""

import atexit
import contextlib
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# One XLA compilation cache for the session, shared with the entry points tests start as subprocesses
# (they inherit the environment): the same small programs are compiled by many tests. Results do not
# change, only compile time; the cache is removed when the session ends.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="pannjax-tests-xla-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ.update(JAX_COMPILATION_CACHE_DIR=_cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

import jax  # noqa: E402

# Compile quickly: tests run tiny models for a few steps, where XLA's optimisations cost more than
# they save (the trick big_vision and the Flax examples use in their tests).
jax.config.update("jax_disable_most_optimizations", True)


import pytest  # noqa: E402


@contextlib.contextmanager
def mock_tfds(monkeypatch, num_examples: int):
    """Every tfds data set through tfds' real `data_source` path with `tfds.testing.mock_data`: `num_examples`
    random examples per split, drawn from the data set's own features (deterministic per index; images of
    unknown size get 5..49 pixels a side). tfds 4.9.10's mock assigns the batched `__getitems__` to a
    MagicMock instance as an unbound `functools.partial(_getitems, generator=...)`, so it is called without
    `self` and fails; patched here."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.testing import mocking

    monkeypatch.setattr(mocking, "_getitems", lambda keys, generator, serialized=False: [generator[k] for k in keys])
    with tfds.testing.mock_data(num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE):
        yield


@pytest.fixture
def mock_cifar(monkeypatch):
    """CIFAR-10/100 mocked by `mock_tfds`: 12 examples per split."""
    with mock_tfds(monkeypatch, 12):
        yield


@pytest.fixture
def mock_imagenet(monkeypatch):
    """imagenet2012 mocked by `mock_tfds`: 16 examples per split (already decoded uint8 images of random
    size, labels 0..999)."""
    with mock_tfds(monkeypatch, 16):
        yield
