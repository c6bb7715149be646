"""What experiments/pann.py runs: post-training PANN at power budgets, and the deployment-time sweep.

mode=convert: for every budget b in `budget_bits` (the power of a b-bit MAC network, unsigned unless
  `budget_signed`) -- or one absolute budget `budget_toggles` (toggles per MAC) -- the solver picks
  (b_x, R); the float checkpoint is BN-folded, converted, calibrated and evaluated, next to two uniform
  PTQ baselines calibrated the same way:
    * uniform_same_bits: b-bit weights and activations in ordinary two's complement arithmetic;
    * uniform_same_power: the uniform network whose MACs are the budget's b x b MACs -- for an unsigned
      budget, b-bit weight magnitudes plus sign (split accumulators, PANN Sec. 3's unsigned conversion;
      stored as (b+1)-bit codes, one extra negative level -2^b), for a signed budget the same-bits one.
  For an absolute budget, b is the widest uniform network of that arithmetic that fits the budget.
  Power is analytic bit flips per example (`pannjax.pann.power`, from `pannjax.hw.bitflips`) over the
  converted layers (the budget's scope; first/last layers are identical in every variant) and over all
  integer layers, plus the energy-table figure (pJ).
mode=sweep: from one model, accuracy and power of PANN over a grid of (b_x, R) -- no retraining, only
  re-quantization of the stored weights -- next to uniform b-bit PTQ for b = 2..8; writes sweep.csv,
  sweep.md and sweep.png (power on x, accuracy on y).
mode=table: the solver's (b_x, R) for b = 2..8 (budget_table.md).
results.json follows the `pann.<mode>` results schema (`pannjax.results`); in convert mode the common
`test_accuracy`, `energy_pj` and `toggles` are those of the PANN network of the first budget, in sweep and
table mode (no single network) they are null.
"""

from __future__ import annotations

import csv
import functools
import logging
import re
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pannjax.errors import ConfigError
from pannjax.hw.system import AcceleratorConfig
from pannjax.nn import bound_layers
from pannjax.pann.budget import Layer, budget_per_mac, budget_table, format_budget_table, solve_budget
from pannjax.pann.convert import (FIRST_LAST_PATTERN, Converted, collect_layer_inputs, convert, fold_batchnorm,
                                  freeze_weights, load_float_run, pann_policy, uniform_policy)
from pannjax.pann.power import DEFAULT_MODEL, mac_toggles, network_toggles, summarize
from pannjax.rundir import check_apart, owned_run_dir
from pannjax.experiment import setup
from pannjax.runner import accelerator_config
from pannjax.results import write_results
from pannjax.runlog import to_jsonable

log = logging.getLogger(__name__)
MODES = ("convert", "sweep", "table")
SWEEP_AXES = ("toggles", "energy")


@functools.partial(jax.jit, static_argnums=0)
def _logits(model, variables, images):
    return model.apply(variables, images, train=False)


def accuracy(model, variables, dataset, batch_size: int = 512) -> float:
    """Test accuracy of `model` with `variables` over every test example."""
    correct = total = 0
    for batch in dataset.batches("test", batch_size, shuffle=False):
        pred = np.asarray(jnp.argmax(_logits(model, variables, jnp.asarray(batch["image"])), -1))
        correct += int((pred == batch["label"]).sum())
        total += len(pred)
    return correct / total


def frozen_accuracy(conv: Converted, dataset, sample) -> float:
    """Accuracy of a converted network, evaluated with its quantized weights frozen (exact, see convert.py)."""
    policy, variables = freeze_weights(conv.model, conv.variables, sample)
    return accuracy(conv.model.clone(policy=policy), variables, dataset)


def converted_layers(model, variables, sample, first_last: str) -> list[Layer]:
    """MACs and fan-in of the layers PANN converts (all but stem/head unless first_last == "same")."""
    out = []
    for layer in bound_layers(model, variables, sample):
        if first_last != "same" and re.search(FIRST_LAST_PATTERN, layer.path):
            continue
        out.append(Layer(layer.contraction.macs, layer.contraction.fan_in, layer.input_signed))
    return out


