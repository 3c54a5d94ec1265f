"""Input pipeline over ArrayRecord: memory that does not grow with the dataset, and a loader
that keeps up with the compiled step.

Writes a synthetic 32x32x3 classification set (PNG records, the `image_folder_records` format
of robustdata/data/convert.py) of about --size_mb MB on disk, and a JPEG image-caption set
converted from a CSV by the converter itself, then reports:
 (a) peak resident memory (ru_maxrss) of a training run (CNN, batch 256, --rss_steps steps, in
     a fresh process) on a quarter of the set and on the whole set;
 (b) for the CNN and ResNet-20 at batch 256: examples/s of the loader alone (read + decode +
     device put), of the bare compiled step on a cached device batch, and of the loop (loader +
     step, asynchronous dispatch), with the ratio loop/step time (target <= 1.15) for the
     records source and for the same rows in memory;
 (c) the same for the JPEG caption set.

  python benchmarks/input_pipeline.py [--size_mb 300] [--workdir /tmp/rd_input_pipeline] [--keep]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SHARD = 8192  # examples per shard
SIZE = 32


def _write_shard(args) -> dict:
  """One shard of the synthetic set: smooth random images (class-coloured gradients plus
  noise, so PNG sizes are image-like) with labels, groups and ids, and its sidecar."""
  import io  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  from robustdata.data import records  # pylint: disable=g-import-not-at-top
  out, split, i, n_shards, start, count = args
  stem = f"{split}-{i:05d}-of-{n_shards:05d}"
  rng = np.random.default_rng([i, 0 if split == "train" else 1])
  w = array_record_module.ArrayRecordWriter(os.path.join(out, stem + ".array_record"),
                                            "group_size:1")
  ex = {"id": [], "label": [], "group": [], "spurious": []}
  ramp = np.linspace(0, 1, SIZE, dtype=np.float32)
  for k in range(count):
    y, s = int(rng.integers(2)), int(rng.integers(2))
    base = np.stack([np.outer(ramp, ramp), np.outer(ramp[::-1], ramp), np.full((SIZE, SIZE), s)],
                    -1) * (0.5 + 0.5 * y)
    img = np.clip(base * 255 + rng.normal(0, 24, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=1)
    head = {"id": start + k, "label": y, "group": 2 * y + s, "spurious": s}
    w.write(records.pack_record(head, buf.getvalue()))
    for key, v in head.items():
      ex[key].append(v)
  w.close()
  path = os.path.join(out, stem + ".array_record")
  side = {"plan": "synthetic", "count": count, "bytes": os.path.getsize(path),
          "sha256": records.file_sha256(path), "skipped": [], "examples": ex}
  with open(os.path.join(out, stem + ".json"), "w") as f:
    json.dump(side, f)
  return {"file": stem + ".array_record", "meta": stem + ".json", "count": count,
          "bytes": side["bytes"], "sha256": side["sha256"],
          "meta_sha256": records.file_sha256(os.path.join(out, stem + ".json"))}


def write_synthetic(out: str, n_train: int, n_test: int = 2048, workers: int = 2) -> float:
  """Writes the set; returns its size on disk in MB."""
  from robustdata.data import records  # pylint: disable=g-import-not-at-top
  os.makedirs(out, exist_ok=True)
  manifest = {"format": records.FORMAT, "kind": "image_folder", "image_shape": [SIZE, SIZE, 3],
              "encoding": "png", "jpeg_quality": None, "num_classes": 2, "num_groups": 4,
              "group_names": ["y=0,place=0", "y=0,place=1", "y=1,place=0", "y=1,place=1"],
              "info": {}, "splits": {}}
  for split, n, offset in (("train", n_train, 0), ("test", n_test, 10**9)):
    k = -(-n // SHARD)
    jobs = [(out, split, i, k, offset + i * SHARD, min(SHARD, n - i * SHARD)) for i in range(k)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
      shards = pool.map(_write_shard, jobs, chunksize=1)
    manifest["splits"][split] = {"count": n, "skipped": 0, "shards": shards,
                                 "fingerprint": records.split_fingerprint(shards),
                                 "source": "synthetic"}
  with open(os.path.join(out, records.MANIFEST), "w") as f:
    json.dump(manifest, f)
  return sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)) / 1e6


def write_caption_set(root: str, n: int) -> str:
  """A CC3M-style CSV of n JPEG images (48x40) with captions, converted to JPEG records."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from robustdata.data import convert  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.join(root, "img"), exist_ok=True)
  rng = np.random.default_rng(0)
  rows = ["image,caption"]
  for i in range(n):
    a = np.clip(rng.normal(128, 60, (40, 48, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(a).save(os.path.join(root, "img", f"{i}.jpg"), quality=90)
    rows.append(f"img/{i}.jpg,a photo of object {i % 17} on a {['red', 'blue'][i % 2]} table")
  with open(os.path.join(root, "train.csv"), "w") as f:
    f.write("\n".join(rows) + "\n")
  out = os.path.join(root, "records")
  convert.convert("caption_table", os.path.join(root, "train.csv"), out, image_size=SIZE,
                  encoding="jpeg", workers=2, shard_size=4096)
  return out


def rss_run(data_dir: str, steps: int, workdir: str) -> None:
  """A training run on the records set (child process); prints peak RSS in MB."""
  from robustdata import config_lib, runner  # pylint: disable=g-import-not-at-top
  c = config_lib.base_config()
  c.name = "input_pipeline_rss"
  c.data.name, c.data.data_dir = "image_folder_records", data_dir
  c.model.name = "cnn"
  c.train.batch_size, c.train.eval_batch_size = 256, 512
  c.train.epochs, c.train.max_steps = 1, steps
  c.train.progress, c.train.log_every_steps, c.train.checkpoint_every_steps = "none", 10, 10**6
  c.policy.name = "full"
  runner.run(c, workdir)
  print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _time(fn, iters: int) -> float:
  """Seconds per call of fn() (the benchmarks' timer, `interleave.time_calls`)."""
  import interleave  # pylint: disable=g-import-not-at-top  (benchmarks/ is on sys.path)
  return interleave.time_calls(fn, iters)


def throughput(model_name: str, train, batch: int, iters: int) -> dict[str, float]:
  """Seconds per batch: loader alone, bare step, loop; for `train` (lazy) and in memory."""
  import jax  # pylint: disable=g-import-not-at-top
  from robustdata import config_lib  # pylint: disable=g-import-not-at-top
  from robustdata.data.dataset import Dataset  # pylint: disable=g-import-not-at-top
  from robustdata.models import CNN, ResNet20  # pylint: disable=g-import-not-at-top
  from robustdata.train import grad_rules, optim  # pylint: disable=g-import-not-at-top
  from robustdata.train import step as step_lib  # pylint: disable=g-import-not-at-top
  from robustdata.train import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
  from robustdata.data.loader import BatchLoader  # pylint: disable=g-import-not-at-top
  from robustdata.train.objectives import ERM  # pylint: disable=g-import-not-at-top
  from robustdata.train.state import create_train_state  # pylint: disable=g-import-not-at-top
  model = {"cnn": lambda: CNN(10), "resnet20": lambda: ResNet20(10, norm="batch")}[model_name]()
  mesh = sharding_lib.make_mesh()
  tx = optim.make_optimizer(config_lib.base_config().optim)
  repl, bsh = sharding_lib.replicated(mesh), sharding_lib.batch_sharding(mesh)
  state = create_train_state(model, tx, rng=jax.random.PRNGKey(0), input_shape=(SIZE, SIZE, 3))
  state_sh = jax.tree.map(lambda _: repl, state)
  step = jax.jit(step_lib.make_train_step(step_lib.make_loss_fn(model), objective=ERM(None),
                                          grad_rule=grad_rules.plain_rule, tx=tx,
                                          augment=("crop", "flip")),
                 in_shardings=(state_sh, bsh, repl), out_shardings=(state_sh, repl),
                 donate_argnums=(0,))
  rng = np.random.default_rng(0)
  n_mem = min(len(train), batch * 16)
  mem = Dataset(x=train.x[:n_mem], y=train.y[:n_mem], ids=train.ids[:n_mem])
  holder = {"state": jax.device_put(state, repl)}
  lr = np.float32(0.1)
  out = {}
  for name, data in (("records", train), ("memory", mem)):
    loader = BatchLoader(data, batch_size=batch, sharding=bsh, with_groups=False)
    w = np.ones(batch, np.float32)
    draw = lambda data=data: np.sort(rng.choice(len(data), batch, replace=False))
    cached = loader.device_batch(draw(), w)

    def cached_step():
      holder["state"], m = step(holder["state"], cached, lr)
      return m["loss"]

    def loop_step(loader=loader, draw=draw):
      holder["state"], m = step(holder["state"], loader.device_batch(draw(), w), lr)
      return m["loss"]

    out[f"{name}_loader"] = _time(lambda loader=loader, draw=draw: loader.device_batch(
        draw(), w)["x"], iters)
    out[f"{name}_step"] = _time(cached_step, iters)
    out[f"{name}_loop"] = _time(loop_step, iters)
  return out


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--size_mb", type=float, default=100.0, help="train set size on disk")
  p.add_argument("--workdir", default="/tmp/rd_input_pipeline")
  p.add_argument("--rss_steps", type=int, default=20)
  p.add_argument("--iters", type=int, default=8, help="timed batches per figure")
  p.add_argument("--captions", type=int, default=3000, help="image-caption pairs for (c)")
  p.add_argument("--models", default="cnn,resnet20")
  p.add_argument("--keep", action="store_true", help="keep the generated files")
  p.add_argument("--_rss_run", nargs=2, help=argparse.SUPPRESS)
  a = p.parse_args()
  if a._rss_run:
    rss_run(a._rss_run[0], a.rss_steps, a._rss_run[1])
    return
  per_example = 2900  # bytes on disk per PNG record (measured on this generator)
  n_big = int(a.size_mb * 1e6 / per_example)
  os.makedirs(a.workdir, exist_ok=True)
  sets = {}
  for label, n in (("quarter", n_big // 4), ("full", n_big)):
    path = os.path.join(a.workdir, f"set_{label}")
    t = time.time()
    mb = write_synthetic(path, n)
    sets[label] = (path, n, mb)
    print(f"wrote {n} examples, {mb:.0f} MB on disk, in {time.time() - t:.0f} s: {path}",
          flush=True)
  print("\n(a) peak RSS of a training run (CNN, batch 256, "
        f"{a.rss_steps} steps, fresh process)")
  print(f"{'set':<8} {'examples':>9} {'disk MB':>8} {'decoded GB':>10} {'peak RSS MB':>12}")
  for label, (path, n, mb) in sets.items():
    res = subprocess.run([sys.executable, __file__, "--rss_steps", str(a.rss_steps), "--_rss_run",
                          path, os.path.join(a.workdir, f"runs_{label}")],
                         capture_output=True, text=True, check=True)
    rss = json.loads(res.stdout.strip().splitlines()[-1])["maxrss_mb"]
    print(f"{label:<8} {n:>9} {mb:>8.0f} {n * SIZE * SIZE * 3 * 4 / 1e9:>10.2f} {rss:>12.0f}",
          flush=True)

  import ml_collections  # pylint: disable=g-import-not-at-top
  from robustdata.data import sources  # pylint: disable=g-import-not-at-top
  caption_dir = write_caption_set(os.path.join(a.workdir, "captions"), a.captions)
  data = {"synthetic PNG": sources.load(ml_collections.ConfigDict(
              {"name": "image_folder_records", "data_dir": sets["full"][0]})).train,
          "caption JPEG": sources.load(ml_collections.ConfigDict(
              {"name": "caption_records", "data_dir": caption_dir})).train}
  print("\n(b, c) examples/s at batch 256 (loader alone; bare step on a cached batch; loop), "
        "loop/step time, records vs in memory")
  print(f"{'set':<14} {'model':<9} {'loader rec':>10} {'loader mem':>10} {'step':>7} "
        f"{'loop rec':>9} {'loop mem':>9} {'loop/step rec':>13} {'loop/step mem':>13} "
        f"{'rec/mem loop':>12}")
  for set_name, train in data.items():
    for model in a.models.split(","):
      r = throughput(model, train, 256, a.iters if model == "cnn" else max(3, a.iters // 2))
      eps = lambda t: 256 / t
      print(f"{set_name:<14} {model:<9} {eps(r['records_loader']):>10.0f} "
            f"{eps(r['memory_loader']):>10.0f} {eps(r['records_step']):>7.0f} "
            f"{eps(r['records_loop']):>9.0f} {eps(r['memory_loop']):>9.0f} "
            f"{r['records_loop'] / r['records_step']:>13.3f} "
            f"{r['memory_loop'] / r['memory_step']:>13.3f} "
            f"{r['records_loop'] / r['memory_loop']:>12.3f}", flush=True)
  if not a.keep:
    shutil.rmtree(a.workdir, ignore_errors=True)


if __name__ == "__main__":
  main()
