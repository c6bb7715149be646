"""From configuration (plain dicts, e.g. Hydra's `quant`, `op`, `layers` groups) to pytrees.

Three registries turn config names into objects, and code outside the package extends them:
  * quantization schemes: `quant.name` -> function(**fields) -> (quantizer_w, quantizer_x)
  * operators:            `op.name`    -> Operator class (fields: its own); `op.mode` wraps it in an in-memory
                          macro (`pannjax.ops.in_memory.wrap`: kind digital | aimc | dimc, the `mode` group)
  * (models and data sets have their own registries in `pannjax.models` and `pannjax.data`)

Unknown names and unknown or invalid fields raise `ConfigError` with one line naming the key.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from pannjax.errors import ConfigError
from pannjax.nn import ArithPolicy, LayerArith
from pannjax.ops import AdderOperator, BwnOperator, MacOperator, MfOperator, Operator, XnorOperator
from pannjax.ops.in_memory import wrap
from pannjax.ops.shift import ShiftOperator
from pannjax.quant import FloatQuantizer, Quantizer, UniformQuantizer
from pannjax.quant.apot import ApotQuantizer
from pannjax.quant.pot import PotQuantizer

QuantScheme = Callable[..., tuple[Quantizer, Quantizer]]

#: conventional first/last layer names of every pannjax model
FIRST_LAST_PATTERN = r"^(stem|head)$"


def _as(field: str, cls: type, **fields: Any) -> Quantizer:
    """`cls(**fields)`, a bad `bits` reported under the scheme's own option name (`x_bits=0: ...`), which
    `_call` prefixes with the config key (`quant.x_bits=0: ...`)."""
    try:
        return cls(**fields)
    except ConfigError as e:
        text = str(e)
        raise ConfigError(field + text[len("bits"):] if text.startswith("bits=") else text) from None


def float_scheme() -> tuple[Quantizer, Quantizer]:
    """Full precision: fp32 weights and activations."""
    return FloatQuantizer(), FloatQuantizer()


def uniform_scheme(w_bits: int = 4, x_bits: int = 4, w_per_channel: bool = True, w_step_mode: str = "lsq",
                   x_step_mode: str = "lsq", x_signed: bool | None = None) -> tuple[Quantizer, Quantizer]:
    """Uniform weights (signed, per output channel by default) and activations (signedness follows the
    layer's input unless `x_signed` is set), LSQ-learned steps by default."""
    return (_as("w_bits", UniformQuantizer, bits=w_bits, signed=True, per_channel=w_per_channel,
                step_mode=w_step_mode),
            _as("x_bits", UniformQuantizer, bits=x_bits, signed=x_signed, step_mode=x_step_mode))


def pot_scheme(w_bits: int = 4, x_bits: int = 4, w_zero_level: bool = False, w_per_channel: bool = True,
               w_scale_mode: str = "learned", x_step_mode: str = "lsq",
               x_signed: bool | None = None) -> tuple[Quantizer, Quantizer]:
    """Power-of-two weights (sign + exponent; `w_zero_level` reserves a code for zero, see
    pannjax/quant/pot.py) and uniform activations as in `uniform_scheme`."""
    return (_as("w_bits", PotQuantizer, bits=w_bits, zero_level=w_zero_level, per_channel=w_per_channel,
                scale_mode=w_scale_mode),
            _as("x_bits", UniformQuantizer, bits=x_bits, signed=x_signed, step_mode=x_step_mode))


def apot_scheme(w_bits: int = 5, x_bits: int = 4, w_k: int = 2, w_per_channel: bool = True,
                w_scale_mode: str = "learned", x_step_mode: str = "lsq",
                x_signed: bool | None = None) -> tuple[Quantizer, Quantizer]:
    """Additive powers-of-two weights (k bits per term, pannjax/quant/apot.py) and uniform activations."""
    return (_as("w_bits", ApotQuantizer, bits=w_bits, k=w_k, per_channel=w_per_channel,
                scale_mode=w_scale_mode),
            _as("x_bits", UniformQuantizer, bits=x_bits, signed=x_signed, step_mode=x_step_mode))


def pann_scheme(budget_bits: int | None = 2, budget_signed: bool = False, budget_toggles: float | None = None,
                x_bits: int | None = None,
                additions: float | None = None, accumulation: str = "split", scale_rule: str = "exact",
                w_per_channel: bool = True, x_step_mode: str = "lsq", fan_in: int = 256,
                power_model: str = "gates") -> tuple[Quantizer, Quantizer]:
    """PANN (arXiv 2202.02783): weights as addition counts with mean R per element (pannjax/quant/pann.py)
    and unsigned b_x-bit activations; (b_x, R) from the power budget of a `budget_bits` MAC network
    (pannjax/pann/budget.py, at reduction length `fan_in`) -- or of `budget_toggles` toggles per MAC, with
    budget_bits=None -- unless `x_bits`/`additions` override them. `power_model`: the toggle model of the
    budget ("gates" or "registers", `pannjax.hw.unit_toggles`)."""
    from pannjax.pann.budget import Layer, solve_budget
    from pannjax.quant.pann import PannQuantizer

    if x_bits is None or additions is None:
        choice = solve_budget(budget_bits, budget_signed, budget_toggles, layers=(Layer(1, fan_in),), x_bits=x_bits,
                              additions=additions, accumulation=accumulation, model=power_model)
        x_bits, additions = choice.x_bits, choice.additions
    return (PannQuantizer(additions=float(additions), accumulation=accumulation, scale_rule=scale_rule,
                          per_channel=w_per_channel),
            _as("x_bits", UniformQuantizer, bits=x_bits, signed=None, step_mode=x_step_mode))


_QUANT_SCHEMES: dict[str, QuantScheme] = {"float": float_scheme, "uniform": uniform_scheme,
                                          "pot": pot_scheme, "apot": apot_scheme, "pann": pann_scheme}
_OPERATORS: dict[str, type] = {"mac": MacOperator, "shift": ShiftOperator, "adder": AdderOperator,
                               "mf": MfOperator, "bwn": BwnOperator, "xnor": XnorOperator}


def register_quant_scheme(name: str, scheme: QuantScheme) -> None:
    """Make `quant=<name>` build `scheme(**fields)`."""
    _QUANT_SCHEMES[name] = scheme


def register_operator(name: str, cls: type) -> None:
    """Make `op=<name>` build `cls(**fields)` (in the computing mode `op.mode` gives)."""
    if not issubclass(cls, Operator):
        raise ConfigError(f"operator {name!r}: {cls.__name__} does not subclass pannjax.ops.Operator")
    _OPERATORS[name] = cls


def load_plugins(entries: list[str] | tuple = ()) -> None:
    """Import user modules that extend the registries (config key `plugins`), before anything is built:
    each entry is a module name on the Python path (``my_lab.ops``) or a path to a ``.py`` file
    (``./ternary.py``); importing it runs its `register_operator`/`register_quant_scheme` calls.
    See docs/extending.md."""
    for entry in entries:
        entry = str(entry)
        try:
            if entry.endswith(".py"):
                path = Path(entry).expanduser().resolve()
                if not path.is_file():
                    raise ConfigError(f"plugins: file {path} does not exist")
                spec = importlib.util.spec_from_file_location(f"pannjax_plugin_{path.stem}", path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module
                spec.loader.exec_module(module)
            else:
                importlib.import_module(entry)
        except ImportError as e:
            raise ConfigError(f"plugins: cannot import {entry!r} ({e}); give a module on PYTHONPATH or a .py file path")


def quant_scheme_names() -> list[str]:
    return sorted(_QUANT_SCHEMES)


def operator_names() -> list[str]:
    return sorted(_OPERATORS)


def _call(fn: Callable, fields: Mapping[str, Any], where: str) -> Any:
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(fields) - set(params))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]} is not a known option; valid: {', '.join(sorted(params))}")
    try:
        return fn(**fields)
    except ConfigError as e:  # a message about one of fn's options gets the full dotted key
        text = str(e)
        raise (ConfigError(f"{where}.{text}") if text.split("=")[0] in params else e) from None


