"""The `search` block's options outside the jitted search step (`SearchConfig` holds those inside it):
the candidate library, what is searched and compared with, retraining, the baseline and the energy model.
Their defaults here are the only ones (`pannjax.schema` makes the config schema from this dataclass);
`configs/search.yaml` supplies the candidate library, `use` and `reference`."""

from __future__ import annotations

import dataclasses
from typing import Any

from pannjax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class SearchRun:
    """`candidates`: name -> {quant, op} (`pannjax.build`); `use`: the names searched in every layer;
    `reference`: the "all-MAC" network every energy is compared with; `exclude`: a regex on layer paths kept
    at the reference arithmetic; `retrain_epochs` of fine-tuning the derived network from the searched
    weights at `retrain_learning_rate` (null: the trainer's), `baseline_epochs` of training the
    all-reference network (0: none of either); `acc_bits`: the accumulator width of every energy figure;
    `energy_table`: null for pannjax/hw/tables/energy_45nm.yaml; `label`: a name for the run in sweep tables
    (results.json `label`; e.g. the method of a matched-energy comparison, configs/method/)."""

    candidates: dict[str, Any]
    use: list[str]
    reference: str
    exclude: str | None = None
    retrain_epochs: int = 10
    retrain_learning_rate: float | None = 0.02
    baseline_epochs: int = 20
    acc_bits: int = 32
    energy_table: str | None = None
    label: str | None = None

    def __post_init__(self):
        for key in ("retrain_epochs", "baseline_epochs"):
            if getattr(self, key) < 0:
                raise ConfigError(f"search.{key}={getattr(self, key)!r}: expected a whole number >= 0 (0: none)")
        if self.retrain_learning_rate is not None and not self.retrain_learning_rate > 0:
            raise ConfigError(f"search.retrain_learning_rate={self.retrain_learning_rate!r}: expected a number > 0")
        if not 2 <= self.acc_bits <= 64:
            raise ConfigError(f"search.acc_bits={self.acc_bits!r}: expected an accumulator width in 2..64 bits")