def _power(conv: Converted, sample, arithmetic: str, first_last: str, power_model: str,
           budget_layers_toggles: float | None = None, accelerator: AcceleratorConfig | None = None) -> dict[str, Any]:
    """Power of a converted network: over the converted layers (the budget's scope) and all integer layers;
    energy of the whole network, with data movement on `accelerator` where one is given."""
    s = summarize(network_toggles(conv.model, conv.variables, sample, arithmetic=arithmetic, toggle_model=power_model,
                                  accelerator=accelerator))
    converted = [l for l in s["layers"] if first_last == "same" or not _is_first_last(l["path"])]
    tog = float(sum(l["toggles"] for l in converted if l["toggles"] is not None))
    macs = int(sum(l["macs"] for l in converted))
    out = {"toggles": tog, "toggles_per_mac": tog / max(macs, 1), "network_toggles": s["toggles"],
           **{k: s[k] for k in ("energy_pj", "energy_compute_pj", "energy_memory_pj", "latency_cycles")},
           "arithmetic": arithmetic,
           "layers": [{k: l[k] for k in ("path", "kind", "macs", "fan_in", "x_format", "w_format", "additions",
                                          "toggles_per_mac", "toggles", "energy_pj")} for l in s["layers"]]}
    if budget_layers_toggles:
        out["toggles_over_budget"] = tog / budget_layers_toggles
    return out


def _is_first_last(path: str) -> bool:
    return re.search(FIRST_LAST_PATTERN, path) is not None


def parse_bits(value: Any, name: str) -> list[int]:
    """A list of bit widths from a list, an int, or a comma string ("2,3,4")."""
    if isinstance(value, str):
        items = [v for v in value.replace(" ", "").split(",") if v]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    try:
        bits = [int(v) for v in items]
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r}: expected bit widths, e.g. {name}=[2,3,4] or {name}='2,3,4'") from None
    if not bits or any(not 1 <= b <= 16 for b in bits):
        raise ConfigError(f"{name}={value!r}: expected bit widths in 1..16")
    return bits


def prepare_conversion(c: Mapping[str, Any]):
    """(float run, a 2-image sample, BN-folded variables, calibration inputs per layer) of options `c`
    (checkpoint, calibration_batches, calibration_batch_size, seed): what every post-training conversion
    starts from (here and in `pannjax.export.experiment`)."""
    run = load_float_run(c["checkpoint"])
    sample = run.dataset.train_images[:2]
    folded = fold_batchnorm(run.model, run.variables, sample)
    n_cal, bs = int(c["calibration_batches"]), int(c["calibration_batch_size"])
    images = run.dataset.train_images
    batches = [images[i * bs:(i + 1) * bs] for i in range(n_cal) if i * bs < len(images)]
    inputs = collect_layer_inputs(run.model, folded, batches, seed=int(c["seed"]))
    return run, sample, folded, inputs


