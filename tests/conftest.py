"""Test-wide settings: small, deterministic CPU runs."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402

# Compile quickly: tests run tiny models for a few steps, where XLA's optimisations cost more than
# they save (the trick big_vision and the Flax examples use in their tests).
jax.config.update("jax_disable_most_optimizations", True)
