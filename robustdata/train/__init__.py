"""Training: state, step builders, gradient rules, objectives, policies, loop, checkpoints."""
