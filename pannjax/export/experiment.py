"""`experiments/export.py`: a trained (or PTQ-converted) network of a run as an integer program directory.

    python experiments/export.py checkpoint=outputs/train/<date>/<time>               # a quantized run
    python experiments/export.py checkpoint=<float run> convert=pann budget_bits=2     # PANN PTQ first
    python experiments/export.py checkpoint=<run> acc_bits=auto out=deploy/digits_pot

A run of experiments/train.py with integer arithmetic (any `quant=` other than float, with fixed or learned
activation steps) is rebuilt from its ``.hydra/config.yaml`` and newest checkpoint; a float run is first
converted post-training (`convert=pann`: PANN at the power of a `budget_bits`-bit MAC network, or
`convert=uniform`: `w_bits`/`x_bits` uniform PTQ; `pannjax.pann.convert`). The program (`build_program`)
is written to `out` (default: ``<run dir>/program``) by `pannjax.export.save`, reloaded from disk and run
on the whole test set with the integer-only runner; results.json compares it with the fake-quant
evaluation of the same network: accuracy of both, the agreement of their predictions, the largest logit
difference, and per layer the accumulator width B, the worst-case width and the width the test set used,
and the number of accumulator values that overflowed B. Its power report (and results.json's energy keys)
includes data movement on `accelerator=edge|aimc|dimc` (`docs/accelerators.md`).

ONNX: ``model.onnx`` is written where ONNX computes the program exactly (MAC and sign-select layers,
32-bit accumulators, `pannjax.export.onnx_graph`); otherwise the log says why in one line, and
results.json's ``onnx`` holds that line.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pannjax.errors import ConfigError
from pannjax.experiment import load_data, setup
from pannjax.export.files import load, save
from pannjax.export.onnx_graph import unsupported_reason
from pannjax.export.program import Program, build_program
from pannjax.export.runner import layer_inputs, run_codes
from pannjax.hw.accumulator import width_for
from pannjax.hw.report import build_report
from pannjax.results import ENERGY_KEYS, read_results, write_results
from pannjax.rundir import check_apart, owned_run_dir
from pannjax.runner import accelerator_config

log = logging.getLogger(__name__)
CONVERSIONS = ("none", "pann", "uniform")


def check_acc_bits(value: Any) -> int | str:
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 32:
        raise ConfigError(f"acc_bits={value!r}: expected a whole number 2..32 or auto")
    return value


def check_power_batch(value: Any) -> int:
    """`power_batch`: how many test images the gate-level simulator runs (export and power entry points)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"power_batch={value!r}: expected a whole number of test images >= 1")
    return value


def _trained_network(c: Mapping[str, Any]):
    """(model, variables, dataset, reported accuracy) of the checkpoint, converted where asked."""
    from pannjax.train.checkpoint import restore_run_variables

    cfg, variables, _ = restore_run_variables(c["checkpoint"])
    floating = (cfg.get("quant") or {}).get("name") in (None, "float")
    if c["convert"] == "none":
        if floating:
            raise ConfigError(f"checkpoint={c['checkpoint']} is a float run (quant=float): an integer program "
                              "needs integer arithmetic; add convert=pann (or convert=uniform)")
        from pannjax.runner import build_model_for

        dataset = load_data(cfg)
        reported = read_results(Path(c["checkpoint"]) / "results.json").get("test_accuracy") \
            if (Path(c["checkpoint"]) / "results.json").is_file() else None
        return build_model_for(cfg, dataset.num_classes), variables, dataset, reported
    from pannjax.pann.convert import convert, pann_policy, uniform_policy
    from pannjax.pann.experiment import converted_layers, prepare_conversion

    run, sample, folded, inputs = prepare_conversion(c)  # the float run, BN folded, calibration inputs
    if c["convert"] == "pann":
        from pannjax.pann.budget import solve_budget

        layers = converted_layers(run.model, folded, sample, c["first_last"])
        choice = solve_budget(int(c["budget_bits"]), bool(c["budget_signed"]), layers=layers, x_bits=c["x_bits"],
                              additions=c["additions"], accumulation=c["accumulation"])
        log.info("PANN at the power of a %d-bit MAC network: b_x=%d, R=%.2f", c["budget_bits"], choice.x_bits,
                 choice.additions)
        policy = pann_policy(choice.x_bits, choice.additions, accumulation=c["accumulation"],
                             first_last=c["first_last"])
    else:
        policy = uniform_policy(int(c["w_bits"]), int(c["uniform_x_bits"]), c["first_last"])
    conv = convert(run, folded, policy, inputs, c["calibration"])
    return conv.model, conv.variables, run.dataset, None


