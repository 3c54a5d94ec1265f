"""Real image-caption pairs from a local CSV/TSV (the CC3M format of the CLIP-poisoning repos).

The file has a header with an image-path column and a caption column (defaults `image`,
`caption`, as in the CyCLIP/RoCLIP/CleanCLIP `train.csv`); relative paths are resolved against
the file's directory. Images are loaded with PIL, converted to RGB, resized to a square
`image_size` (bicubic) and scaled to [0, 1]. The source registered as `caption_csv` builds the
tokenizer from the training captions. Nothing is downloaded.
"""

from __future__ import annotations

import csv
import os
from typing import Any, Optional

import numpy as np

from robustdata.data.dataset import Dataset, DataSplits
from robustdata.data.tokenizer import Tokenizer
from robustdata.registry import DATASETS, ConfigError, field_reader


def read_caption_table(path: str, *, image_key: str = "image", caption_key: str = "caption",
                       delimiter: Optional[str] = None, check_images: bool = True
                       ) -> tuple[list[str], list[str]]:
  """(image paths, captions) of a CSV/TSV; the delimiter defaults to tab for .tsv, else comma.
  `check_images`: a row naming a missing image is a ConfigError (the converter checks itself,
  to skip and count such rows)."""
  if not isinstance(path, str) or not path:
    raise ConfigError(f"the caption table {path!r} is not a file path")
  if not os.path.isfile(path):
    raise ConfigError(f"the caption table {path!r} does not exist" if not os.path.exists(path)
                      else f"the caption table {path!r} is not a file")
  if delimiter is None:
    delimiter = "\t" if path.endswith((".tsv", ".tsv.txt")) else ","
  try:
    with open(path, newline="", encoding="utf-8") as f:
      reader = csv.DictReader(f, delimiter=delimiter)
      fields = reader.fieldnames or []
      for key, field in ((image_key, "image_key"), (caption_key, "caption_key")):
        if key not in fields:
          raise ConfigError(f"config.data.{field}={key!r} is not a column of {path}; columns: "
                            f"{fields}")
      rows = [(r[image_key], r[caption_key]) for r in reader]
  except (OSError, UnicodeDecodeError, csv.Error, TypeError) as e:
    raise ConfigError(f"the caption table {path!r} is not a readable CSV/TSV "
                      f"({type(e).__name__}: {e})") from None
  root = os.path.dirname(os.path.abspath(path))
  for i, (p, c) in enumerate(rows):
    if not p or c is None:
      raise ConfigError(f"{path} row {i + 2}: the {image_key!r} or {caption_key!r} cell is empty")
  images = [p if os.path.isabs(p) else os.path.join(root, p) for p, _ in rows]
  for i, p in enumerate(images if check_images else ()):
    if not os.path.isfile(p):
      raise ConfigError(f"{path} row {i + 2} names image {p!r}, which does not exist")
  return images, [c for _, c in rows]


def load_images(paths: list[str], *, image_size: int) -> np.ndarray:
  """Images as (N, S, S, 3) float32 in [0, 1] (RGB, bicubic resize, aspect not kept)."""
  out = np.empty((len(paths), image_size, image_size, 3), np.float32)
  for i, p in enumerate(paths):
    try:
      out[i] = resized_rgb(p, image_size).astype(np.float32) / 255.0
    except (OSError, ValueError, SyntaxError) as e:  # UnidentifiedImageError is an OSError
      raise ConfigError(f"image {p!r} is not a readable image ({type(e).__name__})") from None
  return out


def resized_rgb(path: str, image_size: int) -> np.ndarray:
  """The image at `path` as (S, S, 3) uint8 RGB, bicubic-resized (aspect not kept); PIL's
  errors propagate."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as im:
    return np.asarray(im.convert("RGB").resize((image_size, image_size), Image.BICUBIC),
                      np.uint8)


def read_caption_csv(path: str, *, tokenizer: Tokenizer, image_size: int = 32,
                     image_key: str = "image", caption_key: str = "caption",
                     delimiter: Optional[str] = None, id_offset: int = 0) -> Dataset:
  """One split as a Dataset: `x` images, `y` zeros, `extras['tokens']` and `extras['caption']`."""
  paths, captions = read_caption_table(path, image_key=image_key, caption_key=caption_key,
                                       delimiter=delimiter)
  n = len(paths)
  return Dataset(
      x=load_images(paths, image_size=image_size), y=np.zeros((n,), np.int32),
      ids=np.arange(id_offset, id_offset + n, dtype=np.int64),
      extras={"tokens": tokenizer.encode_batch(captions), "caption": np.asarray(captions, dtype=str),
              "image_path": np.asarray(paths, dtype=str)})


# The config.data fields `load_caption_csv` reads, with their defaults (train_file is required).
DEFAULTS = {"train_file": None, "val_file": None, "test_file": None, "image_key": "image",
            "caption_key": "caption", "delimiter": None, "context_length": 32, "min_count": 1,
            "image_size": 32}


@DATASETS.register("caption_csv", defaults=DEFAULTS)
def load_caption_csv(data_config: Any) -> DataSplits:
  """Splits from `train_file` (required), `val_file`, `test_file`; vocabulary from train."""
  get = field_reader(data_config, DEFAULTS)
  train_file = get("train_file")
  if not train_file:
    raise ConfigError("config.data.train_file must name a local CSV/TSV of (image, caption)")
  kwargs = dict(image_key=get("image_key"), caption_key=get("caption_key"),
                delimiter=get("delimiter"))
  for k in ("train", "val", "test"):
    f = get(f"{k}_file")
    if f and not os.path.isfile(f):
      raise ConfigError(f"config.data.{k}_file={f!r} does not exist" if not os.path.exists(f)
                        else f"config.data.{k}_file={f!r} is not a file")
  _, train_captions = read_caption_table(train_file, **kwargs)
  if not train_captions:
    raise ConfigError(f"config.data.train_file={train_file!r} holds no rows")
  tokenizer = Tokenizer.build(train_captions, context_length=int(get("context_length")),
                              min_count=int(get("min_count")))
  image_size = int(get("image_size"))
  splits = {}
  for k, offset in (("train", 0), ("val", 1_000_000_000), ("test", 2_000_000_000)):
    f = get(f"{k}_file")
    if f:
      splits[k] = read_caption_csv(f, tokenizer=tokenizer, image_size=image_size,
                                   id_offset=offset, **kwargs)
    else:
      empty = np.zeros((0,), np.int64)
      splits[k] = Dataset(x=np.zeros((0, image_size, image_size, 3), np.float32),
                          y=empty.astype(np.int32), ids=empty,
                          extras={"tokens": np.zeros((0, tokenizer.context_length), np.int32),
                                  "caption": np.zeros((0,), dtype=str),
                                  "image_path": np.zeros((0,), dtype=str)})
  return DataSplits(train=splits["train"], val=splits["val"], test=splits["test"], num_classes=0,
                    info={"tokenizer": tokenizer, "vocab_size": tokenizer.vocab_size,
                          "context_length": tokenizer.context_length})
