"""The integer-only export: requantisation arithmetic against Python integers, whole programs against the
fake-quant evaluation (codes entering every layer identical), and experiments/export.py end to end on
trained digits networks, reloaded in a fresh process and from StableHLO."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pannjax.build import build_policy
from pannjax.errors import ConfigError
from pannjax.export import build_program, layer_inputs, load, load_stablehlo, run, run_codes, save
from pannjax.export.experiment import run_export
from pannjax.export.requant import multiply_round, quantize_bias, quantize_multiplier
from pannjax.models import build_model
from pannjax.nn import bound_layers
from pannjax.ops.integer import integer_contraction, wrap
from pannjax.runner import run_train

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")


# -- integer arithmetic ---------------------------------------------------------------------------

def test_multiply_round_is_exact_against_python_integers():
    rng = np.random.default_rng(0)
    n = 4000
    q = np.concatenate([rng.integers(-2**31, 2**31, n // 2), rng.integers(-3000, 3000, n // 2)])
    q[:3] = [-2**31, 2**31 - 1, 0]
    mult, k = quantize_multiplier(np.exp(rng.uniform(np.log(2**-30), np.log(2**20), n)))
    sign = rng.choice([-1, 1], n)
    offset = np.clip(rng.normal(0, 1, n) * np.exp(rng.uniform(0, 8, n)), -2.0 ** (60 - k), 2.0 ** (60 - k))
    bias_hi, bias_lo = quantize_bias(offset, k)
    got = np.asarray(multiply_round(jnp.asarray(q, jnp.int32), jnp.asarray(mult), jnp.asarray(k),
                                    jnp.asarray(sign, jnp.int32), jnp.asarray(bias_hi), jnp.asarray(bias_lo)))
    for i in range(n):
        b = int(bias_hi[i]) * 2**32 + int(bias_lo[i])
        assert b == round(offset[i] * 2.0 ** int(k[i]))
        v = int(sign[i]) * int(q[i]) * int(mult[i]) + b
        want = (v + ((1 << (int(k[i]) - 1)) if k[i] else 0)) >> int(k[i])
        assert int(got[i]) == max(-2**31, min(2**31 - 1, want)), i


def test_quantized_multiplier_is_normalised_and_close():
    m = np.array([1.0, 0.5, 0.3, 1e-7, 3.0, 2.0**-30])
    mult, k = quantize_multiplier(m)
    assert mult.dtype == np.int32 and np.all(mult >= 2**30)  # in [2^30, 2^31)
    np.testing.assert_allclose(mult / 2.0**k, m, rtol=2**-30)
    with pytest.raises(ConfigError, match="expected finite positive"):
        quantize_multiplier(np.array([0.0]))


def test_wrap_is_twos_complement_and_counts_overflows():
    acc = jnp.asarray([127, 128, -129, 300, -5], jnp.int32)
    wrapped, count = wrap(acc, 8)
    assert np.asarray(wrapped).tolist() == [127, -128, 127, 44, -5] and int(count) == 3
    wrapped, count = wrap(jnp.asarray([255, 256], jnp.int32), 8, signed=False)
    assert np.asarray(wrapped).tolist() == [255, 0] and int(count) == 1


@pytest.mark.parametrize("x_abs,w_abs", [(15, 7), (255, 127), (3000, 7), (100, 300)])  # int8, split, int32
@pytest.mark.parametrize("groups,strides,padding", [(1, (1, 1), "SAME"), (2, (2, 1), [(1, 0), (0, 2)]),
                                                    (4, (2, 2), "VALID")])
def test_integer_convolution_is_the_exact_integer_sum(x_abs, w_abs, groups, strides, padding):
    rng = np.random.default_rng(0)
    x = rng.integers(-x_abs, x_abs + 1, (2, 7, 6, 8))
    w = rng.integers(-w_abs, w_abs + 1, (3, 2, 8 // groups, 4))
    geometry = {"kind": "conv", "strides": strides, "padding": padding, "groups": groups,
                "x_abs": x_abs, "w_abs": w_abs}
    got = np.asarray(integer_contraction(jnp.asarray(x, jnp.int32), jnp.asarray(w, jnp.int32), geometry))
    want = jax.lax.conv_general_dilated(np.asarray(x, np.float64), np.asarray(w, np.float64), strides, padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)
    np.testing.assert_array_equal(got, np.asarray(want).astype(np.int64))
    xd, wd = x.reshape(-1, 8)[:, :6], w.reshape(-1, 4)[:6]
    got = integer_contraction(jnp.asarray(xd, jnp.int32), jnp.asarray(wd, jnp.int32),
                              {"kind": "dense", "x_abs": x_abs, "w_abs": w_abs})
    np.testing.assert_array_equal(np.asarray(got), xd @ wd)


# -- whole programs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,op,shape,kwargs", [
    ("digits_cnn", "mac", (8, 8, 1), {"width": 4}),
    ("digits_cnn", "shift", (8, 8, 1), {"width": 4}),
    ("digits_cnn", "bwn", (8, 8, 1), {"width": 4}),
    ("digits_cnn", "xnor", (8, 8, 1), {"width": 4}),
    ("resnet", "mac", (16, 16, 3), {"depth": 8, "width": 4}),  # residual adds, option-A slice + pad shortcuts
    ("shufflenet", "mac", (16, 16, 3), {"scale": 0.5, "stage_repeats": (1, 1, 1)}),  # split, concat, shuffle
])
def test_integer_program_reproduces_every_layers_codes(name, op, shape, kwargs):
    """Random weights and non-trivial BatchNorm statistics: the codes entering every layer equal those of the
    fake-quant evaluation and the logits agree to far below one output step."""
    quant = {"name": "pot" if op == "shift" else "uniform", "w_bits": 4, "x_bits": 4, "first_last": "int8"}
    model = build_model(name, num_classes=10, policy=build_policy(quant, {"name": op}), **kwargs)
    x = jax.random.uniform(jax.random.key(1), (6, *shape))
    v = model.init(jax.random.key(0), x, train=False)
    if "batch_stats" in v:
        v = {**v, "batch_stats": jax.tree_util.tree_map_with_path(
            lambda p, a: jnp.abs(a + 0.3) + 0.5 if "var" in str(p) else a + 0.1, v["batch_stats"])}
    program = build_program(model, v, x)
    codes = layer_inputs(program, x)
    layers = bound_layers(model, v, x, capture_inputs=True, train=False)
    assert set(codes) == {layer.path for layer in layers}
    for layer in layers:
        np.testing.assert_array_equal(codes[layer.path], np.asarray(layer.input_view().codes), err_msg=layer.path)
    fq = np.asarray(model.apply(v, x, train=False))
    logits = np.asarray(run(program, x))
    assert np.max(np.abs(logits - fq)) <= 1e-5 * np.max(np.abs(fq)) + 1e-7
    ints, stats = run_codes(program, x)
    assert ints.dtype == jnp.int32 and all(int(s[0]) == 0 for s in stats.values())


def test_a_batch_dependent_step_is_refused_with_one_line():
    quant = {"name": "uniform", "w_bits": 4, "x_bits": 4, "x_step_mode": "max"}
    model = build_model("digits_cnn", num_classes=10, policy=build_policy(quant, {"name": "mac"}), width=4)
    x = jnp.zeros((2, 8, 8, 1))
    v = model.init(jax.random.key(0), x, train=False)
    with pytest.raises(ConfigError, match="x_step_mode=lsq or fixed"):
        build_program(model, v, x)


# -- experiments/export.py on trained digits networks --------------------------------------------------

def _compose(name, *overrides):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose(name, overrides=list(overrides))


def _train(tmp, quant, op):
    run_dir = tmp / f"train_{quant}_{op}"
    cfg = _compose("train", f"quant={quant}", f"op={op}", "trainer.epochs=1", "trainer.progress=false",
                   "trainer.tensorboard=false", "trainer.checkpoint=true", "model.width=8")
    run_train(cfg, run_dir)
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    return run_dir


def _export(checkpoint, run_dir, *overrides):
    cfg = OmegaConf.to_container(_compose("export", f"checkpoint={checkpoint}", *overrides), resolve=True)
    cfg.pop("hydra", None)
    return run_export(cfg, run_dir)


class _Runs(dict):
    """Training runs made on first use (a test process trains only the ones its tests need)."""

    def __init__(self, tmp):
        super().__init__()
        self.tmp = tmp

    def __missing__(self, combo):
        self[combo] = _train(self.tmp, *combo)
        return self[combo]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    return tmp, _Runs(tmp)


#: the integer codes of a saved program by the runner, by its StableHLO file and (onnx) by onnxruntime
_RELOAD = """import numpy as np, pannjax.export as ex
def codes(path, x, onnx):
    out = [ex.run_codes(ex.load(path), x)[0], ex.load_stablehlo(path).call(x)[0]]
    if onnx:
        import onnxruntime as ort
        out.append(ort.InferenceSession(path + '/model.onnx').run(['codes'], {'images': x})[0])
    return np.stack([np.asarray(o) for o in out])
