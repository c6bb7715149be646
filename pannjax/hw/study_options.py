"""The options of `experiments/power.py` (the toggle and power study, `pannjax.hw.study`) and their
defaults, the only ones: `pannjax.schema` makes the config schema from these dataclasses. Ranges and
relations between widths are checked by `pannjax.hw.study.check_config`; widths given as one number or a
list (`bits`, `acc_bits`, `weight_bits`, `fan_in`) are typed `Any` and checked there."""

from __future__ import annotations

import dataclasses
from typing import Any

from pannjax.hw.system import AcceleratorConfig


@dataclasses.dataclass(frozen=True)
class PowerPann:
    """PANN's repeated-addition unit: activation widths x additions R per input element."""

    x_bits: list[int] = dataclasses.field(default_factory=lambda: [2, 3, 4, 5, 6, 7, 8])
    additions: list[Any] = dataclasses.field(default_factory=lambda: [1, 2, 4, 8])
    signed: bool = False               # PANN's unsigned accumulation


@dataclasses.dataclass(frozen=True)
class PowerSimulate:
    units: int = 1024                  # MAC units simulated per check (x fan_in MACs each)
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class PowerGates:
    """Both toggle models and the gate-level simulator (`pannjax.hw.gate_study`)."""

    enabled: bool = True
    units: list[str] = dataclasses.field(
        default_factory=lambda: ["mac", "mult", "add", "shift", "absdiff", "sign_select", "mf", "xnor"])
    shift_w_bits: int = 3              # PoT weight width of the shift unit (sign + exponent field)
    additions: float = 2.0             # R of the PANN addition unit's rows
    check_bits: list[int] = dataclasses.field(default_factory=lambda: [2, 4, 8])  # re-simulated at gate level
    check_acc_bits: list[int] = dataclasses.field(default_factory=lambda: [16, 32])
    operations: int = 16384            # simulated operations per check
    arch_bits: list[int] = dataclasses.field(default_factory=lambda: [4, 8])  # signed b x b MACs compared


@dataclasses.dataclass(frozen=True)
class PowerStudy:
    bits: Any = dataclasses.field(default_factory=lambda: [2, 3, 4, 5, 6, 7, 8])  # b for b x b MACs
    acc_bits: Any = dataclasses.field(default_factory=lambda: [16, 24, 32])     # accumulator widths B
    main_acc_bits: int = 32            # B of the MAC-vs-additions and equivalence tables
    fan_in: Any = 256                  # products accumulated per output
    weight_bits: Any = dataclasses.field(default_factory=lambda: [2, 4, 8])  # "quantize only the weights", b_x = 8
    pann: PowerPann = PowerPann()
    simulate: PowerSimulate = PowerSimulate()
    gates: PowerGates = PowerGates()
    plots: bool = True
    overwrite: bool = False            # true: a previous run's files in the run dir move to previous/<time>/
    # an export run dir (experiments/export.py): instead of the study, the exported program's power report,
    # simulated on the operand streams it computes on `power_batch` test images (`pannjax.export.power`)
    checkpoint: str = ""
    power_batch: int = 64
    accelerator: AcceleratorConfig = AcceleratorConfig()  # checkpoint=: data movement on it (pannjax.hw.system)
