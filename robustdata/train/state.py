"""The train state: everything a step reads and writes, as one pytree."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """step, params, model state (BatchNorm statistics), optimizer state, method state, base key.

  The per-step key is `fold_in(rng, step)`, so a resumed run draws the same randomness.
  """

  step: jnp.ndarray
  params: Any
  model_state: Any
  opt_state: Any
  method_state: Any
  rng: jax.Array


def create_train_state(model, tx: optax.GradientTransformation, *, rng: jax.Array,
                       input_shape: tuple[int, ...], method_state: Any = None) -> TrainState:
  """Initialises params (on a batch of 1) and the optimizer state."""
  init_key, state_key = jax.random.split(rng)
  variables = model.init(init_key, jnp.zeros((1, *input_shape), jnp.float32), train=False)
  variables = dict(variables)
  params = variables.pop("params")
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=variables,
                    opt_state=tx.init(params),
                    method_state={} if method_state is None else method_state,
                    rng=state_key)
