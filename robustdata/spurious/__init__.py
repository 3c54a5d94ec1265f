"""Spurious-correlation methods: group utilities, GroupDRO, JTT, DFR, PDE, SPARE and LfF
kernels, and group inference (JTT, clustering, SPARE, EIIL, SSA) as a stage.

Kernels are pure functions (host NumPy with an explicit `np.random.Generator`, or JAX for the
GroupDRO update); `policies.py` and `objectives.py` plug them into the training loop.
"""
