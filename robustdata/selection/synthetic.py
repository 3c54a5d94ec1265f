"""`cifar_shaped_synthetic`: CIFAR-10-shaped (32x32x3, 10 classes) synthetic images for timing
selection overheads at a realistic input size without a download (benchmarks only).

Each class has a smooth random template (a 4x4 pattern upsampled 8x); an example is its class
template plus Gaussian pixel noise (`noise`), clipped to [0, 1]. Deterministic in `seed`.
"""

from __future__ import annotations

import numpy as np

from robustdata.data.dataset import DataSplits, Dataset
from robustdata.registry import DATASETS, ConfigError, field_reader


DEFAULTS = {"num_train": 5000, "num_test": 1000, "noise": 0.6, "seed": 0}


@DATASETS.register("cifar_shaped_synthetic", defaults=DEFAULTS)
def load_cifar_shaped(cfg) -> DataSplits:
  get = field_reader(cfg, DEFAULTS)
  n_train, n_test = int(get("num_train")), int(get("num_test"))
  noise, seed = float(get("noise")), int(get("seed"))
  if n_train < 10 or n_test < 10 or noise < 0:
    raise ConfigError(f"config.data.num_train={n_train}, num_test={n_test} must be >= 10 and "
                      f"noise={noise} >= 0")
  rng = np.random.default_rng(seed)
  templates = rng.uniform(0.2, 0.8, size=(10, 4, 4, 3))
  templates = np.repeat(np.repeat(templates, 8, axis=1), 8, axis=2).astype(np.float32)

  def split(n, offset):
    y = rng.integers(0, 10, size=n).astype(np.int32)
    x = templates[y] + noise * rng.normal(size=(n, 32, 32, 3)).astype(np.float32)
    return Dataset(x=np.clip(x, 0.0, 1.0).astype(np.float32), y=y,
                   ids=np.arange(n, dtype=np.int64) + offset)

  train, test = split(n_train, 0), split(n_test, 10**9)
  return DataSplits(train=train, val=test.subset(np.arange(0)), test=test, num_classes=10,
                    info={"source": "synthetic (robustdata.selection.synthetic)"})