class ExportedNetwork(NamedTuple):
    model: Any
    variables: Any
    dataset: Any
    program: Program
    program_dir: Path
    config: dict           # the export run's resolved config
    test_accuracy: float   # the program's integer test accuracy, as the export measured it


def exported_network(export_dir: str | Path, key: str = "checkpoint") -> ExportedNetwork:
    """The network and program of a run of experiments/export.py: the network
    rebuilt from the run it exported (converted as it was) and the program read from disk, checked to be the
    program that network gives now. `export_dir`: the export's run dir, or the program dir it wrote. A dir
    that is neither, or a program its network no longer gives (the run retrained since), is a one-line
    ConfigError naming `key`."""
    export_dir = Path(export_dir)
    if (export_dir / "program.json").is_file() and not (export_dir / "results.json").is_file():
        export_dir = export_dir.parent  # the program dir inside the export run dir
    record, results = export_dir / "run.json", export_dir / "results.json"
    if not record.is_file() or not results.is_file():
        raise ConfigError(f"{key}={export_dir}: not a run dir of experiments/export.py (no run.json and results.json); "
                          "export first: python experiments/export.py checkpoint=<train run dir>")
    res = read_results(results)
    if res["entry"] != "export" or not res.get("completed"):
        raise ConfigError(f"{key}={export_dir}: results.json is a {res['entry']} run"
                          f"{'' if res.get('completed') else ' that did not complete'}, not a completed export; "
                          "export first: python experiments/export.py checkpoint=<train run dir>")
    try:
        c = json.loads(record.read_text())["config"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        raise ConfigError(f"{key}={export_dir}: run.json is unreadable; re-run experiments/export.py") from None
    model, variables, dataset, _ = _trained_network(c)
    program = load(res["program"])
    rebuilt = build_program(model, variables, jnp.asarray(dataset.test_images[:2]), check_acc_bits(c["acc_bits"]))
    if json.loads(json.dumps(rebuilt.steps)) != program.steps or set(rebuilt.arrays) != set(program.arrays) or any(
            not np.array_equal(rebuilt.arrays[k], program.arrays[k]) for k in program.arrays):
        raise ConfigError(f"{key}={export_dir}: the program in {res['program']} is not what checkpoint="
                          f"{c['checkpoint']} gives now (trained further since?); re-run experiments/export.py")
    return ExportedNetwork(model, variables, dataset, program, Path(res["program"]), c, res["test_accuracy"])


def _evaluate(model, variables, program, images, labels, batch_size: int) -> dict[str, Any]:
    """Both evaluations of the test set: fake-quant float and the integer program."""
    # the reference runs with the quantized weights computed once, eagerly, as the program's are: a weight
    # quantizer that solves for its scale (PANN's exact rule) can round some weights differently under jit
    from pannjax.pann.convert import freeze_weights

    policy, frozen = freeze_weights(model, variables, jnp.asarray(images[:2]))
    forward = jax.jit(lambda v, x: model.clone(policy=policy).apply(v, x, train=False))

    def apply(x):
        return forward(frozen, x)

    scale = np.asarray(program.arrays[program.output["scale"]], np.float64)
    correct_int = correct_fq = agree = 0
    max_diff, stats = 0.0, {}
    for i in range(0, len(images), batch_size):
        x = jnp.asarray(images[i:i + batch_size])
        fq = np.asarray(apply(x), np.float64)
        codes, batch_stats = run_codes(program, x)
        logits = np.asarray(codes, np.float64) * scale
        y = np.asarray(labels[i:i + batch_size])
        correct_int += int(np.sum(np.argmax(logits, -1) == y))
        correct_fq += int(np.sum(np.argmax(fq, -1) == y))
        agree += int(np.sum(np.argmax(logits, -1) == np.argmax(fq, -1)))
        max_diff = max(max_diff, float(np.max(np.abs(logits - fq))))
        for path, s in batch_stats.items():
            s = np.asarray(s, np.int64)
            old = stats.get(path, (0, s[1], s[2], s[3]))
            stats[path] = (old[0] + int(s[0]), min(old[1], int(s[1])), max(old[2], int(s[2])), bool(s[3]))
    n = len(images)
    return {"test_accuracy": correct_int / n, "fake_quant_accuracy": correct_fq / n, "argmax_agreement": agree / n,
            "logits_max_abs_diff": max_diff, "stats": stats}


def run_export(cfg: Mapping[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Entry point of experiments/export.py (options: `pannjax.export.options.ExportOptions`)."""
    c = setup(cfg, "export")
    t0 = time.perf_counter()
    if not c["checkpoint"]:
        raise ConfigError("checkpoint is missing: give the run dir of experiments/train.py, "
                          "e.g. checkpoint=outputs/train/<date>/<time>")
    if c["convert"] not in CONVERSIONS:
        raise ConfigError(f"convert={c['convert']!r}: expected one of {', '.join(CONVERSIONS)}")
    acc_bits, power_batch = check_acc_bits(c["acc_bits"]), check_power_batch(c["power_batch"])
    accelerator = accelerator_config(c)
    run_dir = Path(run_dir)
    check_apart(run_dir, "checkpoint", c["checkpoint"])
    out = Path(c["out"]) if c["out"] else run_dir / "program"
    with owned_run_dir(run_dir, "export", c, overwrite=c["overwrite"]):
        model, variables, dataset, reported = _trained_network(c)
        sample = jnp.asarray(dataset.test_images[:2])
        program = build_program(model, variables, sample, acc_bits)
        save(program, out)
        program = load(out)  # what is evaluated is what was written
        reason = unsupported_reason(program)
        onnx_note = "model.onnx written" if reason is None else f"model.onnx not written: {reason}"
        log.info(onnx_note)
        ev = _evaluate(model, variables, program, dataset.test_images, dataset.test_labels, int(c["batch_size"]))
        layers = []
        for row in program.layers:
            overflows, lo, hi, signed = ev["stats"][row["path"]]
            observed = width_for(lo, hi) if signed else max(1, int(hi).bit_length())  # unsigned: no sign bit
            layers.append({**row, "observed_acc_bits": observed, "overflows": overflows})
            if overflows:
                log.warning("layer %s: %d accumulator values overflowed B=%d on the test set (it needs %d bits; "
                            "acc_bits=auto uses the worst case)", row["path"], overflows, row["acc_bits"], observed)
        one = jax.ShapeDtypeStruct((1, *sample.shape[1:]), jnp.float32)
        report32 = build_report(model, variables, one, simulate=False)
        batch = jnp.asarray(dataset.test_images[:power_batch])
        try:  # gate-level simulation on the operand streams the program itself computes
            report = build_report(model, variables, batch, acc_bits=acc_bits, simulate=bool(c["simulate"]),
                                  layer_inputs=layer_inputs(program, batch), accelerator=accelerator)
        except ConfigError as e:  # the cost engine's own limits (e.g. a B narrower than one term)
            log.warning("no power figures at acc_bits=%s: %s", acc_bits, e)
            report = None
        if report is not None:
            report.save(run_dir)
            log.info("power of the exported network (per example, %d test images):\n%s", len(batch),
                     report.format_table())
            rows = {r["layer"]: r for r in report.rows()}
            layers = [{**row, **{k: rows.get(row["path"], {}).get(k) for k in
                                 ("toggles_per_mac_analytic", "toggles_per_mac_simulated")}} for row in layers]
        results = {
            "completed": True, "test_accuracy": ev["test_accuracy"], "fake_quant_accuracy": ev["fake_quant_accuracy"],
            "reported_accuracy": reported, "argmax_agreement": ev["argmax_agreement"],
            "logits_max_abs_diff": ev["logits_max_abs_diff"],
            **(dict.fromkeys(ENERGY_KEYS) if report is None else report.energy_record()),
            "toggles_at_32": report32.totals()["toggles"],
            "overflows": sum(r["overflows"] for r in layers), "layers": layers, "program": str(out),
            "files": sorted(p.name for p in out.iterdir()), "onnx": onnx_note, "checkpoint": str(c["checkpoint"]),
            "data": dataset.name, "seed": int(c["seed"]), "wall_seconds": time.perf_counter() - t0,
        }
        return write_results(run_dir, "export", results, c)


__all__ = ["ExportedNetwork", "exported_network", "run_export"]
