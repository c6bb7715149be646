"""The ENOS search space: per layer, one choice among named candidates (operator x computing mode x bits).

A `Candidate` is a named `LayerArith` (weight quantizer, activation quantizer, operator -- digital or
wrapped in an in-memory macro, `pannjax.ops.in_memory`), so "8-bit MAC", "4-bit shift on PoT weights" and
"8-bit MAC in an analog crossbar with 6-bit ADCs" are all the same kind of object, built from the same
configs as ordinary layers (`pannjax.build.build_quantizers` / `build_operator`): an operator registered
in `pannjax.build` is a candidate as soon as a config names it (Nasrin et al., ENOS, arXiv 2104.05217:
operators and computing modes are chosen layer-wise).

`SearchSpace` says which layers are searched (every QConv/QDense whose module path does not match
`exclude`) and which candidate is the *reference* (the all-MAC network every energy is compared with;
excluded layers keep the reference arithmetic). `derived_policy` turns a per-layer assignment into an
ordinary `ArithPolicy` (one exact-path override per layer), i.e. a normal pannjax network.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from pannjax.build import build_operator, build_quantizers
from pannjax.errors import ConfigError
from pannjax.nn import ArithPolicy, LayerArith


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One per-layer choice: `name` (used in reports and parameter names) and its arithmetic."""

    name: str
    arith: LayerArith

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", self.name):
            raise ConfigError(f"candidate name {self.name!r}: use letters, digits and '_' (it names parameters)")
        if None in (self.arith.quantizer_w, self.arith.quantizer_x, self.arith.operator):
            raise ConfigError(f"candidate {self.name!r} must set quantizer_w, quantizer_x and operator")


def build_candidate(name: str, cfg: Mapping[str, Any]) -> Candidate:
    """`{quant: {name: ..., <fields>}, op: {name: ..., mode: {...}}}` -> Candidate."""
    cfg = dict(cfg)
    quant, op = cfg.pop("quant", None), cfg.pop("op", None)
    if cfg:
        raise ConfigError(f"search.candidates.{name}.{sorted(cfg)[0]} is not a known option; valid: quant, op")
    if quant is None or op is None:
        raise ConfigError(f"search.candidates.{name} needs both 'quant' and 'op' blocks")
    qw, qx = build_quantizers(quant, f"search.candidates.{name}.quant")
    return Candidate(name, LayerArith(qw, qx, build_operator(op, f"search.candidates.{name}.op")))


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Candidates searched in every searchable layer, the reference candidate, excluded layers."""

    candidates: tuple[Candidate, ...]
    reference: Candidate
    exclude: str | None = None

    def __post_init__(self):
        if len(self.candidates) < 1:
            raise ConfigError("search.use must name at least one candidate")
        names = [c.name for c in self.candidates]
        if len(set(names)) != len(names):
            raise ConfigError(f"search.use names a candidate twice: {names}")
        if self.exclude is not None:
            try:
                re.compile(self.exclude)
            except re.error as e:
                raise ConfigError(f"search.exclude={self.exclude!r} is not a valid regex: {e}") from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.candidates)

    def searches(self, path: str) -> bool:
        return self.exclude is None or re.search(self.exclude, path) is None

    def reference_policy(self) -> ArithPolicy:
        """Every layer with the reference arithmetic (the all-MAC network)."""
        return ArithPolicy(self.reference.arith)

    def uniform_policy(self, index: int) -> ArithPolicy:
        """Every searchable layer with candidate `index` (excluded layers: reference)."""
        return self.derived_policy({}, default=self.candidates[index])

    def derived_policy(self, assignment: Mapping[str, str], default: Candidate | None = None) -> ArithPolicy:
        """`ArithPolicy` of a discrete assignment {layer path: candidate name}. Layers not in the
        assignment get `default` if searchable (else the reference); excluded layers the reference."""
        by_name = {c.name: c for c in self.candidates}
        overrides = []
        if default is not None:
            overrides.append((r".*", default.arith))
            if self.exclude is not None:
                overrides.append((self.exclude, self.reference.arith))
        for path, name in assignment.items():
            if name not in by_name:
                raise ConfigError(f"assignment of layer {path!r}: {name!r} is not a candidate ({', '.join(by_name)})")
            overrides.append((f"^{re.escape(path)}$", by_name[name].arith))
        return ArithPolicy(self.reference.arith, tuple(overrides))


def build_search_space(candidates: Mapping[str, Mapping[str, Any]], use: list[str] | tuple[str, ...],
                       reference: str, exclude: str | None = None) -> SearchSpace:
    """From config: all defined `candidates`, the names to search (`use`), the `reference` name."""
    for key, name in (*((f"search.use[{i}]", n) for i, n in enumerate(use)), ("search.reference", reference)):
        if name not in candidates:
            raise ConfigError(f"{key}={name!r} is not defined under search.candidates "
                              f"(defined: {', '.join(candidates)})")
    built = {name: build_candidate(name, candidates[name]) for name in dict.fromkeys((*use, reference))}
    return SearchSpace(tuple(built[n] for n in use), built[reference], exclude)
