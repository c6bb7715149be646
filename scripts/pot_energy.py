"""Network-level energy ratio uniform-MAC / PoT-BAC (pannjax/hw/accelerator.py) for the digits CNN and
ResNet-20 shapes, with and without pruning, and with and without data movement; writes pot_energy.json and
pot_energy.md into --out.

    python scripts/pot_energy.py --out /tmp/runs/pot_energy [--sweep /tmp/runs/pot_sparsity] [--accelerator edge]

Data movement: both networks through the cost engine (45 nm table, B = 32) on `--accelerator` (a config of
configs/accelerator/, ZigZag; `none` leaves the columns out): `<name>.acc32` is E_uniform / E_PoT with every
layer's memory traffic added, `<name>.memory_share` the uniform network's share of energy that is data
movement. ZigZag moves dense tensors: a pruned layer's shifts are skipped, its weights still move.

Both networks keep stem and head at 8-bit uniform MAC (quant.first_last=int8, as the training configs);
every other layer is uniform b_w-bit on MAC or PoT b_w-bit on shift, activations b_x bits. Pruning:
nominal sparsities of the PoT layers (0, 50, 90 %) and, with --sweep (a `+experiment=pot_sparsity`
multirun directory), the digits CNN's measured per-layer densities averaged over seeds.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from pannjax.build import build_policy
from pannjax.hw.cost import Pricing, price_network, totals
from pannjax.hw.system import ACCELERATORS_DIR, AcceleratorConfig
from pannjax.hw.accelerator import AcceleratorModel, PeLayer, break_even_dsp_pj, energy_ratio, pe_layers
from pannjax.models import build_model
from pannjax.nn import bound_layers
from pannjax.runlog import write_json
from pannjax.schema import build
from pannjax.sweep import collect_results, markdown_table

NETWORKS = {"digits_cnn": ((8, 8, 1), {"name": "digits_cnn"}),
            "resnet20": ((32, 32, 3), {"name": "resnet", "depth": 20, "width": 16, "shortcut": "A"})}
VIEWS = ("asic_45nm", "fpga_zu")


def network_layers(model_name: str, quant: str, op: str, x_bits: int, w_bits: int) -> list:
    policy = build_policy({"name": quant, "w_bits": w_bits, "x_bits": x_bits, "first_last": "int8"}, {"name": op})
    shape, cfg = NETWORKS[model_name]
    fields = dict(cfg)
    model = build_model(fields.pop("name"), num_classes=10, policy=policy, **fields)
    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    variables = jax.eval_shape(lambda k: model.init(k, jnp.zeros(x.shape), train=False), jax.random.key(0))
    return bound_layers(model, variables, x, train=False)


def with_density(layers: list[PeLayer], density: dict[str, float] | float) -> list[PeLayer]:
    def d(l):
        return density.get(l.path, 1.0) if isinstance(density, dict) else density
    return [PeLayer(l.path, l.outputs, l.fan_in, l.x_bits, l.w_bits, l.arith, d(l) if l.arith == "bac" else 1.0)
            for l in layers]


def engine_energy(layers: list, density: dict[str, float] | float, pricing: Pricing) -> dict:
    """The cost engine's totals of `layers` with every shift (BAC) layer at `density` (a fraction, or one per
    layer path): the figures every entry point reports for that network."""
    def at(layer):
        if [u.unit for u in layer.units()] != ["shift"]:
            return layer
        return layer.at_density(density.get(layer.path, 1.0) if isinstance(density, dict) else density)
    return totals(price_network([at(l) for l in layers], pricing))


def load_accelerator(name: str, lpf_limit: int | None) -> AcceleratorConfig | None:
    """configs/accelerator/<name>.yaml as an `AcceleratorConfig` (None for `none`)."""
    path = ACCELERATORS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise SystemExit(f"error: --accelerator {name}: no {path}; choose one of "
                         f"{', '.join(sorted(p.stem for p in ACCELERATORS_DIR.glob('*.yaml')))}")
    values = yaml.safe_load(path.read_text())
    if lpf_limit is not None:
        values["lpf_limit"] = lpf_limit
    accelerator = build(AcceleratorConfig, values, "accelerator")
    return accelerator if accelerator.enabled else None


def measured_densities(sweep_dir: str) -> dict[float, dict[str, float]]:
    """final_sparsity -> {layer path: mean density over seeds} from a pot_sparsity multirun."""
    acc = collections.defaultdict(lambda: collections.defaultdict(list))
    for row in collect_results(sweep_dir):
        for k, v in row.items():
            if k.startswith("weight_sparsity.layers."):
                acc[row["prune.final_sparsity"]][k.removeprefix("weight_sparsity.layers.")].append(1.0 - v)
    return {s: {p: float(np.mean(v)) for p, v in layers.items()} for s, layers in sorted(acc.items())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--sweep", default=None, help="pot_sparsity multirun dir for measured digits densities")
    ap.add_argument("--accelerator", default="edge", help="configs/accelerator/<name> for data movement (none: off)")
    ap.add_argument("--lpf-limit", type=int, default=None,
                    help="ZigZag's loop prime factor limit (default: the config's)")
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    args = ap.parse_args(argv)
    models = {v: AcceleratorModel.load(v) for v in VIEWS}
    accelerator = load_accelerator(args.accelerator, args.lpf_limit)
    arithmetic = Pricing.make(toggle_model=None, acc_bits=32)
    moving = None if accelerator is None else Pricing.make(toggle_model=None, acc_bits=32, accelerator=accelerator)
    measured = measured_densities(args.sweep) if args.sweep else {}
    rows = []
    for net in args.networks:
        for x_bits, w_bits in ((4, 4), (4, 3), (8, 4)):
            uniform_layers = network_layers(net, "uniform", "mac", x_bits, w_bits)
            pot_layers = network_layers(net, "pot", "shift", x_bits, w_bits)
            uniform, pot = pe_layers(uniform_layers), pe_layers(pot_layers)
            cases = [(f"{s:.0%} nominal", s, s) for s in (0.0, 0.5, 0.9)]
            if net == "digits_cnn" and (x_bits, w_bits) == (4, 4):
                cases += [(f"{s:.0%} target, measured", s, {p: 1 - d for p, d in dens.items()})
                          for s, dens in measured.items()]
            for label, target, sparsity in cases:
                density = {p: 1.0 - v for p, v in sparsity.items()} if isinstance(sparsity, dict) else 1.0 - sparsity
                pruned = with_density(pot, density)
                row = {"network": net, "x_bits": x_bits, "w_bits": w_bits, "pruning": label,
                       "target_sparsity": target, "macs": sum(l.macs for l in uniform),
                       "bac_share_of_macs": sum(l.macs for l in pot if l.arith == "bac") / sum(l.macs for l in pot)}
                for view, m in models.items():
                    for acc, name in ((32, "acc32"), (None, "lossless")):
                        row[f"{view}.{name}"] = energy_ratio(uniform, pruned, m, acc)
                row["fpga_zu.break_even_dsp_pj"] = break_even_dsp_pj(uniform, pruned, models["fpga_zu"], 1.4, 32)
                row["engine.acc32"] = engine_energy(uniform_layers, 1.0, arithmetic)["energy_pj"] \
                    / engine_energy(pot_layers, density, arithmetic)["energy_pj"]
                if moving is not None:
                    e_u, e_p = engine_energy(uniform_layers, 1.0, moving), engine_energy(pot_layers, density, moving)
                    row[f"{accelerator.name}.acc32"] = e_u["energy_pj"] / e_p["energy_pj"]
                    row[f"{accelerator.name}.memory_share"] = e_u["energy_memory_pj"] / e_u["energy_pj"]
                    row[f"{accelerator.name}.uniform_pj"], row[f"{accelerator.name}.pot_pj"] = \
                        e_u["energy_pj"], e_p["energy_pj"]
                rows.append(row)
    cols = ["network", "x_bits", "w_bits", "pruning", "asic_45nm.acc32", "asic_45nm.lossless", "fpga_zu.acc32",
            "fpga_zu.lossless", "fpga_zu.break_even_dsp_pj"]
    if moving is not None:
        cols += [f"{accelerator.name}.acc32", f"{accelerator.name}.memory_share"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows, cols)
    write_json(out / "pot_energy.json", {"rows": rows, "columns": cols,
                                         "paper_claim": ">= 1.4x on ZCU104 (arXiv 2209.15257)",
                                         "accelerator": None if accelerator is None else accelerator.name,
                                         "units": {m: models[m].row["description"] for m in models}})
    (out / "pot_energy.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
