"""Network-level energy ratio uniform-MAC / PoT-BAC (pannjax/hw/accelerator.py) for the digits CNN and
ResNet-20 shapes, with and without pruning; writes pot_energy.json and pot_energy.md into --out.

    python scripts/pot_energy.py --out /tmp/runs/pot_energy [--sweep /tmp/runs/pot_sparsity]

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

from pannjax.build import build_policy
from pannjax.hw.accelerator import AcceleratorModel, PeLayer, break_even_dsp_pj, energy_ratio, pe_layers
from pannjax.models import build_model
from pannjax.nn import bound_layers
from pannjax.runlog import write_json
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
    args = ap.parse_args(argv)
    models = {v: AcceleratorModel.load(v) for v in VIEWS}
    measured = measured_densities(args.sweep) if args.sweep else {}
    rows = []
    for net in NETWORKS:
        for x_bits, w_bits in ((4, 4), (4, 3), (8, 4)):
            uniform = pe_layers(network_layers(net, "uniform", "mac", x_bits, w_bits))
            pot = pe_layers(network_layers(net, "pot", "shift", x_bits, w_bits))
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
                rows.append(row)
    cols = ["network", "x_bits", "w_bits", "pruning", "asic_45nm.acc32", "asic_45nm.lossless", "fpga_zu.acc32",
            "fpga_zu.lossless", "fpga_zu.break_even_dsp_pj"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows, cols)
    write_json(out / "pot_energy.json", {"rows": rows, "columns": cols,
                                         "paper_claim": ">= 1.4x on ZCU104 (arXiv 2209.15257)",
                                         "units": {m: models[m].row["description"] for m in models}})
    (out / "pot_energy.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
