"""Bad input is one line naming the full dotted key: each case fails at set-up with a `ConfigError` whose
single-line message starts with the key, before any data set or run dir is touched."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pannjax.errors import ConfigError
from pannjax.runner import run_train

ROOT = Path(__file__).resolve().parents[1]

TRAIN = [
    ("seed=abc", "seed='abc': expected a whole number"),
    ("seed=1.5", "seed=1.5: expected a whole number"),
    ("trainer.epochs=1.5", "trainer.epochs=1.5: expected a whole number >= 1"),
    ("trainer.epochs=two", "trainer.epochs='two': expected a whole number >= 1"),
    ("trainer.epochs=0", "trainer.epochs=0: expected a whole number >= 1"),
    ("trainer.batch_size=64.5", "trainer.batch_size=64.5: expected a whole number >= 1"),
    ("trainer.batch_size=0", "trainer.batch_size=0: expected a whole number >= 1"),
    ("trainer.eval_batch_size=-1", "trainer.eval_batch_size=-1: expected a whole number >= 1"),
    ("trainer.keep_checkpoints=0", "trainer.keep_checkpoints=0: expected a whole number >= 1"),
    ("trainer.stop_after_epochs=-1", "trainer.stop_after_epochs=-1: expected a whole number >= 1"),
    ("trainer.stop_after_epochs=0", "trainer.stop_after_epochs=0: expected a whole number >= 1"),
    ("trainer.log_every=0", "trainer.log_every=0: expected a whole number >= 1"),
    ("trainer.resume=maybe", "trainer.resume='maybe': expected true or false"),
    ("trainer.checkpoint=1", "trainer.checkpoint=1: expected true or false"),
    ("model.width=0", "model.width=0: expected a whole number >= 1"),
    ("model.width=2.5", "model.width=2.5: expected a whole number >= 1"),
    ("trainer.init_from=/missing/run", "trainer.init_from=/missing/run: no .hydra/config.yaml there"),
    ("trainer.batch_size=100000", "trainer.batch_size=100000 is larger than the 1437 training examples"),
    ("+colour=red", "colour is not a known top-level option"),
]


def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=["trainer.progress=false", "model.width=8", *overrides])


@pytest.mark.parametrize("override, message", TRAIN, ids=[o for o, _ in TRAIN])
def test_train_bad_input_is_one_line_naming_the_key(tmp_path, override, message):
    with pytest.raises(ConfigError) as e:
        run_train(_cfg(override), tmp_path / "run")
    text = str(e.value)
    assert "\n" not in text and text.startswith(message), text
    assert not (tmp_path / "run" / "results.json").exists() and not (tmp_path / "run" / "run.json").exists()


POWER = [
    ("+fanin=64", "fanin is not a known option of experiments/power.py"),
    ("acc_bits=[4]", "main_acc_bits=32: expected one of acc_bits=[4]"),
    ("main_acc_bits=2", "main_acc_bits=2: expected one of acc_bits=[16, 24, 32]"),
    ("bits=[2,x]", "bits=[2, 'x']: expected a list of whole numbers in 1..16"),
    ("bits=[2,8]", None),  # valid: the control
    ("acc_bits=[16,24,1]", "acc_bits=[16, 24, 1]: expected a list of whole numbers in 2..32"),
    ("fan_in=0", "fan_in=[0]: expected a list of whole numbers"),
    ("gates.units=[mac,madd]", "gates.units=['mac', 'madd']: ['madd'] are not units"),
    ("gates.additions=0", "gates.additions=0: PANN's additions per input must be > 0"),
    ("gates.shift_w_bits=7", "gates.shift_w_bits=7: a PoT weight of 2..4 bits"),
]


@pytest.mark.parametrize("override, message", POWER, ids=[o for o, _ in POWER])
def test_power_bad_input_is_one_line_naming_the_key(tmp_path, override, message):
    from pannjax.hw.study import check_config

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("power", overrides=[override])
    if message is None:
        check_config(cfg)
        return
    with pytest.raises(ConfigError) as e:
        check_config(cfg)
    assert "\n" not in str(e.value) and str(e.value).startswith(message), str(e.value)


COMBINATIONS = [
    (("quant=pann", "op=xnor"), "op=xnor (mode digital) cannot run PANN addition-count weights (quant=pann)"),
    (("quant=pann", "op=adder"), "op=adder (mode digital) cannot run PANN addition-count weights"),
    (("quant=pann", "op=mf"), "op=mf (mode digital) cannot run PANN addition-count weights"),
    (("quant=pann", "op.mode.kind=analog"), "op=mac (mode analog) cannot run PANN addition-count weights"),
    (("quant=pann", 'layers=[{pattern: "^conv1$", op: {name: xnor}}]'),
     "layers[0].op=xnor (mode digital) cannot run PANN addition-count weights"),
]


@pytest.mark.parametrize("overrides, message", COMBINATIONS, ids=[" ".join(o) for o, _ in COMBINATIONS])
def test_an_incompatible_quantizer_and_operator_fail_at_set_up(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as e:
        run_train(_cfg(*overrides), tmp_path / "run")
    assert "\n" not in str(e.value) and str(e.value).startswith(message), str(e.value)
    assert "op=shift or op=bwn" in str(e.value)  # which operators can take them
    assert not (tmp_path / "run").exists()  # nothing was loaded or written


def test_python_defaults_equal_the_yaml_defaults_of_the_search():
    """SearchConfig's defaults are those of configs/search.yaml (one value per setting)."""
    import dataclasses

    from pannjax.runner import to_container
    from pannjax.search.runner import search_config
    from pannjax.search.steps import SearchConfig

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        yaml = to_container(compose("search"))["search"]
    assert search_config(yaml).lam == SearchConfig().lam == yaml["lambda"] == 0.3
    for f in dataclasses.fields(SearchConfig):
        if f.name in yaml:
            assert getattr(SearchConfig(), f.name) == yaml[f.name], f.name
