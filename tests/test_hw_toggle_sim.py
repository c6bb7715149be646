"""The JAX toggle simulator against a brute-force Python-integer reference, exactly."""

import jax
import numpy as np
import pytest

from pannjax.errors import ConfigError
from pannjax.hw.toggle_sim import (COMPONENTS, MacConfig, mean_toggles, reference_toggles, simulate_toggles,
                                   toggle_counts)



@pytest.fixture(autouse=True, scope="module")
def _optimized_xla():
    """The simulator's scan runs ~4x faster with XLA optimisations on (conftest turns them off for
    quick model compiles); restored afterwards."""
    old = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", old)

def _assert_exact(x, w, cfg):
    sim = simulate_toggles(x, w, cfg)
    for u in range(x.shape[1]):
        ref = reference_toggles(x[:, u], w[:, u], cfg)
        for c in COMPONENTS:
            np.testing.assert_array_equal(np.asarray(sim[c][:, u]), [r[c] for r in ref], err_msg=f"{c} unit {u}")


def _uniform(cfg, shape, rng):
    lo, hi = cfg.code_range("x")
    x = rng.integers(lo, hi + 1, shape)
    lo, hi = cfg.code_range("w")
    return x, rng.integers(lo, hi + 1, shape)


@pytest.mark.parametrize("bx,bw,acc,xs,ws", [
    (2, 2, 16, True, True), (4, 4, 32, False, True), (8, 8, 16, True, True), (8, 8, 32, False, False),
    (3, 7, 24, True, False), (8, 2, 24, False, True), (1, 1, 2, True, True), (16, 16, 32, True, True),
])
def test_simulator_matches_reference_on_random_streams(bx, bw, acc, xs, ws):
    cfg = MacConfig(bx, bw, acc, xs, ws)
    x, w = _uniform(cfg, (40, 5), np.random.default_rng(bx * 100 + bw))
    _assert_exact(x, w, cfg)


def test_simulator_matches_reference_on_adversarial_streams():
    k = 64
    cfg = MacConfig(8, 8, 16, True, True)
    alt = np.where(np.arange(k) % 2 == 0, 127, -128)
    cols_x = [
        alt,                                   # running sum changes sign every step (w = 1)
        np.zeros(k, int),                      # all zeros
        np.full(k, 127),                       # max positive
        np.full(k, -128),                      # with w = -128: +16384 every step -> wraps mod 2^16
        alt,
    ]
    cols_w = [np.ones(k, int), np.zeros(k, int), np.full(k, 127), np.full(k, -128), np.where(np.arange(k) % 3 == 0, -128, 127)]
    x, w = np.stack(cols_x, 1), np.stack(cols_w, 1)
    _assert_exact(x, w, cfg)
    sim = simulate_toggles(x, w, cfg)
    assert int(np.asarray(sim["accumulator"][:, 1]).sum()) == 0 and int(np.asarray(sum(sim[c][:, 1] for c in COMPONENTS)).sum()) == 0
    # alternating +127/-128 partial sums: S = 127, -1, 126, -2, ... : the sign flips every step
    assert np.all(np.asarray(sim["accumulator"][1:10, 0]) >= 8)
    # unsigned maxima overflow a 16-bit accumulator as well
    cu = MacConfig(8, 8, 16, False, False)
    _assert_exact(np.full((50, 2), 255), np.full((50, 2), 255), cu)


def test_realistic_statistics_relu_zeros_gaussian_per_channel_weights():
    import jax
    import jax.numpy as jnp

    from pannjax.quant import UniformQuantizer

    key = jax.random.key(0)
    a = jax.nn.relu(jax.random.normal(key, (64, 6)))                       # ~half zeros
    wf = jax.random.normal(jax.random.key(1), (64, 6)) * jnp.array([0.1, 1, 3, 0.5, 2, 0.01])
    qx = UniformQuantizer(4, signed=False, step_mode="max")
    qw = UniformQuantizer(4, signed=True, per_channel=True, step_mode="max", channel_axis=-1)
    x, w = np.asarray(qx.integer(a).codes), np.asarray(qw.integer(wf).codes)
    assert (x == 0).mean() > 0.3
    _assert_exact(x, w, MacConfig(4, 4, 24, False, True))


def test_weight_stationary_dataflow_matches_a_direct_count():
    cfg = MacConfig(4, 4, 16, False, True)
    rng = np.random.default_rng(3)
    n_out, k = 30, 9
    x = rng.integers(0, 16, (n_out, k))
    w = np.broadcast_to(rng.integers(-8, 8, (1, k)), (n_out, k))
    sim = simulate_toggles(x, w, cfg, dataflow="weight_stationary")
    psum = np.cumsum(x * w, axis=1)
    pc = lambda v, n: bin(int(v) & ((1 << n) - 1)).count("1")  # noqa: E731
    for kk in range(k):
        prev_s = prev_x = 0
        for o in range(n_out):
            assert int(sim["accumulator"][o, kk]) == pc(psum[o, kk] ^ prev_s, 16)
            assert int(sim["inputs"][o, kk]) == pc(x[o, kk] ^ prev_x, 4) + (pc(w[0, kk], 4) if o == 0 else 0)
            prev_s, prev_x = psum[o, kk], x[o, kk]


def test_totals_and_chunked_means_agree_with_per_operation_counts():
    cfg = MacConfig(5, 3, 24, True, True)
    x, w = _uniform(cfg, (33, 300), np.random.default_rng(7))
    per_op = simulate_toggles(x, w, cfg)
    counts = np.asarray(toggle_counts(x, w, cfg))
    for i, c in enumerate(COMPONENTS):
        assert counts[i].sum() == int(np.asarray(per_op[c]).sum())
    m = mean_toggles(x, w, cfg, chunk_units=128)  # 3 chunks, the last padded
    assert m["total"] == pytest.approx(counts.sum() / x.size, rel=1e-12)
    m2 = mean_toggles(x, w, cfg)
    assert m2 == m
    assert mean_toggles(x, w, cfg, count_partial_products=False)["multiplier"] == 0.0


def test_bad_inputs_give_one_line_errors():
    with pytest.raises(ConfigError, match="narrower"):
        MacConfig(8, 8, 12)
    with pytest.raises(ConfigError, match="x_bits=0"):
        MacConfig(0, 4)
    cfg = MacConfig(4, 4, 16, False, True)
    with pytest.raises(ConfigError, match="x codes span"):
        simulate_toggles(np.full((3, 2), 16), np.zeros((3, 2), int), cfg)
    with pytest.raises(ConfigError, match="dataflow"):
        simulate_toggles(np.zeros((3, 2), int), np.zeros((3, 2), int), cfg, dataflow="row_stationary")
    with pytest.raises(ConfigError, match="2-D"):
        simulate_toggles(np.zeros(3, int), np.zeros(3, int), cfg)
