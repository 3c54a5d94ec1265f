"""CLIP loss kernels: loss+grad time and peak temporary memory of the full-logits form vs the
local-loss form (shard_map over a 'data' mesh) at global batch 1024 and 4096 with 512-dim
embeddings, and RoCLIP pool-matching cost vs pool size. Prints tables with ratios.

  python benchmarks/clip.py [--quick] [--devices 8]

On CPU the mesh uses fake host devices (set before JAX is imported); memory is XLA's compiled
temp-buffer size (`memory_analysis().temp_size_in_bytes`) of the loss+grad program.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _parse():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true", help="batch 1024/4096 with 2 repeats, small pools")
  p.add_argument("--devices", type=int, default=8, help="fake CPU devices for the mesh")
  p.add_argument("--dim", type=int, default=512)
  return p.parse_args()


ARGS = _parse()
if "jax" not in sys.modules:
  os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={ARGS.devices}")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from robustdata import losses  # noqa: E402
from robustdata.contrastive import pool as pool_lib  # noqa: E402


def _time(fn, *args, repeats):
  out = fn(*args)
  jax.block_until_ready(out)
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t)
  return best


def _temp_mb(fn, *args):
  try:
    return fn.lower(*args).compile().memory_analysis().temp_size_in_bytes / 2**20
  except Exception:  # Backends without memory analysis.
    return float("nan")


def bench_losses(batches, repeats):
  mesh = Mesh(np.array(jax.devices()), ("data",))
  sh, rep = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  sharded = losses.make_sharded_clip_loss(mesh)
  forms = {
      "full-logits (jit+GSPMD)": lambda f, g, t, m: losses.clip_loss(f, g, t, mask=m),
      "local-loss (shard_map)": sharded,
  }
  rows = []
  for n in batches:
    rng = np.random.default_rng(0)
    unit = lambda: (lambda x: x / np.linalg.norm(x, axis=1, keepdims=True))(
        rng.standard_normal((n, ARGS.dim)).astype(np.float32))
    args = (jax.device_put(unit(), sh), jax.device_put(unit(), sh),
            jax.device_put(jnp.float32(2.659), rep), jax.device_put(np.ones(n, np.float32), sh))
    base = None
    for name, fn in forms.items():
      vg = jax.jit(jax.value_and_grad(fn, argnums=(0, 1, 2)))
      sec = _time(vg, *args, repeats=repeats)
      mb = _temp_mb(vg, *args)
      base = base or (sec, mb)
      rows.append((n, name, sec * 1e3, mb, sec / base[0], mb / base[1] if base[1] else float("nan")))
  print(f"\nCLIP loss+grad, d={ARGS.dim}, {jax.device_count()} {jax.devices()[0].platform} devices")
  print(f"{'batch':>6} | {'form':<24} | {'ms':>9} | {'temp MiB':>9} | {'time x':>6} | {'mem x':>6}")
  for r in rows:
    print(f"{r[0]:>6} | {r[1]:<24} | {r[2]:>9.2f} | {r[3]:>9.1f} | {r[4]:>6.2f} | {r[5]:>6.2f}")


def bench_pool(sizes, batch, repeats):
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.standard_normal((batch, ARGS.dim)), jnp.float32)
  match = jax.jit(lambda p, q: pool_lib.match_and_enqueue(p, q, q))
  rows = []
  for s in sizes:
    p = pool_lib.init_pool(s, ARGS.dim, prefill=jnp.asarray(rng.standard_normal((s, ARGS.dim)), jnp.float32),
                           batch_size=batch)
    rows.append((s, _time(match, p, q, repeats=repeats) * 1e3))
  print(f"\nRoCLIP nearest-pool match + enqueue, batch {batch}, d={ARGS.dim}")
  print(f"{'pool':>7} | {'ms':>9} | {'x smallest':>10} | {'ms per 1k rows':>14}")
  for s, ms in rows:
    print(f"{s:>7} | {ms:>9.2f} | {ms / rows[0][1]:>10.2f} | {ms / (s / 1000):>14.3f}")


if __name__ == "__main__":
  repeats = 2 if ARGS.quick else 5
  bench_losses((1024, 4096), repeats)
  bench_pool((1024, 4096, 16384) if ARGS.quick else (1024, 4096, 16384, 65536),
             512 if ARGS.quick else 1024, repeats)
