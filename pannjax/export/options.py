"""The options of `experiments/export.py` and their defaults (`pannjax.schema` makes the config schema
from this dataclass; `pannjax.export.experiment` documents and checks them)."""

from __future__ import annotations

import dataclasses
from typing import Any

from pannjax.hw.system import AcceleratorConfig


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """The options of `experiments/export.py` (module docstring)."""

    checkpoint: str | None = None   # run dir of experiments/train.py (trainer.checkpoint=true)
    out: str | None = None          # program directory (new or empty); null: <checkpoint>/program
    acc_bits: Any = 32              # accumulator width B: 2..32, or auto (each layer's worst-case width)
    convert: str = "none"           # none | pann | uniform: post-training conversion of a float run
    budget_bits: int = 2            # convert=pann: the power of a b-bit MAC network
    budget_signed: bool = False
    x_bits: int | None = None       # convert=pann: override the solver's activation bits
    additions: float | None = None  # convert=pann: override the solver's additions per element
    accumulation: str = "split"     # convert=pann: split | signed
    w_bits: int = 4                 # convert=uniform
    uniform_x_bits: int = 4         # convert=uniform
    first_last: str = "int8"        # conversions: arithmetic of stem and head
    calibration: str = "mse"
    calibration_batches: int = 4
    calibration_batch_size: int = 128
    batch_size: int = 500           # evaluation batch
    power_batch: int = 64           # test images whose integer operand streams the gate-level simulator runs
    simulate: bool = True           # false: analytic power figures only
    seed: int = 0
    overwrite: bool = False
    accelerator: AcceleratorConfig = AcceleratorConfig()  # the power report's data movement on it (pannjax.hw.system)
