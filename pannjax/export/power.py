"""`experiments/power.py checkpoint=<export dir>`: the power of an exported integer program, per layer, with
the gate-level simulator run on the operand streams the program itself computes on real test images,
beside the analytic toggle model's figures (`pannjax.hw.report.build_report` with `layer_inputs`).

    python experiments/power.py checkpoint=outputs/export/<date>/<time>             # 64 test images
    python experiments/power.py checkpoint=<export dir>/program power_batch=256

The network is rebuilt from the run the export read (and converted as the export converted it) and
checked to give the saved program (`pannjax.export.experiment.exported_network`); accumulators are the
program's (the export's `acc_bits`). `accelerator=edge|aimc|dimc` adds each layer's data movement
(`docs/accelerators.md`). Writes power_report.{json,csv} and results.json (`power.network`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping

import jax.numpy as jnp

from pannjax.experiment import setup
from pannjax.export.experiment import check_acc_bits, check_power_batch, exported_network
from pannjax.export.runner import layer_inputs
from pannjax.hw.report import build_report
from pannjax.results import write_results
from pannjax.rundir import check_apart, owned_run_dir
from pannjax.runner import accelerator_config

log = logging.getLogger(__name__)


def run_program_power(cfg: Mapping[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """The power report of the export run `checkpoint` on `power_batch` test images, written to `run_dir`
    (options: `pannjax.hw.study_options.PowerStudy`)."""
    t0 = time.perf_counter()
    c = setup(cfg, "power")
    run_dir = Path(run_dir)
    source = Path(c["checkpoint"])
    check_apart(run_dir, "checkpoint", source, "export")
    n = check_power_batch(c["power_batch"])
    accelerator = accelerator_config(c)
    with owned_run_dir(run_dir, "power", c, overwrite=c["overwrite"]):
        net = exported_network(source)
        batch = jnp.asarray(net.dataset.test_images[:n])
        acc_bits = check_acc_bits(net.config["acc_bits"])
        report = build_report(net.model, net.variables, batch, acc_bits=acc_bits, simulate=True,
                              seed=int(c["simulate"]["seed"]), layer_inputs=layer_inputs(net.program, batch),
                              accelerator=accelerator)
        report.save(run_dir)
        log.info("power of the exported program %s (per example, %d test images):\n%s", source, len(batch),
                 report.format_table())
        results = {
            "mode": "network", "completed": True, "test_accuracy": net.test_accuracy,
            **report.energy_record(), "checkpoint": str(source),
            "program": str(net.program_dir),
            "acc_bits": acc_bits, "images": int(len(batch)), "data": net.dataset.name,
            "layers": [{k: row[k] for k in ("layer", "operator", "bits", "macs", "toggles", "toggles_per_mac_analytic",
                                            "toggles_per_mac_simulated", "energy_pJ")} for row in report.rows()],
            "seed": int(c["simulate"]["seed"]), "wall_seconds": time.perf_counter() - t0,
        }
        return write_results(run_dir, "power", results, c)


__all__ = ["run_program_power"]