def build_quantizers(cfg: Mapping[str, Any], where: str = "quant") -> tuple[Quantizer, Quantizer]:
    """(quantizer_w, quantizer_x) from `{name: ..., <fields>}`; `first_last` is handled by build_policy."""
    fields = dict(cfg)
    name = fields.pop("name", None)
    fields.pop("first_last", None)
    if name not in _QUANT_SCHEMES:
        raise ConfigError(f"{where}.name={name!r} is unknown; available: {', '.join(quant_scheme_names())}")
    return _call(_QUANT_SCHEMES[name], fields, where)


def build_operator(cfg: Mapping[str, Any], where: str = "op") -> Operator:
    fields = dict(cfg)
    name = fields.pop("name", None)
    if name not in _OPERATORS:
        raise ConfigError(f"{where}.name={name!r} is unknown; available: {', '.join(operator_names())}")
    mode_fields = dict(fields.pop("mode", None) or {})
    cls = _OPERATORS[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]} is not a known option of operator {name!r}; "
                          f"valid: {', '.join(sorted(known | {'mode'}))}")
    inner = cls(**fields)
    try:
        return wrap(inner, **mode_fields)
    except ConfigError as e:  # "mode.<key>=...": name the full dotted key
        raise ConfigError(f"{where}.{e}" if str(e).startswith("mode.") else str(e)) from None


