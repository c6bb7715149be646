"""ENOS: energy-aware operator and computing-mode search (Nasrin et al., arXiv 2104.05217).

space    candidates (operator x mode x bits) and the derived `ArithPolicy`
layers   SearchConv / SearchDense and the hook that makes any model's QConv/QDense searchable
energy   per-layer per-candidate energy table and the expected energy E(alpha)
steps    the four jitted search steps (single, bilevel, sequential, variational)
loop     the search loop; derive: discrete assignment and inherited weights; runner: the experiment
"""

from pannjax.search.derive import assignment, inherit_params
from pannjax.search.energy import EnergyModel, energy_model
from pannjax.search.layers import GATES, SearchConv, SearchDense, search_apply_fn, search_init, search_layers
from pannjax.search.loop import run_search
from pannjax.search.space import Candidate, SearchSpace, build_candidate, build_search_space
from pannjax.search.steps import VARIANTS, SearchConfig, SearchState, make_search_step

__all__ = ["GATES", "VARIANTS", "Candidate", "EnergyModel", "SearchConfig", "SearchConv", "SearchDense", "SearchSpace",
           "SearchState", "assignment", "build_candidate", "build_search_space", "energy_model", "inherit_params",
           "make_search_step", "run_search", "search_apply_fn", "search_init", "search_layers"]
