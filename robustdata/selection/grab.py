"""GraB example ordering for network training (Lu et al., NeurIPS'22; the convex study's
`grab` ordering in ordering_convex.py, whose balancing kernel this policy runs).

While an epoch runs, each batch's gradient proxies are probed at the parameters its step is
about to use (the paper's in-training gradients, as last-layer proxies) and balanced online
against the previous epoch's mean; the order they build is the next epoch's, cut into
consecutive batches. The balancing runs in float64, one batch at a time, so a run killed
mid-epoch resumes from its carry.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robustdata.data.policies import EpochPolicy, PolicyContext, batches_of
from robustdata.registry import POLICIES, ConfigError
from robustdata.selection import ordering_convex
from robustdata.selection.policies import check_finite, classes_per_batch

_balance = jax.jit(ordering_convex.grab_balance)


@POLICIES.register("grab")
class GraB(EpochPolicy):
  """GraB: epoch 0 in random order; every later epoch in the order that greedy sign balancing
  of the previous epoch's centred gradient proxies (softmax - onehot, or the last linear layer's
  gradient with use_linear) built, each proxy taken at the step that visited its example."""

  DEFAULTS = {
      "use_linear": False,   # balance the last-linear-layer gradient instead of softmax - onehot
  }

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.selection_time_s = 0.0
    self.stale_mean: np.ndarray | None = None  # mean proxy of the last finished epoch
    self.proxy_sum: np.ndarray | None = None   # sum of this epoch's proxies so far
    self.carry: tuple[np.ndarray, int, int, np.ndarray] | None = None  # (s, left, right, order)
    self.visited = 0

  def plan_epoch(self, ctx: PolicyContext) -> list[tuple[np.ndarray, np.ndarray]]:
    n = len(self.train)
    if self.carry is None:  # the first epoch
      order = self.rng.permutation(n)
    else:
      if self.visited != n:
        raise ConfigError(f"policy 'grab' balanced {self.visited} of {n} examples in epoch "
                          f"{self.epoch}; it needs whole epochs over the train split")
      order = self.carry[3]
      self.stale_mean = self.proxy_sum / n
    self.carry, self.proxy_sum, self.visited = None, None, 0
    return batches_of(np.asarray(order, np.int64), self.batch_size)

  def next_batch(self, ctx: PolicyContext) -> tuple[np.ndarray, np.ndarray]:
    indices, weights = super().next_batch(ctx)
    jax.block_until_ready(ctx.state)  # the last step runs asynchronously: not selection time
    start = time.perf_counter()
    proxies = ctx.probe("proxy_linear" if self.cfg.use_linear else "proxy", indices)
    self.examples_probed += len(indices)
    check_finite(proxies, f"grab at step {ctx.step}")
    proxies = np.asarray(proxies, np.float64).reshape(len(indices), -1)
    d = proxies.shape[1]
    with jax.enable_x64(True):
      if self.carry is None:  # the epoch's first batch
        s, left, right, order = ordering_convex.grab_start(len(self.train), jnp.zeros(d))
        self.carry = (np.asarray(s), int(left), int(right), np.asarray(order))
        self.proxy_sum = np.zeros(d)
      if self.stale_mean is None:  # the first epoch is centred at 0, as in the convex study
        self.stale_mean = np.zeros(d)
      s, left, right, order = _balance(
          (jnp.asarray(self.carry[0]), jnp.int32(self.carry[1]), jnp.int32(self.carry[2]),
           jnp.asarray(self.carry[3], jnp.int32)),
          jnp.asarray(proxies), jnp.asarray(indices, jnp.int32), jnp.asarray(self.stale_mean))
      self.carry = (np.asarray(s, np.float64), int(left), int(right), np.asarray(order, np.int32))
    self.proxy_sum += proxies.sum(axis=0)
    self.visited += len(indices)
    self.selection_time_s += time.perf_counter() - start
    return indices, weights

  def state_dict(self) -> dict[str, Any]:
    listed = lambda a: None if a is None else np.asarray(a).tolist()
    carry = None if self.carry is None else [listed(self.carry[0]), self.carry[1],
                                             self.carry[2], listed(self.carry[3])]
    return {**super().state_dict(), "selection_time_s": self.selection_time_s,
            "stale_mean": listed(self.stale_mean), "proxy_sum": listed(self.proxy_sum),
            "carry": carry, "visited": self.visited}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    super().load_state_dict(state)
    array = lambda a, dtype=np.float64: None if a is None else np.asarray(a, dtype)
    self.selection_time_s = float(state["selection_time_s"])
    self.stale_mean, self.proxy_sum = array(state["stale_mean"]), array(state["proxy_sum"])
    c = state["carry"]
    self.carry = None if c is None else (array(c[0]), int(c[1]), int(c[2]), array(c[3], np.int32))
    self.visited = int(state["visited"])

  def results(self) -> dict[str, Any]:
    return {"selection_time_s": self.selection_time_s,
            "classes_per_batch": classes_per_batch(self.plan_indices, self.train.y)}