def check_patterns(patterns: Mapping[str, Any], paths: list[str] | None) -> None:
    """Every `{config key: regex}` is a valid regex that matches (`re.search`) at least one of the model's
    layer `paths` (when given); a one-line ConfigError naming the key and the paths otherwise. None is
    skipped."""
    for key, pattern in patterns.items():
        if pattern is None:
            continue
        try:
            regex = re.compile(str(pattern))
        except re.error as e:
            raise ConfigError(f"{key}={pattern!r} is not a regular expression ({e.msg} at position {e.pos})") from None
        if paths is not None and not any(regex.search(p) for p in paths):
            raise ConfigError(f"{key}={pattern!r} matches no layer of the model; its layers: {', '.join(paths)}")


def build_policy(quant: Mapping[str, Any], op: Mapping[str, Any],
                 layers: list[Mapping[str, Any]] | tuple = ()) -> ArithPolicy:
    """The network's `ArithPolicy`.

    quant.first_last: "same" (default), "float" or "int8" - the arithmetic of the first layer (``stem``)
    and the classifier (``head``), which quantization papers usually keep at higher precision ("int8": 8-bit
    uniform weights and activations on a MAC operator, in the configured computing mode).
    layers: ordered per-layer overrides `[{pattern: <regex on module path>, quant: {...}, op: {...}}]`.
    """
    qw, qx = build_quantizers(quant)
    base_op = build_operator(op)
    base_op.check_weights(qw)  # a quantizer the operator cannot compute with fails here, not after training
    overrides: list[tuple[str, LayerArith]] = []
    first_last = quant.get("first_last", "same")
    if first_last == "float":
        overrides.append((FIRST_LAST_PATTERN, LayerArith(*float_scheme())))
    elif first_last == "int8":
        # 8-bit uniform weights are multiplied: the first/last layers are MACs whatever the network's operator
        overrides.append((FIRST_LAST_PATTERN, LayerArith(*uniform_scheme(w_bits=8, x_bits=8),
                                                         base_op.in_mode_of(MacOperator()))))
    elif first_last != "same":
        raise ConfigError(f"quant.first_last={first_last!r}: expected same, float or int8")
    for i, layer in enumerate(layers):
        layer = dict(layer)
        where = f"layers[{i}]"
        pattern = layer.pop("pattern", None)
        if pattern is None:
            raise ConfigError(f"{where}.pattern is missing: give a regex on the layer path, e.g. '^stem$'")
        check_patterns({f"{where}.pattern": pattern}, None)
        quant_i, op_i = layer.pop("quant", None), layer.pop("op", None)
        if layer:
            raise ConfigError(f"{where}.{sorted(layer)[0]} is not a known option; valid: pattern, quant, op")
        w_i, x_i = build_quantizers(quant_i, f"{where}.quant") if quant_i else (None, None)
        o_i = build_operator(op_i, f"{where}.op") if op_i else None
        (o_i or base_op).check_weights(w_i or qw, f"{where}.op" if o_i else "op")
        overrides.append((pattern, LayerArith(w_i, x_i, o_i)))
    return ArithPolicy(LayerArith(qw, qx, base_op), tuple(overrides))
