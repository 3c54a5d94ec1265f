"""robustdata: robust and data-efficient training methods as jitted JAX kernels.

Importing the package sets `jax_threefry_partitionable=False`: on XLA:CPU the partitionable
threefry makes every jitted function that draws random numbers compile 3-4x slower (measured:
ResNet-20 init 39 s vs 14 s), and the random streams (hence a config hash's numbers) must be
the same from every entry point. Keys are still derived from the config seed only.
"""

import jax as _jax

_jax.config.update("jax_threefry_partitionable", False)
