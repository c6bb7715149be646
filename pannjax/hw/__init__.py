"""Power and energy models of DNN arithmetic (PANN, arXiv 2202.02783, Sec. 3): analytic bit-flip models,
a bit-accurate toggle simulator (JAX), energy tables with sources, and a per-layer network report.
Imports no Flax (the report reaches models only through `pannjax.nn.bound_layers`)."""

from pannjax.hw.accelerator import AcceleratorModel, PeLayer, energy_ratio, pe_layers
from pannjax.hw.bitflips import (MacToggles, OperandStats, bitflips_accumulator, bitflips_adder, bitflips_mac,
                                 bitflips_multiplier, bitflips_partial_products, bitflips_product_register,
                                 bitflips_register, bitflips_repeated_addition, bitflips_sign_extension,
                                 product_distribution)
from pannjax.hw.cost import LayerCost, Pricing, price_layer, price_network
from pannjax.hw.energy import DEFAULT_TABLE, EnergyTable
from pannjax.hw.report import LayerPower, NetworkReport, build_report, layer_streams
from pannjax.hw.study import run_power_study
from pannjax.hw.toggles import equivalent_additions, unit_toggles
from pannjax.hw.units import OpCount, UnitOp, table_ops
from pannjax.hw.toggle_sim import (COMPONENTS, DATAFLOWS, MacConfig, mean_toggles, reference_toggles,
                                   simulate_toggles, toggle_counts)

__all__ = [
    "LayerCost", "OpCount", "Pricing", "UnitOp", "price_layer", "price_network", "table_ops", "unit_toggles",
    "AcceleratorModel", "PeLayer", "energy_ratio", "pe_layers",
    "COMPONENTS", "DATAFLOWS", "DEFAULT_TABLE", "EnergyTable", "LayerPower", "MacConfig", "MacToggles",
    "NetworkReport", "OperandStats", "bitflips_accumulator", "bitflips_adder", "bitflips_mac",
    "bitflips_multiplier", "bitflips_partial_products", "bitflips_product_register", "bitflips_register",
    "bitflips_repeated_addition", "bitflips_sign_extension", "build_report", "equivalent_additions",
    "layer_streams", "mean_toggles", "product_distribution", "reference_toggles", "run_power_study", "simulate_toggles",
    "toggle_counts",
]
