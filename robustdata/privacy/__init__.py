"""DP-SGD kernels: per-example clipping (vmap, ghost / book-keeping, loop), Gaussian noise,
Poisson and shuffle sampling, accounting, magnitude pruning, and the gradient rules built
from them. `register.py` registers the rules under `config.privacy.mode`.
"""