"""
_FRESH = {("pot", "shift")}  # reloaded in a fresh process


@pytest.mark.xdist_group("test_export.shared_runs")  # one worker: the runs these tests share are trained once
@pytest.mark.parametrize("combo,convert", [(("uniform", "mac"), "none"), (("pot", "shift"), "none"),
                                           (("uniform", "bwn"), "none"),
                                           (("float", "mac"), "pann")])
def test_export_reloads_with_the_reported_accuracy(runs, combo, convert):
    tmp, checkpoints = runs
    out = tmp / f"export_{'_'.join(combo)}"
    res = _export(checkpoints[combo], out, f"convert={convert}", "budget_bits=2", "simulate=false")
    assert res["argmax_agreement"] == 1.0 and res["test_accuracy"] == res["fake_quant_accuracy"]
    if convert == "none":  # one cost engine: the training run's energy and toggles for the same network
        trained = json.loads((checkpoints[combo] / "results.json").read_text())
        assert (res["energy_pj"], res["toggles"]) == pytest.approx((trained["energy_pj"], trained["toggles"]), rel=1e-9)
    if convert == "none":  # the training run's own figure
        assert res["test_accuracy"] == res["reported_accuracy"]
    if convert == "pann":  # PANN's repeated additions between the 8-bit first and last layers
        assert [row["datapath"] for row in res["layers"]] == ["mac", "additions", "additions", "mac"]
    onnx = combo[1] in ("mac", "bwn") and "pann" not in (convert, combo[0])  # MAC-like datapaths only
    assert res["overflows"] == 0 and set(res["files"]) == {"program.json", "weights.safetensors", "model.stablehlo",
                                                           *(["model.onnx"] if onnx else [])}
    assert res["onnx"] == "model.onnx written" if onnx else res["onnx"].startswith("model.onnx not written: layer")
    program_dir = Path(res["program"])
    meta = json.loads((program_dir / "program.json").read_text())
    assert meta["steps"][-1]["op"] == "output"
    if combo[1] in ("bwn", "xnor"):  # binary weights stored one bit each
        from safetensors.numpy import load_file

        stored = load_file(str(program_dir / "weights.safetensors"))
        assert len(meta["packed"]) == 2
        assert all(stored[k].dtype == np.uint8 and stored[k].size == -(-np.prod(shape) // 8)
                   for k, shape in meta["packed"].items())
    from pannjax.data import load_dataset

    images = np.asarray(load_dataset("digits").test_images[:64], np.float32)
    if combo in _FRESH:  # a fresh process: nothing of this one's state is needed
        np.save(tmp / "images.npy", images)
        script = _RELOAD + ("import sys\n"
                            "np.save(sys.argv[3], codes(sys.argv[1], np.load(sys.argv[2]), sys.argv[4] == '1'))")
        subprocess.run([sys.executable, "-c", script, str(program_dir), str(tmp / "images.npy"),
                        str(tmp / "codes.npy"), "1" if onnx else "0"], check=True, capture_output=True)
        reloaded = np.load(tmp / "codes.npy")
    else:
        namespace = {}
        exec(_RELOAD, namespace)
        reloaded = namespace["codes"](str(program_dir), images, onnx)
    here, _ = run_codes(load(program_dir), images)
    for other in reloaded:  # the reloaded runner, StableHLO (and onnxruntime)
        np.testing.assert_array_equal(other, np.asarray(here))


_FULLY_CHECKED = {("uniform", "mac"), ("pot", "shift"), ("uniform", "bwn")}
_REFUSED = {("pann", "adder"), ("pann", "mf")}  # counts run as additions, or re-rounded to powers of two or signs


#: with the combinations above, every datapath and every quantizer's integer view at least once: PANN counts as
#: additions, re-rounded to powers of two and to signs; APoT's sums of powers of two; both |x - w| datapaths
_COVERING = {("pann", "mac"), ("pann", "shift"), ("pann", "bwn"), ("apot", "shift"), ("uniform", "xnor"),
             ("uniform", "adder"), ("pot", "mf")}


@pytest.mark.parametrize("combo", [
    combo if combo in _COVERING else pytest.param(combo, marks=pytest.mark.slow)
    for combo in sorted({(q, o) for q in ("uniform", "pot", "apot", "pann")
                         for o in ("mac", "shift", "bwn", "xnor", "adder", "mf")} - _FULLY_CHECKED - _REFUSED)])
def test_every_other_trainable_combination_exports_with_the_reported_accuracy(runs, combo):
    """The integer program of the trained network (built in memory: files and reload are checked above)
    classifies the test set exactly as the run reported, without an overflow. The default suite trains the
    combinations that cover every datapath and quantizer (`_COVERING`); `pytest -m slow` trains the others."""
    from pannjax.export.experiment import _evaluate, _trained_network

    tmp, checkpoints = runs
    cfg = OmegaConf.to_container(_compose("export", f"checkpoint={checkpoints[combo]}"), resolve=True)
    model, variables, dataset, reported = _trained_network(cfg)
    program = build_program(model, variables, jnp.asarray(dataset.test_images[:2]))
    ev = _evaluate(model, variables, program, dataset.test_images, dataset.test_labels, 512)
    assert ev["argmax_agreement"] == 1.0 and all(s[0] == 0 for s in ev["stats"].values())
    assert ev["test_accuracy"] == ev["fake_quant_accuracy"] == reported
    datapaths = [row["datapath"] for row in program.layers]
    if combo[0] == "pann":  # counts between the 8-bit first and last layers: additions, or re-rounded
        assert datapaths[1:3] == [{"mac": "additions"}.get(combo[1], combo[1].replace("bwn", "sign_select"))] * 2
    if combo[1] in ("adder", "mf"):  # separately learned steps: weights on a 2^-16-finer activation grid
        assert [row.get("grid_bits") for row in program.layers] == [None, 16, 16, None]
        assert datapaths[1:3] == [{"adder": "absdiff"}.get(combo[1], "mf")] * 2


def _power(checkpoint, run_dir, *overrides):
    from pannjax.export.power import run_program_power

    cfg = OmegaConf.to_container(_compose("power", f"checkpoint={checkpoint}", *overrides), resolve=True)
    cfg.pop("hydra", None)
    return run_program_power(cfg, run_dir)


@pytest.mark.xdist_group("test_export.shared_runs")  # one worker: the runs these tests share are trained once
def test_narrow_accumulators_overflow_visibly_and_auto_widths_do_not(runs, tmp_path):
    """B = 12 overflows (counted, and the predictions change); acc_bits=auto does not. The auto export's
    power is then re-priced by experiments/power.py checkpoint=<program dir>: the export's own figures (same
    network, widths, streams and seed); a program its network no longer gives, or a dir that is no export,
    is refused in one line."""
    from safetensors.numpy import load_file, save_file

    tmp, checkpoints = runs
    narrow = _export(checkpoints[("pot", "shift")], tmp_path / "narrow", "acc_bits=12", "simulate=false")
    shift_layers = [row for row in narrow["layers"] if row["datapath"] == "shift"]
    assert all(row["overflows"] > 0 and row["observed_acc_bits"] > 12 for row in shift_layers)
    assert narrow["argmax_agreement"] < 1.0  # wrap-around is computed, not hidden
    auto = _export(checkpoints[("pot", "shift")], tmp_path / "auto", "acc_bits=auto", "power_batch=8")
    assert auto["overflows"] == 0 and auto["test_accuracy"] == auto["fake_quant_accuracy"]
    for row in auto["layers"]:
        assert row["acc_bits"] == row["worst_case_acc_bits"] >= row["observed_acc_bits"]
        assert row["toggles_per_mac_simulated"] > 0  # gate-level, on the exported streams
    assert auto["toggles"] < auto["toggles_at_32"]

    res = _power(Path(auto["program"]), tmp_path / "power", "power_batch=8")
    assert res["mode"] == "network" and res["acc_bits"] == "auto" and res["images"] == 8
    assert (res["energy_pj"], res["toggles"], res["test_accuracy"]) == (auto["energy_pj"], auto["toggles"],
                                                                       auto["test_accuracy"])
    simulated = {row["path"]: row["toggles_per_mac_simulated"] for row in auto["layers"]}
    assert {row["layer"]: row["toggles_per_mac_simulated"] for row in res["layers"]} == simulated
    assert (tmp_path / "power" / "power_report.csv").is_file()
    with pytest.raises(ConfigError, match="a train run, not a completed export; export first"):
        _power(checkpoints[("pot", "shift")], tmp_path / "p1")
    with pytest.raises(ConfigError, match="not a run dir of experiments/export.py"):
        _power(tmp_path, tmp_path / "p2")
    weights = Path(auto["program"]) / "weights.safetensors"
    arrays = load_file(str(weights))
    name = next(k for k, v in arrays.items() if v.dtype.kind == "i" and v.size > 1)
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] += 1
    save_file(arrays, str(weights))
    with pytest.raises(ConfigError, match="is not what checkpoint=.* gives now"):
        _power(tmp_path / "auto", tmp_path / "p3")


@pytest.mark.xdist_group("test_export.shared_runs")  # one worker: the runs these tests share are trained once
def test_every_entry_point_prices_one_network_on_an_accelerator(runs, tmp_path):
    """One trained 4-bit MAC network on accelerator=edge: experiments/export.py's and experiments/power.py
    checkpoint=<export>'s results, the power report experiments/train.py writes, the ENOS energy table,
    PANN's power summary and scripts/pot_energy.py's engine totals give the same energy per example -- in
    all, its arithmetic and its data movement -- and the latency; scripts/reproduce.py's table shows the
    split after energy_pj."""
    import importlib.util

    from pannjax.hw.cost import Pricing
    from pannjax.hw.report import build_report
    from pannjax.pann.power import network_toggles, summarize
    from pannjax.reproduce import table_rows
    from pannjax.results import SYSTEM_KEYS
    from pannjax.runner import accelerator_config, build_model_for
    from pannjax.search.energy import _layer_energies
    from pannjax.train.checkpoint import restore_run_variables

    tmp, checkpoints = runs
    on_edge = ("accelerator=edge", f"accelerator.cache_dir={tmp_path / 'cache'}", "accelerator.lpf_limit=2")
    exported = _export(checkpoints[("uniform", "mac")], tmp_path / "export", "simulate=false", "power_batch=2",
                       *on_edge)
    power = _power(Path(exported["program"]), tmp_path / "power", "power_batch=2", *on_edge)
    keys = ("energy_pj", "energy_compute_pj", "energy_memory_pj", "latency_cycles")
    figures = {k: exported[k] for k in keys}
    assert figures["energy_memory_pj"] > figures["energy_compute_pj"] > 0 and figures["latency_cycles"] > 0
    assert figures["energy_pj"] == pytest.approx(figures["energy_compute_pj"] + figures["energy_memory_pj"])
    assert {k: power[k] for k in keys} == pytest.approx(figures, rel=1e-12)

    cfg, variables, _ = restore_run_variables(checkpoints[("uniform", "mac")])
    model = build_model_for(cfg, 10)
    accelerator = accelerator_config(OmegaConf.to_container(_compose("power", *on_edge), resolve=True))
    sample = jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32)
    report = build_report(model, variables, sample, simulate=False, accelerator=accelerator)
    assert {k: report.energy_record()[k] for k in keys} == pytest.approx(figures, rel=1e-12)
    pricing = Pricing.make(toggle_model=None, accelerator=accelerator)
    # the search's column of this network
    table = _layer_energies(lambda policy: model.clone(policy=policy), model.policy, sample, pricing)
    assert table == pytest.approx({l.path: l.energy_total_pj for l in report.layers}, rel=1e-12)
    pann = summarize(network_toggles(model, variables, sample, accelerator=accelerator))
    assert {k: pann[k] for k in keys} == pytest.approx(figures, rel=1e-12)
    spec = importlib.util.spec_from_file_location("pot_energy", ROOT / "scripts" / "pot_energy.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    engine = script.engine_energy(bound_layers(model, variables, sample), 1.0, pricing)
    assert {k: engine[k] for k in keys} == pytest.approx(figures, rel=1e-12)
    _, columns = table_rows([exported, power], {"columns": ["entry", "energy_pj", "test_accuracy"]})
    assert columns == ["entry", "energy_pj", *SYSTEM_KEYS, "test_accuracy"]


@pytest.mark.xdist_group("test_export.shared_runs")  # one worker: the runs these tests share are trained once
def test_bad_export_requests_fail_with_one_line(runs, tmp_path):
    tmp, checkpoints = runs
    with pytest.raises(ConfigError, match="float run .* convert=pann"):
        _export(checkpoints[("float", "mac")], tmp_path / "a")
    with pytest.raises(ConfigError, match="acc_bits=1: expected"):
        _export(checkpoints[("uniform", "mac")], tmp_path / "b", "acc_bits=1")
    with pytest.raises(ConfigError, match="power_batch=0: expected a whole number of test images >= 1"):
        _export(checkpoints[("uniform", "mac")], tmp_path / "b", "power_batch=0")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an empty directory"):
        _export(checkpoints[("uniform", "mac")], tmp_path / "c", f"out={tmp_path / 'full'}")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_save_refuses_to_overwrite(tmp_path):
    quant = {"name": "uniform", "w_bits": 4, "x_bits": 4}
    model = build_model("digits_cnn", num_classes=10, policy=build_policy(quant, {"name": "mac"}), width=4)
    x = jnp.zeros((2, 8, 8, 1))
    program = build_program(model, model.init(jax.random.key(0), x, train=False), x)
    save(program, tmp_path / "p")
    with pytest.raises(ConfigError, match="not an empty directory"):
        save(program, tmp_path / "p")
    assert load_stablehlo(tmp_path / "p").in_avals[0].shape[1:] == (8, 8, 1)


def test_gate_level_power_runs_on_the_programs_own_streams():
    """The simulator consumes the codes the program computes: equal to the fake-quant codes, so the same
    figures as the captured batch gives; other streams (all zeros) give other figures."""
    from pannjax.hw.report import build_report

    quant = {"name": "uniform", "w_bits": 4, "x_bits": 4}
    model = build_model("digits_cnn", num_classes=10, policy=build_policy(quant, {"name": "mac"}), width=4)
    x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
    v = model.init(jax.random.key(0), x, train=False)
    streams = layer_inputs(build_program(model, v, x), x)
    kw = dict(simulate=True, max_sim_macs=4096)
    captured, program = (build_report(model, v, x, **kw).rows(),
                         build_report(model, v, x, layer_inputs=streams, **kw).rows())
    quiet = build_report(model, v, x, layer_inputs={k: np.zeros_like(s) for k, s in streams.items()}, **kw).rows()
    for a, b, z in zip(captured, program, quiet):
        assert a["toggles_per_mac_simulated"] == b["toggles_per_mac_simulated"] > z["toggles_per_mac_simulated"]


@pytest.mark.parametrize("geometry", [{"kind": "conv", "strides": (2, 1), "padding": [(1, 1), (0, 1)], "groups": 2},
                                      {"kind": "dense"}])
def test_the_shift_datapath_is_the_reference_shift_accumulate(geometry):
    from pannjax.ops.integer import run_datapath
    from pannjax.ops.shift import shift_accumulate, shift_conv

    rng = np.random.default_rng(3)
    conv = geometry["kind"] == "conv"
    x = jnp.asarray(rng.integers(0, 16, (2, 6, 5, 4) if conv else (5, 12)), jnp.int32)
    shape = (3, 3, 2, 6) if conv else (12, 6)
    sign, shift = jnp.asarray(rng.integers(-1, 2, shape), jnp.int32), jnp.asarray(rng.integers(0, 8, shape), jnp.int32)
    (got, _), = run_datapath("shift", x, {"sign": sign, "shift": shift}, {"max_shift": 7}, {**geometry, "x_abs": 15})
    want = shift_conv(x, sign, shift, 7, geometry["strides"], geometry["padding"], geometry["groups"]) if conv \
        else shift_accumulate(x, sign, shift, 7)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("geometry", [{"kind": "conv", "strides": (2, 1), "padding": [(1, 1), (0, 1)], "groups": 2},
                                      {"kind": "dense"}])
def test_the_adder_and_mf_datapaths_are_the_operators_on_a_common_grid(geometry):
    """Weights and activations on one grid (here the weight step is 3/4 of the activation step: exact at
    k = 2): the integer datapaths equal AdderNet's -sum |x - w| and MF's sum sign(x)|w| + sign(w)|x| of the
    real operands, divided by one accumulator unit."""
    from pannjax.ops.adder import AdderOperator
    from pannjax.ops.integer import input_grid, run_datapath
    from pannjax.ops.mf import MfOperator
    from pannjax.quant.uniform import UniformQuantizer

    rng = np.random.default_rng(4)
    conv = geometry["kind"] == "conv"
    x = rng.integers(-8, 8, (2, 6, 5, 4) if conv else (5, 12)).astype(np.int32)
    w = rng.integers(-7, 8, (3, 3, 2, 6) if conv else (12, 6)).astype(np.int32)
    s_x, s_w = 0.5, 0.375
    for op in (AdderOperator(), MfOperator()):
        quantizer = UniformQuantizer(bits=4, step_mode="fixed", fixed_step=s_w)
        weights = op.integer_weights(quantizer, w * s_w, s_x, 8)
        assert weights.attrs["grid_bits"] == 2 and np.all(weights.scale == 0.25)
        (acc, _), = run_datapath(weights.datapath, jnp.asarray(x), weights.arrays, weights.attrs,
                                 {**geometry, "x_abs": 8, "w_abs": 32})
        xr, wr = jnp.asarray(x * s_x, jnp.float32), jnp.asarray(w * s_w, jnp.float32)
        want = op.conv(xr, wr, geometry["strides"], geometry["padding"], geometry["groups"]) if conv \
            else op.dense(xr, wr)
        np.testing.assert_array_equal(np.asarray(acc) * s_x * 0.25, np.asarray(want))
        assert np.all(np.abs(np.asarray(acc)) <= np.asarray(weights.acc_limit) * 8)
    g, k = input_grid(w, 0.3, 0.5, 8)  # an inexact ratio: the finest grid that fits, error <= half a unit
    assert k == 16 and np.max(np.abs(g * 2.0**-16 * 0.5 - w * 0.3)) <= 0.5 * 2.0**-16 * 0.5
    assert input_grid(w, 0.5, 0.5, 8)[1] == 0  # one shared step: the codes themselves
