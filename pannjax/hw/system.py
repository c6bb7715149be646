"""System energy: a layer's data movement through an accelerator's memory hierarchy, by ZigZag.

The cost engine (`pannjax.hw.cost`) prices a layer's arithmetic. On a real accelerator moving weights,
activations and partial sums between DRAM, on-chip SRAM and register files often costs more. ZigZag
(Mei et al., "ZigZag: Enlarging Joint Architecture-Mapping Design Space Exploration for DNN
Accelerators", IEEE Trans. Computers 70(8), 2021; `zigzag-dse`) searches the temporal mapping of a layer
onto an accelerator description (memory levels with their per-access energies and bandwidths, a PE
array, a spatial mapping) and counts every memory access per operand and level:

    E_memory = sum over operands W, I, O and their memory levels l of
               reads(l) * e_read(l) + writes(l) * e_write(l)            (accesses in words of the port width)
    E_layer  = E_compute + E_memory

E_compute is the cost engine's energy of the layer's own operator (MAC, shift-add, additions, XNOR ...),
not ZigZag's per-MAC constant: ZigZag's digital compute term is unit_energy x MACs, independent of the
mapping, so handing it the engine's E_compute / MACs as unit_energy gives the same total and the same
mapping (`zigzag_hardware` writes that file; a test compares).

In-memory layers (an operator wrapped in `pannjax.ops.in_memory.InMemory`) run on the accelerator's
in-memory macro (`in_memory`, a ZigZag IMC hardware file; ZigZag's macro model: Sun, Houshmand, Verhelst,
"Analog or Digital In-memory Computing? Benchmarking through Quantitative Modeling", ICCAD 2023). The file
is a template: per layer its array size becomes the wrapper's `cols` x `rows`, its ADC resolution the
wrapper's `adc_bits` (analog macros), its input bits per cycle `bit_serial`, its operand precisions the
layer's (activations rounded up to a power of two, as ZigZag's model needs) and its cells hold one weight
each. ZigZag then prices the macro itself (cells, DACs, ADCs, adder trees, accumulators, bit-serial
cycles): that is the layer's compute energy (`MemoryCost.macro_energy_pj`, which the cost engine uses in
place of its own), beside the data movement of the macro's memory hierarchy. An accelerator without a
macro refuses in-memory layers, and a macro of the other kind (analog vs digital) too, in one line.

A layer becomes a ZigZag workload (`layer_workload`): convolutions as B, K, C, OY, OX, FY, FX loops (with
G for grouped and depthwise ones), dense layers as B, K, C; operand precisions from the layer's formats
(W: weight bits, I: activation bits, O: the accumulator width B for partial sums, O_final: the
activation width the output is requantised to). ZigZag models dense tensors: a pruned layer's compute is
priced at its density by the engine, its weight traffic as dense.

Results are cached by (workload, accelerator files, search options, ZigZag version): in memory and as
one JSON file per layer in `cache_dir`, so a network, a sweep or an ENOS table maps every distinct layer
once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from pannjax.errors import ConfigError

log = logging.getLogger(__name__)
ACCELERATORS_DIR = Path(__file__).resolve().parents[2] / "configs" / "accelerator"
OPERANDS = ("W", "I", "O")
_MEMORY: dict[str, dict] = {}  # cache key -> result


@dataclasses.dataclass(frozen=True)
class AcceleratorConfig:
    """The accelerator energies are reported on (`accelerator=` of every entry point). `none`: the
    arithmetic alone. Otherwise ZigZag files: `hardware` and `mapping` (relative to configs/accelerator/),
    the mapping search's `lpf_limit` (LOMA's loop prime factor limit: higher searches more temporal
    mappings) and `spatial_mappings` (how many spatial mappings ZigZag generates where the mapping file
    fixes none), `cache_dir` for mapped layers ("" = $XDG_CACHE_HOME/pannjax/zigzag). `in_memory` and
    `in_memory_mapping`: the ZigZag files of the in-memory macro in-memory layers run on ("": none)."""

    name: str = "none"
    hardware: str = ""
    mapping: str = ""
    in_memory: str = ""
    in_memory_mapping: str = ""
    source: str = ""
    lpf_limit: int = 4
    spatial_mappings: int = 3
    cache_dir: str = ""

    def __post_init__(self):
        if self.name == "none":
            return
        keys = ("hardware", "mapping") + (("in_memory", "in_memory_mapping") if self.in_memory or self.in_memory_mapping
                                          else ())
        for key in keys:
            if not getattr(self, key) or not self.path(key).is_file():
                raise ConfigError(f"accelerator.{key}={getattr(self, key)!r}: no ZigZag {key} file there (relative "
                                  f"to {ACCELERATORS_DIR}); choose accelerator=edge or give an existing file")
        for key in ("lpf_limit", "spatial_mappings"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"accelerator.{key}={value!r}: expected a whole number >= 1")

    @property
    def enabled(self) -> bool:
        return self.name != "none"

    def path(self, key: str) -> Path:
        p = Path(getattr(self, key))
        return p if p.is_absolute() else ACCELERATORS_DIR / p

    def cache_path(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir)
        return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pannjax" / "zigzag"


@dataclasses.dataclass(frozen=True)
class MemoryCost:
    """One layer's data movement on an accelerator (per example): energy per operand and memory level
    (pJ), word accesses per operand and level (reads and writes), latency in cycles and the PE array's
    utilisation, as ZigZag's cost model gives them for the best (least energy) mapping it found."""

    energy_pj: float
    energy_by_operand: dict[str, dict[str, float]]   # operand -> level -> pJ
    accesses: dict[str, dict[str, dict[str, int]]]   # operand -> level -> ZigZag's direction -> words
    latency_cycles: float
    utilization: float
    padded_to_bytes: bool = False  # mapped with W and I moved as bytes (`_map`)
    macro_energy_pj: float | None = None  # an in-memory layer's compute: ZigZag's macro model (None: digital)
    macro_energy_by_part: dict[str, float] | None = None  # cells, DACs, ADCs, adder trees, ... (pJ)

    @property
    def operand_energy(self) -> dict[str, float]:
        return {op: float(sum(levels.values())) for op, levels in self.energy_by_operand.items()}

    @property
    def level_energy(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for levels in self.energy_by_operand.values():
            for level, e in levels.items():
                out[level] = out.get(level, 0.0) + e
        return out


_FIELDS = {f.name for f in dataclasses.fields(MemoryCost)}


def _bits(fmt: Any) -> int:
    return int(getattr(fmt, "bits", 32) or 32)


def _pads(layer) -> list[list[int]]:
    """Explicit (lo, hi) pads of a convolution: (rows, columns)."""
    padding = layer.padding
    if isinstance(padding, str):
        import jax

        padding = jax.lax.padtype_to_pads(tuple(layer.input_shape[1:3]), tuple(layer.kernel_shape[:2]),
                                          tuple(layer.strides), padding)
    return [[int(a), int(b)] for a, b in padding]


def layer_workload(layer, acc_bits: int) -> dict:
    """The ZigZag workload of one example through `layer` (a bound layer: kind, shapes, strides, padding,
    groups, x_format, w_format), partial sums at `acc_bits`."""
    precision = {"W": _bits(layer.w_format), "I": _bits(layer.x_format), "O": int(acc_bits),
                 "O_final": _bits(layer.x_format)}
    base = {"id": 0, "name": layer.path, "operand_precision": precision, "operand_source": {"I": 0, "W": 0}}
    if layer.kind == "dense":
        c, k = layer.kernel_shape[-2], layer.kernel_shape[-1]
        return {**base, "operator_type": "Gemm", "equation": "O[b][k]+=I[b][c]*W[k][c]",
                "loop_dims": ["B", "K", "C"], "loop_sizes": [1, int(k), int(c)]}
    kh, kw, cg, co = (int(v) for v in layer.kernel_shape)
    ho, wo = (int(v) for v in layer.output_shape[1:3])
    sh, sw = (int(v) for v in layer.strides)
    g = int(layer.groups)
    pads = _pads(layer)
    conv = {**base, "operator_type": "Conv", "dimension_relations": [f"ix={sw}*ox+1*fx", f"iy={sh}*oy+1*fy"],
            "pr_loop_dims": ["IX", "IY"], "padding": [pads[1], pads[0]]}
    if g == 1:
        return {**conv, "equation": "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]",
                "loop_dims": ["B", "K", "C", "OY", "OX", "FY", "FX"], "loop_sizes": [1, co, cg, ho, wo, kh, kw]}
    return {**conv, "equation": "O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]",
            "loop_dims": ["B", "G", "K", "C", "OY", "OX", "FY", "FX"],
            "loop_sizes": [1, g, co // g, cg, ho, wo, kh, kw]}


def _power_of_two(bits: int) -> int:
    return 1 << max(0, (int(bits) - 1).bit_length())


def macro_hardware(layer, accelerator: AcceleratorConfig) -> str:
    """The ZigZag hardware file (YAML text) of the in-memory macro `layer` runs on: the accelerator's
    `in_memory` template set to the layer's wrapper and precisions (module docstring)."""
    op = layer.operator
    if not accelerator.in_memory:
        raise ConfigError(f"layer {layer.path} computes in memory (mode {op.mode}); accelerator={accelerator.name} has "
                          "no in-memory macro: choose accelerator=aimc or dimc, or mode=digital")
    data = yaml.safe_load(accelerator.path("in_memory").read_text())
    array = data["operational_array"]
    if array.get("imc_type") != ("analog" if op.analog else "digital"):
        raise ConfigError(f"layer {layer.path} computes in mode {op.mode}, but accelerator={accelerator.name}'s macro "
                          f"is {array.get('imc_type')} in-memory: choose accelerator={op.mode}")
    x_format, w_format = op.input_format(layer.x_format), layer.w_format
    if x_format.is_float or w_format.is_float:
        raise ConfigError(f"layer {layer.path}: an in-memory macro computes on fixed-point operands, got {x_format} "
                          f"activations and {w_format} weights; quantize them (quant=uniform, pot, ...)")
    x_bits, w_bits = _power_of_two(x_format.bits), int(w_format.bits)
    array["input_precision"] = [x_bits, w_bits]
    array["bit_serial_precision"] = min(int(op.bit_serial), x_bits)
    if op.analog:
        array["adc_resolution"] = int(op.adc_bits)
    array["sizes"] = [int(op.cols), int(op.rows)] + list(array["sizes"][2:])
    cells = data["memories"]["cells"]
    cells["size"] = w_bits
    for port in cells["ports"]:
        port["bandwidth_min"] = port["bandwidth_max"] = w_bits
    return yaml.safe_dump(data, sort_keys=False)


def zigzag_hardware(accelerator: AcceleratorConfig, unit_energy_pj: float, out: Path) -> Path:
    """The accelerator's ZigZag hardware file with its PE array's per-operation energy set to
    `unit_energy_pj` (written to `out`): ZigZag's own total is then the report's compute + memory."""
    data = yaml.safe_load(accelerator.path("hardware").read_text())
    data["operational_array"]["unit_energy"] = float(unit_energy_pj)
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def _key(workload: dict, hardware: str, mapping: Path, accelerator: AcceleratorConfig) -> str:
    from importlib.metadata import version

    parts = {"workload": {k: v for k, v in workload.items() if k not in ("id", "name")},
             "hardware": hashlib.sha256(hardware.encode()).hexdigest(),
             "mapping": hashlib.sha256(mapping.read_bytes()).hexdigest(),
             "lpf_limit": accelerator.lpf_limit, "spatial_mappings": accelerator.spatial_mappings,
             "zigzag": version("zigzag-dse")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def run_zigzag(workload: dict, hardware: Path, accelerator: AcceleratorConfig, mapping: Path | None = None,
               in_memory: bool = False):
    """ZigZag's best-energy cost model evaluation of one workload on `hardware` with `mapping` (default: the
    accelerator's own mapping file), quietly.

    The stages are those of `zigzag.api.get_hardware_performance_zigzag(..., opt="energy")`, with mixed
    spatial mappings (several layer loops on one array dimension, as ZigZag enables for in-memory macros)
    when `in_memory`, less its pass-through writers (result JSON, pickle, loop-ordering text and memory
    hierarchy PNG, which a cached single-layer evaluation does not keep; the loop-ordering printer also
    fails on a layer the macro holds whole, with no temporal loop left). Its inter-layer data-locality
    stages stay off for every layer, digital or in-memory: each layer's operands start and end in DRAM, so
    layers priced on the PE array and on the macro make the same assumption."""
    from zigzag.mapping.temporal_mapping import TemporalMappingType
    from zigzag.stages.evaluation.cost_model_evaluation import CostModelStage
    from zigzag.stages.main import MainStage
    from zigzag.stages.mapping.spatial_mapping_generation import SpatialMappingGeneratorStage
    from zigzag.stages.mapping.temporal_mapping_generator_stage import TemporalMappingGeneratorStage
    from zigzag.stages.parser.accelerator_parser import AcceleratorParserStage
    from zigzag.stages.parser.workload_parser import WorkloadParserStage
    from zigzag.stages.results.reduce_stages import MinimalEnergyStage, SumStage
    from zigzag.stages.workload_iterator import WorkloadStage

    stages = [WorkloadParserStage, AcceleratorParserStage, SumStage, WorkloadStage, MinimalEnergyStage,
              SpatialMappingGeneratorStage, MinimalEnergyStage, TemporalMappingGeneratorStage, CostModelStage]
    mapping = mapping or accelerator.path("mapping")
    zz = logging.getLogger("zigzag")
    level = zz.level
    zz.setLevel(logging.ERROR)
    try:
        cmes = MainStage(list_of_callables=stages, accelerator=str(hardware), workload=[workload], mapping=str(mapping),
                         loma_lpf_limit=accelerator.lpf_limit, loma_show_progress_bar=False,
                         nb_mappings_generated=accelerator.spatial_mappings,
                         enable_mix_spatial_mapping_generation=in_memory,
                         access_same_data_considered_as_no_access=True,
                         temporal_mapping_type=TemporalMappingType("uneven")).run()
    except ValueError as e:  # ZigZag's validation of the files: one line naming them
        if "Failed to validate" not in str(e):
            raise
        raise ConfigError(f"accelerator {accelerator.name}: ZigZag refuses {hardware.name} or {mapping.name}: "
                          f"{str(e).splitlines()[0][:300]}") from None
    finally:
        zz.setLevel(level)
    return cmes[0][1][0][0]  # (network sum, [(layer evaluation, extra)])


def _memory_cost(cme) -> dict:
    """The JSON-able memory figures of a ZigZag cost model evaluation."""
    hierarchy = cme.accelerator.memory_hierarchy
    energy, accesses = {}, {}
    for layer_op, per_level in cme.mem_energy_breakdown.items():
        mem_op = cme.layer.memory_operand_links.layer_to_mem_op(layer_op)
        names = [level.name for level in hierarchy.get_memory_levels(mem_op=mem_op)]
        op = str(layer_op)
        energy[op] = {names[i]: float(e) for i, e in enumerate(per_level)}
        accesses[op] = {}
        for i, moves in enumerate(cme.memory_word_access[layer_op]):
            accesses[op][names[i]] = {str(direction): int(n) for direction, n in moves.data.items()}
    macro = getattr(cme, "is_imc", False)
    return {"energy_pj": float(cme.mem_energy), "energy_by_operand": energy, "accesses": accesses,
            "latency_cycles": float(cme.latency_total2), "utilization": float(cme.mac_utilization2),
            "macro_energy_pj": float(cme.mac_energy) if macro else None,
            "macro_energy_by_part": {k: float(v) for k, v in cme.mac_energy_breakdown.items()} if macro else None}


def _map(path: str, workload: dict, hardware_text: str, mapping: Path, accelerator: AcceleratorConfig,
         in_memory: bool = False) -> dict:
    """ZigZag's memory figures of `workload` on the hardware file `hardware_text`. Where its temporal mapping
    search finds no loop order for operands narrower than a byte (seen: 4-bit weights of a dense layer in the
    8-bit weight register), a layer on the PE array is mapped again with W and I moved as bytes, and the
    result says so (`padded_to_bytes`); an in-memory layer is not (its macro is built for its widths)."""
    from zigzag.opt.loma.engine import NoValidLoopOrderingFoundException

    with tempfile.TemporaryDirectory(prefix="pannjax-hw-") as tmp:
        hardware = Path(tmp) / f"{accelerator.name}.hardware.yaml"
        hardware.write_text(hardware_text)
        try:
            return {**_memory_cost(run_zigzag(workload, hardware, accelerator, mapping, in_memory)),
                    "padded_to_bytes": False}
        except NoValidLoopOrderingFoundException:
            pass
        precision = workload["operand_precision"]
        if in_memory or min(precision["W"], precision["I"]) >= 8:  # a macro's cells hold the weights at their width
            raise ConfigError(f"layer {path}: ZigZag finds no mapping on accelerator {accelerator.name} "
                              f"(operand precision {precision}); try a larger accelerator.lpf_limit")
        log.warning("layer %s: ZigZag maps no %d-bit W / %d-bit I loop order on %s; its data movement is "
                    "priced with them moved as bytes", path, precision["W"], precision["I"], accelerator.name)
        wide = {**workload, "operand_precision": {**precision, "W": max(8, precision["W"]),
                                                  "I": max(8, precision["I"])}}
        return {**_memory_cost(run_zigzag(wide, hardware, accelerator, mapping, in_memory)), "padded_to_bytes": True}


def memory_cost(layer, accelerator: AcceleratorConfig, acc_bits: int) -> MemoryCost:
    """The data movement of one example through `layer` on `accelerator` (cached; module docstring)."""
    if not accelerator.enabled:
        raise ConfigError("memory_cost: accelerator=none has no memory hierarchy")
    workload = layer_workload(layer, acc_bits)
    in_memory = getattr(layer.operator, "mode", "digital") != "digital"
    if not in_memory:
        hardware, mapping = accelerator.path("hardware").read_text(), accelerator.path("mapping")
    else:
        hardware, mapping = macro_hardware(layer, accelerator), accelerator.path("in_memory_mapping")
    key = _key(workload, hardware, mapping, accelerator)
    if key not in _MEMORY:
        path = accelerator.cache_path() / f"{key}.json"
        try:
            cached = json.loads(path.read_text())
            if not isinstance(cached, dict) or set(cached) != _FIELDS:
                raise ValueError(path)
            _MEMORY[key] = cached
        except (OSError, ValueError):  # not mapped yet, or a torn or foreign file: map it (again)
            _MEMORY[key] = _map(layer.path, workload, hardware, mapping, accelerator, in_memory)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp_path = path.with_suffix(f".{os.getpid()}.tmp")
            tmp_path.write_text(json.dumps(_MEMORY[key]))
            os.replace(tmp_path, path)  # atomic: a concurrent run reads the old file or the new one
    return MemoryCost(**_MEMORY[key])


__all__ = ["AcceleratorConfig", "MemoryCost", "layer_workload", "macro_hardware", "memory_cost", "run_zigzag",
           "zigzag_hardware"]
