"""Bad input is one line naming the full dotted key: each case of the four entry points (train, search,
pann, power) fails at set-up with a `ConfigError` whose single-line message starts with the key, before
anything is written to the run dir; the entry points turn it into that one line on stderr and exit
status 2 (`exit_on_config_error`, checked once per entry point through the real command)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pannjax.errors import ConfigError
from pannjax.runner import run_train
from pannjax.schema import compose_checked

ROOT = Path(__file__).resolve().parents[1]

TRAIN = [
    ("seed=abc", "seed='abc': expected a whole number"),
    ("seed=1.5", "seed=1.5: expected a whole number"),
    ("trainer.epochs=1.5", "trainer.epochs=1.5: expected a whole number"),
    ("trainer.epochs=two", "trainer.epochs='two': expected a whole number"),
    ("trainer.epochs=0", "trainer.epochs=0: expected a whole number >= 1"),
    ("trainer.batch_size=64.5", "trainer.batch_size=64.5: expected a whole number"),
    ("trainer.batch_size=0", "trainer.batch_size=0: expected a whole number >= 1"),
    ("trainer.eval_batch_size=-1", "trainer.eval_batch_size=-1: expected a whole number >= 1"),
    ("trainer.keep_checkpoints=0", "trainer.keep_checkpoints=0: expected a whole number >= 1"),
    ("trainer.stop_after_epochs=-1", "trainer.stop_after_epochs=-1: expected a whole number >= 1"),
    ("trainer.stop_after_epochs=0", "trainer.stop_after_epochs=0: expected a whole number >= 1"),
    ("trainer.log_every=0", "trainer.log_every=0: expected a whole number >= 1"),
    ("trainer.resume=maybe", "trainer.resume='maybe': expected true or false"),
    ("trainer.checkpoint=often", "trainer.checkpoint='often': expected true or false"),
    ("model.width=0", "model.width=0: expected a whole number >= 1"),
    ("model.width=2.5", "model.width=2.5: expected a whole number >= 1"),
    ("trainer.init_from=/missing/run", "trainer.init_from=/missing/run: no .hydra/config.yaml there"),
    ("trainer.batch_size=100000", "trainer.batch_size=100000 is larger than the 1437 training examples"),
    ("+colour=red", "colour is not a known top-level option"),
    ("quant=uniform quant.x_bits=0", "quant.x_bits=0: uniform quantization needs an integer in 1..16"),
    ("quant=uniform quant.w_bits=99", "quant.w_bits=99: uniform quantization needs an integer in 1..16"),
    ("quant=pot quant.w_bits=7", "quant.w_bits=7: power-of-two quantization needs an integer in 2..5"),
    ("layers=[{pattern:nomatch,op:{name:shift}}]",
     "layers[0].pattern='nomatch' matches no layer of the model; its layers: stem, conv1, conv2, head"),
    ("layers=[{pattern:'conv[',op:{name:shift}}]", "layers[0].pattern='conv[' is not a regular expression"),
    ("objective=nope", "objective='nope' is not a results.json key of train runs"),
    ("objective=[test_accuracy,energy_pJ]", "objective='energy_pJ' is not a results.json key of train runs"),
    ("op.name=nope", "op.name='nope' is unknown; available: adder, bwn, mac, mf, shift"),
    ("+op.foo=1", "op.foo is not a known option of operator 'mac'"),
    ("trainer.optimizer.name=rmsprop", "trainer.optimizer.name='rmsprop': expected 'sgd' or 'adam'"),
    ("trainer.optimizer.learning_rate=0", "trainer.optimizer.learning_rate=0.0: must be > 0"),
    ("trainer.optimizer.schedule=linear", "trainer.optimizer.schedule='linear': expected cosine, step or constant"),
    ("trainer.optimizer.momentum=-1", "trainer.optimizer.momentum=-1.0: expected a value in [0, 1)"),
    ("trainer.optimizer.warmup_epochs=-1", "trainer.optimizer.warmup_epochs=-1.0: must be >= 0"),
    ("trainer.optimizer.step_gamma=2", "trainer.optimizer.step_gamma=2.0: expected a factor in (0, 1]"),
    ("+trainer.optimizer.beta=1", "trainer.optimizer.beta is not a known option"),
    ("+trainer.foo=1", "trainer.foo is not a known option; valid: batch_size, checkpoint, epochs"),
    ("+model.foo=1", "model.foo is not an option of model 'digits_cnn'; valid: width"),
    ("data.name=nope", "data.name='nope' is not a known data set"),
]


def _cfg(*overrides, name="train", base=("trainer.progress=false", "model.width=8")):
    """The composed config, as the entry point composes it (`compose_checked`: a value Hydra cannot
    compose onto the schema is the same one-line ConfigError)."""
    return compose_checked(name, [*base, *overrides])


def _refused(run, run_dir, message):
    with pytest.raises(ConfigError) as e:
        run()
    text = str(e.value)
    assert "\n" not in text and text.startswith(message), text
    assert not (run_dir / "results.json").exists() and not (run_dir / "run.json").exists()


@pytest.mark.parametrize("override, message", TRAIN, ids=[o for o, _ in TRAIN])
def test_train_bad_input_is_one_line_naming_the_key(tmp_path, override, message):
    _refused(lambda: run_train(_cfg(*override.split(" ")), tmp_path / "run"), tmp_path / "run", message)


SEARCH = [
    ("+search.foo=1", "search.foo is not a known option; valid: acc_bits, alpha_lr"),
    ("search.variant=bogus", "search.variant='bogus': expected one of ('single', 'bilevel', 'sequential'"),
    ("search.lambda=-1", "search.lambda=-1.0: must be >= 0"),
    ("search.lambda=abc", "search.lambda='abc': expected a number"),
    ("search.epochs=0", "search.epochs=0: expected a whole number >= 1"),
    ("search.epochs=1.5", "search.epochs=1.5: expected a whole number"),
    ("search.alpha_lr=-1", "search.alpha_lr=-1.0: must be > 0"),
    ("search.alpha_start_epoch=-1", "search.alpha_start_epoch=-1.0: must be >= 0"),
    ("search.bn_recalibration_batches=-1", "search.bn_recalibration_batches=-1: expected a whole number >= 0"),
    ("search.retrain_epochs=-1", "search.retrain_epochs=-1: expected a whole number >= 0 (0: none)"),
    ("search.baseline_epochs=1.5", "search.baseline_epochs=1.5: expected a whole number"),
    ("search.retrain_learning_rate=-1", "search.retrain_learning_rate=-1.0: expected a number > 0"),
    ("search.acc_bits=0", "search.acc_bits=0: expected an accumulator width in 2..64 bits"),
    ("search=bilevel search.val_fraction=1.5", "search.val_fraction=1.5: expected a fraction in (0, 1)"),
    ("search=sequential search.freeze_order=sideways", "search.freeze_order='sideways': expected confident"),
    ("search=sequential search.freeze_every_steps=0", "search.freeze_every_steps=0: expected a whole number >= 1"),
    ("search=variational search.tau_end=10", "search.tau_start=5.0, tau_end=10.0: need 0 < tau_end <= tau_start"),
    ("search.tau_end=0", "search.tau_start=5.0, tau_end=0.0: need 0 < tau_end <= tau_start"),  # any variant
    ("search.val_fraction=0", "search.val_fraction=0.0: expected a fraction in (0, 1)"),
    ("search=bilevel search.second_order=maybe", "search.second_order='maybe': expected true or false"),
    ("search.use=[mac8,nope]", "search.use[1]='nope' is not defined under search.candidates"),
    ("search=sensitivity", "search.energy_budget is null: search=sensitivity assigns under an energy budget"),
    ("search=sensitivity search.energy_budget=0.5 search.use=[mac4,shift4]",
     "search.use=['mac4', 'shift4'] lacks search.reference='mac8': search=sensitivity measures every candidate"),
    ("search=sensitivity search.energy_budget=0.5 search.sensitivity_measure=hessian",
     "search.use: candidate 'mac8_cim' (op=mac, mode aimc) is not a digital linear operator"),
    ("search.energy_budget_of=nope", "search.energy_budget_of='nope' is not defined under search.candidates"),
    ("search=sensitivity search.energy_budget=0.5 search.sensitivity_measure=taylor",
     "search.sensitivity_measure='taylor': expected loss or hessian"),
    ("search.reference=nope", "search.reference='nope' is not defined under search.candidates"),
    ("search.candidates.mac8.op.name=nope", "search.candidates.mac8.op.name='nope' is unknown"),
    ("search.candidates.mac8.quant.w_bits=0", "search.candidates.mac8.quant.w_bits=0: uniform quantization needs"),
    ("+colour=red", "colour is not a known top-level option"),
    ("seed=abc", "seed='abc': expected a whole number"),
    ("trainer.epochs=0", "trainer.epochs=0: expected a whole number >= 1"),
    ("model.width=0", "model.width=0: expected a whole number >= 1"),
    ("objective=nope", "objective='nope' is not a results.json key of search runs"),
]


@pytest.mark.parametrize("override, message", SEARCH, ids=[o for o, _ in SEARCH])
def test_search_bad_input_is_one_line_naming_the_key(tmp_path, override, message):
    from pannjax.search.runner import run_search_experiment

    base = ("trainer.progress=false", "model.width=4", "search.epochs=1", "search.retrain_epochs=0",
            "search.baseline_epochs=0")
    _refused(lambda: run_search_experiment(_cfg(*override.split(" "), name="search", base=base), tmp_path / "run"),
             tmp_path / "run", message)


@pytest.fixture(scope="module")
def float_run(tmp_path_factory):
    from omegaconf import OmegaConf

    run_dir = tmp_path_factory.mktemp("float")
    cfg = _cfg("trainer.epochs=1", "trainer.tensorboard=false", base=("trainer.progress=false", "model.width=4"))
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    run_train(cfg, run_dir)
    return run_dir


PANN = [
    ("mode=bogus", "mode=bogus is not a config of group mode; available: aimc, convert, digital, dimc, sweep, table"),
    ("mode=table budget_bits=0", "budget_bits=0: expected bit widths in 1..16"),
    ("budget_bits=[0]", "budget_bits=[0]: expected bit widths in 1..16"),
    ("budget_bits=abc", "budget_bits='abc': expected bit widths, e.g. budget_bits=[2,3,4]"),
    ("checkpoint=null", "checkpoint is missing: give the run dir of a float training run"),
    ("checkpoint=/missing/run", "checkpoint=/missing/run: no .hydra/config.yaml there"),
    ("+foo=1", "foo is not a known option of experiments/pann.py"),
    ("accumulation=bogus", "accumulation='bogus': expected one of ('split', 'signed')"),
    ("first_last=bogus", "first_last='bogus': expected one of ('int8', 'float', 'same')"),
    ("calibration=bogus", "calibration='bogus': expected one of ('mse', 'max', 'lsq')"),
    ("calibration_batches=0", "calibration_batches=0: expected a whole number >= 1"),
    ("calibration_batch_size=0", "calibration_batch_size=0: expected a whole number >= 1"),
    ("acc_bits=1", "acc_bits=1: expected an integer in 4..64"),
    ("mode=table acc_bits=0", "acc_bits=0: expected a positive integer"),
    ("power_model=bogus", "power_model='bogus': expected gates (calibrated gate-level model) or registers"),
    ("x_bits=0", "x_bits=[0]: activation widths must be integers in 1..16"),
    ("additions=-1", "additions=-1.0: expected > 0"),
    ("budget_toggles=-5 budget_bits=null", "budget_toggles=-5.0: expected toggles per MAC > 0"),
    ("budget_toggles=5", "give budget_bits or budget_toggles, not both (set budget_bits=null)"),
    ("scale_rule=bogus", "scale_rule='bogus': expected one of ('exact', 'mean')"),
    ("seed=abc", "seed='abc': expected a whole number"),
    ("budget_signed=maybe", "budget_signed='maybe': expected true or false"),
    ("w_per_channel=maybe", "w_per_channel='maybe': expected true or false"),
    ("mode=sweep sweep.x_bits=[0]", "sweep.x_bits=[0]: expected bit widths in 1..16"),
    ("mode=sweep sweep.additions=[-1]", "sweep.additions=[-1.0]: expected a list of additions per input R > 0"),
    ("mode=sweep sweep.uniform_bits=[99]", "sweep.uniform_bits=[99]: expected bit widths in 1..16"),
    ("mode=sweep +sweep.r=[1]", "sweep.r is not a known option; valid: additions, axis, uniform_bits, x_bits"),
]


@pytest.mark.xdist_group("test_bad_inputs.float_run")  # one worker: the fixture is trained once
@pytest.mark.parametrize("override, message", PANN, ids=[o for o, _ in PANN])
def test_pann_bad_input_is_one_line_naming_the_key(tmp_path, float_run, override, message):
    from pannjax.pann.experiment import run_pann
    from pannjax.experiment import to_container

    _refused(lambda: run_pann(to_container(_cfg(*override.split(" "), name="pann", base=(f"checkpoint={float_run}",))),
                              tmp_path / "run"), tmp_path / "run", message)


def test_a_bad_search_input_exits_2_with_one_line(tmp_path):
    """The command itself: one line on stderr, exit status 2, no traceback (train, pann and power have the
    same check in their own tests)."""
    cmd = [sys.executable, str(ROOT / "experiments" / "search.py"), f"hydra.run.dir={tmp_path / 'run'}",
           "search.variant=bogus"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        "error: search.variant='bogus': expected one of ('single', 'bilevel', 'sequential', 'variational', "
        "'sensitivity')"]


def test_the_table_covers_sixty_bad_inputs_over_the_four_entry_points():
    bad_power = [case for case in POWER if case[1] is not None]
    assert len(TRAIN) + len(COMBINATIONS) + len(SEARCH) + len(PANN) + len(bad_power) >= 60


POWER = [
    ("+fanin=64", "fanin is not a known option of experiments/power.py"),
    ("acc_bits=[4]", "main_acc_bits=32: expected one of acc_bits=[4]"),
    ("main_acc_bits=2", "main_acc_bits=2: expected one of acc_bits=[16, 24, 32]"),
    ("bits=[2,x]", "bits=[2, 'x']: expected a list of whole numbers in 1..16"),
    ("bits=[2,8]", None),  # valid: the control
    ("acc_bits=[16,24,1]", "acc_bits=[16, 24, 1]: expected a list of whole numbers in 2..32"),
    ("fan_in=0", "fan_in=[0]: expected a list of whole numbers"),
    ("gates.units=[mac,madd]", "gates.units=['mac', 'madd']: ['madd'] are not units"),
    ("gates.additions=0", "gates.additions=0.0: PANN's additions per input must be > 0"),
    ("gates.shift_w_bits=7", "gates.shift_w_bits=7: a PoT weight of 2..4 bits"),
]


@pytest.mark.parametrize("override, message", POWER, ids=[o for o, _ in POWER])
def test_power_bad_input_is_one_line_naming_the_key(tmp_path, override, message):
    from pannjax.hw.study import check_config

    if message is None:
        check_config(_cfg(override, name="power", base=()))
        return
    with pytest.raises(ConfigError) as e:
        check_config(_cfg(override, name="power", base=()))
    assert "\n" not in str(e.value) and str(e.value).startswith(message), str(e.value)


COMBINATIONS = [
    (("quant=pann", "op=adder"), "op=adder (mode digital) cannot run PANN addition-count weights (quant=pann)"),
    (("quant=pann", "op=mf"), "op=mf (mode digital) cannot run PANN addition-count weights"),
    (("quant=pann", "op.mode.kind=analog"), "op=mac (mode aimc) cannot run PANN addition-count weights"),
    (("quant=pann", 'layers=[{pattern: "^conv1$", op: {name: mf}}]'),
     "layers[0].op=mf (mode digital) cannot run PANN addition-count weights"),
]


@pytest.mark.parametrize("overrides, message", COMBINATIONS, ids=[" ".join(o) for o, _ in COMBINATIONS])
def test_an_incompatible_quantizer_and_operator_fail_at_set_up(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as e:
        run_train(_cfg(*overrides), tmp_path / "run")
    assert "\n" not in str(e.value) and str(e.value).startswith(message), str(e.value)
    assert "re-rounded by op=shift, op=bwn or op=xnor" in str(e.value)  # which operators can take them
    assert not (tmp_path / "run").exists()  # nothing was loaded or written


def test_the_defaults_a_run_uses_are_the_dataclass_defaults():
    """One value per setting: the composed search and train configs hold SearchConfig's, SearchRun's and
    TrainerConfig's defaults (no YAML restates them), and a Python caller's partial dict is completed with
    the same values."""
    import dataclasses

    from pannjax.schema import RENAMED, validated
    from pannjax.search.options import SearchRun
    from pannjax.search.steps import SearchConfig
    from pannjax.train import OptimizerConfig, TrainerConfig

    search = compose_checked("search", [])
    for f in dataclasses.fields(SearchConfig):
        assert search.search[RENAMED.get(f.name, f.name)] == f.default, f.name
    assert search.search["lambda"] == SearchConfig().lam == 0.3
    for f in dataclasses.fields(SearchRun):
        if f.default is not dataclasses.MISSING:
            assert search.search[f.name] == f.default, f.name
    train = compose_checked("train", [])
    for f in dataclasses.fields(TrainerConfig):
        if f.name not in ("epochs", "batch_size", "eval_batch_size", "optimizer", "log_every"):  # the digits recipe
            assert train.trainer[f.name] == f.default, f.name
    partial = validated({"data": {"name": "digits"}, "model": {"name": "digits_cnn"}, "quant": {"name": "float"},
                         "op": {"name": "mac"}, "trainer": {"epochs": 2, "optimizer": {"learning_rate": 0.5}}}, "train")
    assert partial["seed"] == 0 and partial["layers"] == [] and partial["prune"] is None
    assert partial["trainer"]["epochs"] == 2 and partial["trainer"]["batch_size"] == TrainerConfig().batch_size
    assert partial["trainer"]["optimizer"]["momentum"] == OptimizerConfig().momentum
    assert partial["trainer"]["optimizer"]["learning_rate"] == 0.5
    with pytest.raises(ConfigError, match="^quant is missing"):
        validated({"data": {"name": "digits"}, "model": {"name": "digits_cnn"}, "op": {"name": "mac"}}, "train")


def test_a_swept_value_hydra_cannot_compose_exits_2_before_any_job(capsys):
    """`-m key=a,b`: every swept value is composed before Hydra starts (`check_command_line`, the first thing
    experiments/*.py do); a bad one is one line and exit status 2; a good command line passes."""
    from pannjax.schema import check_command_line

    with pytest.raises(SystemExit) as e:
        check_command_line("train", ["-m", "hydra.sweep.dir=/nowhere", "trainer.epochs=1,x", "quant=uniform"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: trainer.epochs='x': expected a whole number"]
    with pytest.raises(SystemExit):
        check_command_line("search", ["search.lambda=0.1", "search=nope"])
    assert capsys.readouterr().err.startswith("error: search=nope is not a config of group search; available: bilevel")
    check_command_line("train", ["-m", "trainer.epochs=1,2", "quant=uniform,pot", "hydra/launcher=local"])
