"""pannjax: power-aware deep learning in JAX.

A network is a Flax model whose arithmetic layers each receive a quantizer and an operator
pytree; the same pytrees tell the hardware model (`pannjax.hw`) what each layer costs.
"""

__version__ = "0.1.0"
