"""Integer deployment: a trained network as an integer-only program (`build_program`), run by `run`, saved
and loaded as ``program.json`` + ``weights.safetensors`` + ``model.stablehlo`` (`save`, `load`)."""

from pannjax.export.files import load, load_stablehlo, save
from pannjax.export.program import Program, build_program
from pannjax.export.runner import layer_inputs, run, run_codes

__all__ = ["Program", "build_program", "layer_inputs", "load", "load_stablehlo", "run", "run_codes", "save"]
