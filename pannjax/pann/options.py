"""The options of `experiments/pann.py` and their defaults (the only ones: `pannjax.schema` makes the config
schema from these dataclasses; configs/pann.yaml sets only Hydra's run dirs). Ranges and the options whose
type depends on the value (`budget_bits`: a list, an int or '2,3,4') are checked by
`pannjax.pann.experiment.check_options`."""

from __future__ import annotations

import dataclasses
from typing import Any

from pannjax.hw.system import AcceleratorConfig
from pannjax.hw.toggles import DEFAULT_MODEL


@dataclasses.dataclass(frozen=True)
class PannSweep:
    """`mode=sweep`: the deployment-time grid of activation bits x additions per element, and the uniform
    PTQ widths it is compared with."""

    x_bits: list[int] = dataclasses.field(default_factory=lambda: [2, 3, 4, 5, 6, 8])
    additions: list[float] = dataclasses.field(
        default_factory=lambda: [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0])
    uniform_bits: list[int] = dataclasses.field(default_factory=lambda: [2, 3, 4, 5, 6, 7, 8])
    axis: str = "toggles"  # sweep.png's power axis: toggles (bit flips) | energy (pJ; data movement on an accelerator)


@dataclasses.dataclass(frozen=True)
class PannOptions:
    """PANN post-training conversion (`mode=convert`), the deployment-time sweep (`mode=sweep`) and the
    solver's (b_x, R) table for b = 2..8 (`mode=table`, no checkpoint)."""

    checkpoint: str | None = None      # run dir of experiments/train.py (quant=float, trainer.checkpoint=true)
    mode: str = "convert"              # convert | sweep | table
    budget_bits: Any = dataclasses.field(default_factory=lambda: [2, 3, 4])  # the power of a b-bit MAC network
    budget_toggles: float | None = None  # instead of budget_bits (set it to null): toggles per MAC
    budget_signed: bool = False        # false: b-bit unsigned MACs (the paper's arithmetic); true: two's complement
    x_bits: Any = None                 # override the solver's activation bits b_x
    additions: float | None = None     # override the solver's additions per element R
    accumulation: str = "split"        # split: two unsigned accumulators (paper) | signed: one two's complement
    scale_rule: str = "exact"          # exact: mean|w_int| = R by bisection | mean: s = mean|w| / R
    w_per_channel: bool = True         # one PANN step per output channel (false: per tensor)
    first_last: str = "int8"           # int8 | float | same: arithmetic of stem and head
    calibration: str = "mse"           # mse | max | lsq: activation (and uniform weight) steps
    calibration_batches: int = 4
    calibration_batch_size: int = 128
    acc_bits: int = 32                 # accumulator width B of the power model
    power_model: str = DEFAULT_MODEL   # gates: calibrated gate-level toggle model | registers: register-only
    seed: int = 0
    overwrite: bool = False            # true: a previous run's files in the run dir move to previous/<time>/
    experiment: Any = None             # name, entry, columns, plot of a configs/experiment/*.yaml
    objective: Any = dataclasses.field(default_factory=lambda: ["test_accuracy"])
    sweep: PannSweep = PannSweep()
    accelerator: AcceleratorConfig = AcceleratorConfig()  # energies with data movement on it (pannjax.hw.system)
