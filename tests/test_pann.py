"""PANN: the additions quantizer, the budget solver, BN folding, conversion of a trained checkpoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from pannjax.errors import ConfigError
from pannjax.hw.bitflips import bitflips_mac
from pannjax.pann import fold_batchnorm, load_float_run, solve_budget
from pannjax.pann.experiment import parse_bits, run_pann
from pannjax.pann.power import budget_mac_toggles
from pannjax.quant.pann import PannQuantizer, repeated_addition_dot
from pannjax.runner import run_train

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")


def _compose(name, *overrides):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(name, overrides=list(overrides))
    return cfg


#: one xdist worker runs the whole module (`--dist loadgroup`): its module fixture is made once
pytestmark = pytest.mark.xdist_group("test_pann")


@pytest.fixture(scope="module")
def float_run(tmp_path_factory):
    """A tiny float digits CNN (width 8, 2 epochs) trained by the real training entry point."""
    run_dir = tmp_path_factory.mktemp("float_run")
    cfg = _compose("train", "trainer.epochs=2", "trainer.progress=false", "trainer.tensorboard=false",
                   "model.width=8")
    run_train(cfg, run_dir)
    (run_dir / ".hydra").mkdir()
    from omegaconf import OmegaConf

    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    return run_dir


def _pann_cfg(checkpoint, *overrides):
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(_compose("pann", f"checkpoint={checkpoint}", *overrides), resolve=True)
    cfg.pop("hydra", None)
    return cfg


# -- quantizer --------------------------------------------------------------------------------------

@pytest.mark.parametrize("accumulation", ["split", "signed"])
def test_repeated_additions_reproduce_the_integer_dot_product(accumulation):
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(40, 6)), jnp.float32)
    view = PannQuantizer(additions=3.0, accumulation=accumulation).integer(w)
    w_int = np.asarray(view.codes)
    x_int = rng.integers(0, 16, size=(5, 40))  # unsigned 4-bit activations
    y, additions = repeated_addition_dot(x_int, w_int, accumulation)
    np.testing.assert_array_equal(y, x_int.astype(np.int64) @ w_int.astype(np.int64))
    assert additions == 5 * int(np.abs(w_int).sum())
    np.testing.assert_allclose(np.asarray(PannQuantizer(additions=3.0).quantize(w)),
                               w_int * np.asarray(view.scale), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("additions", [0.3, 1.0, 2.2, 5.0, 11.5])
@pytest.mark.parametrize("per_channel", [False, True])
def test_mean_additions_per_element_equals_the_budget(additions, per_channel):
    w = jax.random.laplace(jax.random.key(1), (3, 3, 32, 64)) * 0.05
    codes = np.asarray(PannQuantizer(additions=additions, per_channel=per_channel).integer(w).codes)
    means = np.abs(codes).reshape(-1, 64).mean(axis=0) if per_channel else np.abs(codes).mean()
    assert np.all(np.abs(means - additions) <= 0.02 * additions), (means, additions)


@pytest.mark.parametrize("per_channel", [False, True])
def test_the_solved_step_keeps_every_weight_off_a_rounding_boundary(per_channel):
    """The bisection ends where one weight sits on |w|/s = n + 1/2; the returned step lies inside the interval
    of equal counts, so the codes are the same eagerly, compiled, and computed as |w| * (1/s)."""
    q = PannQuantizer(additions=2.0, per_channel=per_channel)
    rng = np.random.default_rng(0)
    for shape in [(3, 3, 8, 16), (3, 3, 1, 8), (128, 10), (3, 3, 16, 16)] * 5:
        w = jnp.asarray(rng.normal(size=shape).astype(np.float32) * rng.uniform(0.01, 1.0))
        view = q.integer(w)
        ratio = np.abs(np.asarray(w, np.float64)) / np.asarray(view.scale, np.float64)
        n = np.abs(np.asarray(view.codes))
        live = n < q.q_max
        margin = np.abs(ratio - (np.floor(ratio) + 0.5))[live] / (np.floor(ratio) + 0.5)[live]
        assert margin.min() > 1e-6  # float32 resolves 6e-8
        np.testing.assert_array_equal(jax.jit(q.quantize)(w), q.quantize(w))
        np.testing.assert_array_equal(view.codes, np.clip(np.round(np.asarray(w) * (1 / np.asarray(view.scale))),
                                                          -q.q_max, q.q_max))


def test_straight_through_gradient_and_bad_budget():
    w = jax.random.normal(jax.random.key(2), (64, 10))
    g = jax.random.normal(jax.random.key(3), (64, 10))
    grad = jax.grad(lambda v: jnp.sum(PannQuantizer(additions=2.0).quantize(v) * g))(w)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(g), rtol=1e-6)  # inside the range: identity
    with pytest.raises(ConfigError, match="additions"):
        PannQuantizer(additions=0.0)
    with pytest.raises(ConfigError, match="accumulation"):
        PannQuantizer(accumulation="both")


def test_solver_meets_the_budget_and_parses_bit_lists():
    registers = solve_budget(2, False, x_bits=3, model="registers")
    budget = bitflips_mac(2, 2, 32, False, 256).total  # independent: the 2-bit unsigned MAC itself
    assert registers.budget_toggles_per_mac == pytest.approx(budget, rel=1e-9)
    assert registers.pann_toggles_per_mac == pytest.approx(budget, rel=1e-3)
    assert 1.0 < registers.additions < 4.0  # a 3-bit addition costs a fraction of a 2-bit MAC
    choice = solve_budget(2, False, x_bits=3)  # the gate-level model (default)
    assert choice.pann_toggles_per_mac == pytest.approx(choice.budget_toggles_per_mac, rel=1e-3)
    assert choice.budget_toggles_per_mac > 2 * budget  # real logic toggles well above the registers
    assert choice.additions < registers.additions  # ... and PANN gets fewer additions at that budget
    absolute = solve_budget(toggles_per_mac=10.0, x_bits=4)
    assert absolute.pann_toggles_per_mac == pytest.approx(10.0, rel=1e-3)
    assert absolute.additions > solve_budget(toggles_per_mac=5.0, x_bits=4).additions
    assert parse_bits("2,3,4", "budget_bits") == [2, 3, 4] and parse_bits([2, 4], "b") == [2, 4]
    with pytest.raises(ConfigError):
        parse_bits("two", "budget_bits")


# -- conversion ------------------------------------------------------------------------------------

def test_batchnorm_folding_preserves_outputs(float_run):
    run = load_float_run(float_run)
    images = jnp.asarray(run.dataset.test_images[:64])
    folded = fold_batchnorm(run.model, run.variables, images[:2])
    before = run.model.apply(run.variables, images, train=False)
    after = run.model.apply(folded, images, train=False)
    np.testing.assert_allclose(np.asarray(after), np.asarray(before), rtol=1e-4, atol=1e-4)
    k0 = np.asarray(run.variables["params"]["conv1"]["kernel"])
    k1 = np.asarray(folded["params"]["conv1"]["kernel"])
    assert not np.allclose(k0, k1)  # the BN scale went into the kernel
    assert np.allclose(np.asarray(folded["batch_stats"]["conv1_bn"]["mean"]), 0.0)


def test_convert_end_to_end_meets_budget_and_writes_results(float_run, tmp_path):
    out = tmp_path / "pann"
    res = run_pann(_pann_cfg(float_run, "budget_bits=[2,4]", "calibration_batches=2"), out)
    on_disk = json.loads((out / "results.json").read_text())
    assert [b["budget_bits"] for b in on_disk["budgets"]] == [2, 4]
    # digits CNN, width 8: conv1 16 outputs/position x 16 positions, fan-in 3*3*8; conv2 fan-in 3*3*16
    layers = [(16 * 16 * 72, 72), (16 * 16 * 144, 144)]
    for entry in res["budgets"]:
        b = entry["budget_bits"]
        budget = sum(m * budget_mac_toggles(b, False, f, 32, "gates") for m, f in layers)
        assert entry["pann"]["toggles"] == pytest.approx(budget, rel=0.03)
        # b x b unsigned MACs split over two half-length accumulators plus a subtraction: ~5 % above the budget
        assert entry["uniform_same_power"]["toggles"] == pytest.approx(budget, rel=0.08)
        assert entry["uniform_same_bits"]["toggles"] > budget  # two's complement costs more (PANN Sec. 3)
        for key in ("pann", "uniform_same_bits", "uniform_same_power"):
            assert 0.0 <= entry[key]["accuracy"] <= 1.0
        realised = [l["additions"] for l in entry["pann"]["layers"] if l["kind"] == "pann"]
        assert len(realised) == 2 and all(abs(r - entry["pann"]["additions"]) <= 0.02 * r for r in realised)
    assert res["budgets"][1]["pann"]["accuracy"] > 0.5  # 4-bit budget on a trained CNN on real digits


def test_sweep_writes_table_and_plot(float_run, tmp_path):
    """The deployment-time sweep on the edge accelerator, plotted against energy: the data movement of a PANN
    network depends on its operand widths, not on R, so more additions add compute energy only."""
    out = tmp_path / "sweep"
    res = run_pann(_pann_cfg(float_run, "mode=sweep", "calibration_batches=1", "sweep.x_bits=[3]",
                             "sweep.additions=[1,4]", "sweep.uniform_bits=[2,4]", "sweep.axis=energy",
                             "accelerator=edge", f"accelerator.cache_dir={tmp_path / 'cache'}",
                             "accelerator.lpf_limit=2"), out)
    assert {p.name for p in out.iterdir()} >= {"sweep.csv", "sweep.md", "sweep.png", "results.json"}
    pann = [r for r in res["rows"] if r["method"] == "pann"]
    assert len(pann) == 2 and pann[0]["toggles"] < pann[1]["toggles"]  # more additions, more power
    assert pann[0]["energy_memory_pj"] == pann[1]["energy_memory_pj"] > 0
    assert pann[0]["energy_memory_pj"] < pann[0]["energy_pj"] < pann[1]["energy_pj"]
    assert len([r for r in res["rows"] if r["method"].startswith("uniform")]) == 4
    assert "with data movement on edge" in (out / "sweep.md").read_text()
    with pytest.raises(ConfigError, match=r"^sweep.axis='watts': expected toggles \(bit flips\) or energy"):
        run_pann(_pann_cfg(float_run, "mode=sweep", "sweep.axis=watts"), tmp_path / "bad")


def test_missing_checkpoint_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="config.yaml"):
        load_float_run(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "pann.py"), f"checkpoint={tmp_path}/nope",
                           f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "checkpoint" in errors[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize("first_last", ["int8", "float", "same"])
def test_pann_power_is_within_3_percent_of_its_budget_in_every_first_last_mode(float_run, tmp_path, first_last):
    """With first_last=same the stem's input (the image) is signed: the solver costs it as it runs
    (sign-magnitude split accumulation), so the converted network meets its budget there too."""
    res = run_pann(_pann_cfg(float_run, "budget_bits=[2,3]", "calibration_batches=1", f"first_last={first_last}"),
                   tmp_path / first_last)
    for label in ("2bit", "3bit"):
        assert res["summary"][label]["pann_toggles_over_budget"] == pytest.approx(1.0, abs=0.03), label


def test_pann_budget_holds_on_an_mlp_with_signed_inputs():
    import flax.linen as fnn

    from pannjax.nn import QDense, bound_layers
    from pannjax.pann import network_toggles, pann_policy, summarize
    from pannjax.pann.budget import Layer

    class SignedMLP(fnn.Module):
        policy: object

        @fnn.compact
        def __call__(self, x, train=False):
            x = QDense(48, input_signed=True, **self.policy.at(self, "fc1"))(x)
            x = QDense(32, **self.policy.at(self, "fc2"))(fnn.relu(x))
            return QDense(10, **self.policy.at(self, "fc3"))(fnn.relu(x))

    x = jax.random.normal(jax.random.key(0), (64, 40))  # zero-mean: half the first layer's inputs are negative
    probe = SignedMLP(pann_policy(4, 2.0, first_last="same"))
    variables = probe.init(jax.random.key(1), x)
    layers = [Layer(l.macs, l.contraction.fan_in, l.input_signed) for l in bound_layers(probe, variables, x[:1])]
    assert [l.x_signed for l in layers] == [True, False, False]
    for bits in (2, 4):
        choice = solve_budget(bits, False, layers=layers)
        model = SignedMLP(pann_policy(choice.x_bits, choice.additions, per_channel=True, first_last="same"))
        s = summarize(network_toggles(model, model.init(jax.random.key(2), x), x[:1]))
        budget = choice.budget_toggles_per_mac * sum(l.macs for l in layers)
        assert s["pann_toggles"] == pytest.approx(budget, rel=0.03), bits