def run_convert(c: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """mode=convert (module docstring): per-budget PANN vs uniform PTQ, accuracy and power."""
    t0 = time.perf_counter()
    run, sample, folded, inputs = prepare_conversion(c)
    first_last, cal, acc_bits = c["first_last"], c["calibration"], int(c["acc_bits"])
    power_model, accelerator = power_model_of(c), accelerator_config(c)
    float_acc = accuracy(run.model, run.variables, run.dataset)
    folded_acc = accuracy(run.model, folded, run.dataset)
    layers = converted_layers(run.model, folded, sample, first_last)
    pann_kw = dict(accumulation=c["accumulation"], per_channel=bool(c["w_per_channel"]),
                   scale_rule=c["scale_rule"], first_last=first_last)
    signed = bool(c["budget_signed"])
    specs = [(None, float(c["budget_toggles"]))] if c["budget_toggles"] is not None else \
        [(b, None) for b in parse_bits(c["budget_bits"], "budget_bits")]
    budgets = []
    for bits, toggles in specs:
        per_mac = budget_per_mac(bits, signed, toggles, layers=layers, acc_bits=acc_bits, model=power_model)
        budget_total = per_mac * sum(l.macs for l in layers)
        b = bits if bits is not None else uniform_bits_within(per_mac, layers, signed, acc_bits, power_model)
        choice = solve_budget(bits, signed, toggles, layers=layers, x_bits=c["x_bits"],
                              additions=c["additions"], acc_bits=acc_bits, accumulation=c["accumulation"],
                              model=power_model)
        pann = convert(run, folded, pann_policy(choice.x_bits, choice.additions, **pann_kw), inputs, cal)
        same_bits = convert(run, folded, uniform_policy(b, b, first_last), inputs, cal)
        entry = {
            "budget_bits": bits, "budget_signed": signed, "budget_toggles_per_example": budget_total,
            "budget_toggles_per_mac": per_mac,
            "label": f"{bits}bit" if bits is not None else f"{per_mac:g}toggles",
            "pann": {"x_bits": choice.x_bits, "additions": choice.additions, "predicted_error": choice.error,
                     "accuracy": frozen_accuracy(pann, run.dataset, sample),
                     **_power(pann, sample, c["accumulation"], first_last, power_model, budget_total, accelerator)},
            "uniform_same_bits": {"w_bits": b, "x_bits": b, "accuracy": frozen_accuracy(same_bits, run.dataset, sample),
                                  **_power(same_bits, sample, "signed", first_last, power_model, budget_total,
                                           accelerator)},
        }
        if signed:
            entry["uniform_same_power"] = dict(entry["uniform_same_bits"])
        else:
            same_power = convert(run, folded, uniform_policy(b + 1, b, first_last), inputs, cal)
            entry["uniform_same_power"] = {"w_bits": b + 1, "w_magnitude_bits": b, "x_bits": b,
                                           "accuracy": frozen_accuracy(same_power, run.dataset, sample),
                                           **_power(same_power, sample, "split", first_last, power_model,
                                                    budget_total, accelerator)}
        log.info("budget %s %s: PANN b_x=%d R=%.2f acc %.4f (power %.3f x budget) | uniform same power %.4f "
                 "| uniform %d-bit %.4f (power %.3f x budget)", entry["label"], "signed" if signed else "unsigned",
                 choice.x_bits,
                 choice.additions, entry["pann"]["accuracy"], entry["pann"]["toggles_over_budget"],
                 entry["uniform_same_power"]["accuracy"], b, entry["uniform_same_bits"]["accuracy"],
                 entry["uniform_same_bits"]["toggles_over_budget"])
        budgets.append(entry)
    headline = budgets[0]["pann"]  # the network of the first (usually only) budget
    results = {"mode": "convert", "completed": True, "test_accuracy": headline["accuracy"],
               **{k: headline[k] for k in ("energy_pj", "energy_compute_pj", "energy_memory_pj", "latency_cycles")},
               "toggles": headline["network_toggles"],
               "checkpoint": str(run.run_dir), "checkpoint_epoch": run.epoch,
               "model": run.model_name, "data": run.dataset.name, "float_accuracy": float_acc,
               "folded_accuracy": folded_acc, "first_last": first_last, "calibration": cal,
               "budget_signed": bool(c["budget_signed"]), "budget_bits": [e["budget_bits"] for e in budgets],
               "accumulation": c["accumulation"], "budgets": budgets, "seed": int(c["seed"]),
               "summary": {e["label"]: {
                   "x_bits": e["pann"]["x_bits"], "additions": e["pann"]["additions"],
                   "pann_accuracy": e["pann"]["accuracy"], "pann_toggles": e["pann"]["toggles"],
                   "pann_toggles_over_budget": e["pann"]["toggles_over_budget"],
                   "uniform_same_power_accuracy": e["uniform_same_power"]["accuracy"],
                   "uniform_same_bits_accuracy": e["uniform_same_bits"]["accuracy"],
                   "uniform_same_bits_toggles_over_budget": e["uniform_same_bits"]["toggles_over_budget"]}
                   for e in budgets},
               "wall_seconds": time.perf_counter() - t0, "power_units": "analytic bit flips (toggles) per example",
               "power_model": power_model}
    return write_results(run_dir, "pann", results, c)


def uniform_bits_within(per_mac: float, layers: Sequence[Layer], signed: bool, acc_bits: int = 32,
                        model: str = DEFAULT_MODEL) -> int:
    """Widest b in 2..8 whose uniform network (the `uniform_same_power` baseline's arithmetic) costs at most
    `per_mac` toggles per MAC over `layers`; 2 if none fits (its power is then reported above budget)."""
    total = sum(l.macs for l in layers)

    def cost(b: int) -> float:
        w_bits, arith = (b, "signed") if signed else (b + 1, "split")
        return sum(l.macs * mac_toggles(b, w_bits, l.fan_in, acc_bits, False, True, arith, model)
                   for l in layers) / total

    fitting = [b for b in range(2, 9) if cost(b) <= per_mac * 1.0001]
    return max(fitting) if fitting else 2


def run_sweep(c: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """mode=sweep (module docstring): the PANN power-accuracy curve from one model, and uniform points."""
    t0 = time.perf_counter()
    run, sample, folded, inputs = prepare_conversion(c)
    first_last, cal, power_model = c["first_last"], c["calibration"], power_model_of(c)
    accelerator = accelerator_config(c)
    sw = c["sweep"]
    additions = [float(r) for r in sw["additions"]]
    pann_kw = dict(accumulation=c["accumulation"], per_channel=bool(c["w_per_channel"]),
                   scale_rule=c["scale_rule"], first_last=first_last)
    rows = []
    for bx in parse_bits(sw["x_bits"], "sweep.x_bits"):
        base = convert(run, folded, pann_policy(bx, additions[0], **pann_kw), inputs, cal)
        for r in additions:
            policy = pann_policy(bx, r, **pann_kw)
            conv = Converted(base.model.clone(policy=policy), base.variables, policy)
            p = _power(conv, sample, c["accumulation"], first_last, power_model, accelerator=accelerator)
            rows.append({"method": "pann", "x_bits": bx, "w": f"R={r:g}", "additions": r,
                         "accuracy": frozen_accuracy(conv, run.dataset, sample), "toggles": p["toggles"],
                         "toggles_per_mac": p["toggles_per_mac"], "energy_pj": p["energy_pj"],
                         "energy_memory_pj": p["energy_memory_pj"]})
    for b in parse_bits(sw["uniform_bits"], "sweep.uniform_bits"):
        conv = convert(run, folded, uniform_policy(b, b, first_last), inputs, cal)
        acc = frozen_accuracy(conv, run.dataset, sample)
        for arith in ("signed", "split"):
            p = _power(conv, sample, arith, first_last, power_model, accelerator=accelerator)
            rows.append({"method": f"uniform_{arith}", "x_bits": b, "w": f"{b}-bit", "additions": None,
                         "accuracy": acc, "toggles": p["toggles"], "toggles_per_mac": p["toggles_per_mac"],
                         "energy_pj": p["energy_pj"], "energy_memory_pj": p["energy_memory_pj"]})
    float_acc = accuracy(run.model, run.variables, run.dataset)
    write_sweep_outputs(rows, float_acc, run_dir, run.model_name, run.dataset.name, sw["axis"],
                        accelerator.name if accelerator.enabled else None)
    results = {"mode": "sweep", "completed": True, "test_accuracy": None, "energy_pj": None, "toggles": None,
               "checkpoint": str(run.run_dir), "model": run.model_name, "data": run.dataset.name,
               "float_accuracy": float_acc, "rows": rows, "first_last": first_last, "calibration": cal,
               "seed": int(c["seed"]), "wall_seconds": time.perf_counter() - t0,
               "files": ["sweep.csv", "sweep.md", "sweep.png"],
               "power_units": "analytic bit flips (toggles) per example, converted layers",
               "power_model": power_model}
    return write_results(run_dir, "pann", results, c)


def write_sweep_outputs(rows: Sequence[dict], float_acc: float, run_dir: Path, model: str, data: str,
                        axis: str = "toggles", accelerator: str | None = None) -> None:
    """sweep.csv, sweep.md (markdown table) and sweep.png (power vs accuracy) in `run_dir`; the plot's power
    axis is `axis`: "toggles" (bit flips of the converted layers) or "energy" (the network's energy per
    example, with data movement on `accelerator` where the run has one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401 - used through matplotlib.ticker below

    run_dir = Path(run_dir)
    keys = ["method", "x_bits", "w", "additions", "accuracy", "toggles", "toggles_per_mac", "energy_pj",
            "energy_memory_pj"]
    with open(run_dir / "sweep.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=keys)
        wr.writeheader()
        wr.writerows(to_jsonable([{k: r[k] for k in keys} for r in rows]))
    lines = [f"Power-accuracy sweep, {model} on {data} (float accuracy {float_acc:.4f}); power = analytic bit flips "
             "per example over the converted layers", "",
             f"| method | b_x | weights | accuracy | toggles / example | toggles / MAC | energy (pJ"
             f"{', with data movement on ' + accelerator if accelerator else ', table'}) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['x_bits']} | {r['w']} | {r['accuracy']:.4f} | {r['toggles']:.4g} "
                     f"| {r['toggles_per_mac']:.2f} | {r['energy_pj']:.4g} |")
    (run_dir / "sweep.md").write_text("\n".join(lines) + "\n")

    key, unit = ("toggles", 1e6) if axis == "toggles" else ("energy_pj", 1e6)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for panel, ax in enumerate(axes):
        for bx in sorted({r["x_bits"] for r in rows if r["method"] == "pann"}):
            pts = sorted((r[key], r["accuracy"]) for r in rows if r["method"] == "pann" and r["x_bits"] == bx)
            ax.plot([p[0] / unit for p in pts], [100 * p[1] for p in pts], "o-", ms=3,
                    label=f"PANN, b_x={bx} (R swept)")
        for method, name in (("uniform_signed", "uniform b-bit, two's complement"),
                             ("uniform_split", "uniform b-bit, unsigned (split) accumulators")):
            pts = [r for r in rows if r["method"] == method]
            ax.plot([r[key] / unit for r in pts], [100 * r["accuracy"] for r in pts],
                    "s" if method == "uniform_signed" else "^", color="k",
                    mfc="none" if method == "uniform_split" else "k", label=name)
            for r in pts:
                ax.annotate(f"{r['x_bits']}b", (r[key] / unit, 100 * r["accuracy"]), textcoords="offset points",
                            xytext=(3, -9 if method == "uniform_signed" else 4), fontsize=7)
        ax.axhline(100 * float_acc, color="gray", ls="--", lw=1, label="float")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("power: bit flips per inference, converted layers (10^6 toggles, analytic model)"
                      if axis == "toggles" else "energy per inference, whole network (µJ"
                      + (f", compute + data movement on {accelerator})" if accelerator else ", arithmetic)"))
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, which="both", alpha=0.3)
        if panel == 1:
            top = 100 * max(r["accuracy"] for r in rows)
            ax.set_ylim(max(0.0, top - 6.0), top + 0.6)
            ax.set_title("zoom on the top 6 % of accuracy")
        else:
            ax.set_title(f"PANN power-accuracy trade-off at deployment ({model}, {data})")
            ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(run_dir / "sweep.png", dpi=120)
    plt.close(fig)


def run_table(c: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """mode=table: the solver's (b_x, R) for the power of b-bit MAC networks, b = 2..8, unsigned and signed
    (reduction length 256), written to budget_table.md and results.json. Needs no checkpoint."""
    t0 = time.perf_counter()
    tables, text = {}, []
    for signed in (False, True):
        rows = budget_table(range(2, 9), signed, acc_bits=int(c["acc_bits"]), accumulation=c["accumulation"],
                            model=power_model_of(c))
        tables["signed" if signed else "unsigned"] = rows
        text += [f"Budget: the power of a b-bit {'two' + chr(39) + 's complement' if signed else 'unsigned'} MAC "
                 f"network (B = {c['acc_bits']}, fan-in 256, {c['accumulation']} accumulation, "
                 f"{power_model_of(c)} toggle model)", "",
                 format_budget_table(rows), ""]
    (run_dir / "budget_table.md").write_text("\n".join(text))
    results = {"mode": "table", "completed": True, "test_accuracy": None, "energy_pj": None, "toggles": None,
               "seed": int(c["seed"]), "tables": tables, "wall_seconds": time.perf_counter() - t0}
    return write_results(run_dir, "pann", results, c)


def check_options(c: Mapping[str, Any]) -> None:
    """Options of every mode, checked before anything is loaded or written (one line naming the key each):
    a value a mode does not read is still refused when it is invalid (`mode=table budget_bits=0`)."""
    if c["mode"] not in MODES:
        raise ConfigError(f"mode={c['mode']!r}: expected one of {MODES}")
    for key in ("calibration_batches", "calibration_batch_size"):
        if c[key] < 1:
            raise ConfigError(f"{key}={c[key]!r}: expected a whole number >= 1")
    if c["budget_bits"] is not None:
        parse_bits(c["budget_bits"], "budget_bits")
    if c["mode"] == "convert" and c["budget_toggles"] is not None and c["budget_bits"] is not None:
        raise ConfigError("give budget_bits or budget_toggles, not both (set budget_bits=null)")
    power_model_of(c)
    for key in ("x_bits", "uniform_bits"):
        parse_bits(c["sweep"][key], f"sweep.{key}")
    additions = c["sweep"]["additions"]
    if not additions or any(not r > 0 for r in additions):
        raise ConfigError(f"sweep.additions={additions!r}: expected a list of additions per input R > 0")
    if c["sweep"]["axis"] not in SWEEP_AXES:
        raise ConfigError(f"sweep.axis={c['sweep']['axis']!r}: expected toggles (bit flips) or energy (pJ)")
    accelerator_config(c)


def power_model_of(c: Mapping[str, Any]) -> str:
    """The toggle model of the run (`power_model`: gates | registers)."""
    model = c["power_model"]
    if model not in ("gates", "registers"):
        raise ConfigError(f"power_model={model!r}: expected gates (calibrated gate-level model) or registers")
    return model


def run_pann(c: Mapping[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Entry point of experiments/pann.py (options: `pannjax.pann.options.PannOptions`)."""
    c = setup(c, "pann")
    mode = c["mode"]
    check_options(c)
    run_dir = Path(run_dir)
    if mode != "table" and not c["checkpoint"]:
        raise ConfigError("checkpoint is missing: give the run dir of a float training run, "
                          "e.g. checkpoint=outputs/train/<date>/<time>")
    if mode != "table":
        check_apart(run_dir, "checkpoint", c["checkpoint"])
    with owned_run_dir(run_dir, "pann", c, overwrite=c["overwrite"]):
        if mode == "table":
            return run_table(c, run_dir)
        return run_convert(c, run_dir) if mode == "convert" else run_sweep(c, run_dir)
