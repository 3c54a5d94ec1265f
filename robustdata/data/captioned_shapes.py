"""`captioned_shapes`: an embedded image-caption dataset for CLIP pre-training on a CPU.

Each image is one object on a dark RGB canvas (default 24x24): a real handwritten digit from
scikit-learn's 8x8 digits (held-out digit images feed val/test) or a drawn shape, with a colour,
a size and a quadrant. Its caption is one of several templates filled with those attributes,
each attribute word replaced by a synonym with probability `synonym_prob`. `caption_style`
picks the template set: 'attributes' (the default; most captions name colour, size and
position, so a CLIP can match most pairs of a batch without seeing the object) or 'object'
(every caption names the object, about half name its colour and a quarter its size or
position; the CLIP configs of issue 6 use it, since with 'attributes' the object is learned
only after ~40 epochs). The class (`y`) is
the object (10 digits + 6 shapes = 16 classes). `info` holds what CLIP evaluation needs:
class names and prompt templates for zero-shot, the synonym table for EDA, the tokenizer built
from the training captions, and held-out downstream tasks (object, colour, position, size on
fresh images of held-out digits) for linear probes. Captions are `extras['tokens']` (fixed
context length) and `extras['caption']` (the raw strings).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from robustdata.data import embedded
from robustdata.data.dataset import Dataset, DataSplits
from robustdata.data.tokenizer import Tokenizer
from robustdata.registry import DATASETS, ConfigError, field_reader

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SHAPE_NAMES = ("square", "circle", "triangle", "cross", "ring", "diamond")
COLORS = {
    "red": (0.95, 0.15, 0.1), "green": (0.1, 0.85, 0.2), "blue": (0.15, 0.3, 0.95),
    "yellow": (0.95, 0.9, 0.1), "magenta": (0.9, 0.15, 0.85), "cyan": (0.1, 0.9, 0.9),
    "white": (0.95, 0.95, 0.95), "orange": (0.98, 0.55, 0.05),
}
COLOR_NAMES = tuple(COLORS)
POSITION_NAMES = ("top left", "top right", "bottom left", "bottom right")
SIZE_NAMES = ("small", "large")

CAPTION_TEMPLATES = (
    "a photo of a {size} {color} {name} in the {pos}",
    "a {color} {name}",
    "a drawing of a {name} , {color} and {size}",
    "{size} {color} {name} at the {pos}",
    "an image of the {color} {name} in the {pos} corner",
    "there is a {size} {name} painted {color}",
    "a picture of a {name}",
)
# Object-centred captions: the object is always named, each attribute in a few templates only,
# so a batch holds many pairs that only the object tells apart (see the module docstring).
OBJECT_CAPTION_TEMPLATES = (
    "a photo of a {name}",
    "a {color} {name}",
    "a drawing of a {size} {name}",
    "a {name} in the {pos}",
    "an image of the {name}",
    "a picture of a {color} {name}",
    "a photo of a {size} {color} {name} in the {pos}",
    "there is a {name} painted {color}",
)
CAPTION_STYLES = {"attributes": CAPTION_TEMPLATES, "object": OBJECT_CAPTION_TEMPLATES}
PROMPT_TEMPLATES = ("a photo of a {}", "a drawing of a {}", "an image of the {}", "a {}",
                    "a picture of a {}")

SYNONYMS: dict[str, tuple[str, ...]] = {
    "small": ("tiny", "little"), "large": ("big", "huge"),
    "red": ("crimson", "scarlet"), "green": ("lime",), "blue": ("navy", "azure"),
    "yellow": ("golden",), "magenta": ("pink", "purple"), "cyan": ("turquoise", "aqua"),
    "white": ("pale",), "orange": ("amber",),
    "photo": ("picture", "image"), "picture": ("photo", "image"), "image": ("photo", "picture"),
    "drawing": ("sketch",), "painted": ("coloured", "colored"),
    "square": ("box",), "circle": ("disc", "disk"), "triangle": ("wedge",), "cross": ("plus",),
    "ring": ("hoop", "loop"), "diamond": ("rhombus",),
    "zero": ("0", "nought"), "one": ("1",), "two": ("2",), "three": ("3",), "four": ("4",),
    "five": ("5",), "six": ("6",), "seven": ("7",), "eight": ("8",), "nine": ("9",),
}

_OBJECT_SIZES = (7, 11)  # pixels at a 24-pixel canvas; scaled with the canvas.


def class_names(classes: str = "all") -> tuple[str, ...]:
  """The object classes for `classes` in {'all', 'digits', 'shapes'}."""
  if classes == "all":
    return DIGIT_NAMES + SHAPE_NAMES
  if classes == "digits":
    return DIGIT_NAMES
  if classes == "shapes":
    return SHAPE_NAMES
  raise ConfigError(f"config.data.classes={classes!r} is not known; allowed: all, digits, shapes")


def _shape_mask(name: str, s: int, rng: np.random.Generator) -> np.ndarray:
  """A drawn shape as an (s, s) mask in [0, 1], with a random stroke width."""
  v, u = np.meshgrid(np.linspace(-1, 1, s), np.linspace(-1, 1, s), indexing="ij")
  w = rng.uniform(0.22, 0.35)
  r = np.sqrt(u ** 2 + v ** 2)
  if name == "square":
    m = np.maximum(abs(u), abs(v)) <= 0.8
  elif name == "circle":
    m = r <= 0.85
  elif name == "triangle":
    m = (v <= 0.8) & (abs(u) <= (v + 0.85) / 1.65 * 0.95)
  elif name == "cross":
    m = ((abs(u) <= w) | (abs(v) <= w)) & (np.maximum(abs(u), abs(v)) <= 0.9)
  elif name == "ring":
    m = (r <= 0.9) & (r >= 0.9 - 1.6 * w)
  elif name == "diamond":
    m = abs(u) + abs(v) <= 0.9
  else:
    raise ValueError(name)
  return m.astype(np.float32)


def _digit_mask(digit_image: np.ndarray, s: int) -> np.ndarray:
  """An 8x8 sklearn digit (values 0..16) resampled to (s, s) in [0, 1] by nearest neighbour."""
  idx = np.minimum(((np.arange(s) + 0.5) * 8 / s).astype(int), 7)
  return (digit_image[np.ix_(idx, idx)] / 16.0).astype(np.float32)


def _caption(rng: np.random.Generator, name: str, color: str, size: str, pos: str,
             synonym_prob: float, templates: tuple[str, ...] = CAPTION_TEMPLATES) -> str:
  """A caption from a random template, each attribute word replaced by a synonym w.p. p."""
  pick = lambda w: (SYNONYMS[w][int(rng.integers(len(SYNONYMS[w])))]
                    if w in SYNONYMS and rng.random() < synonym_prob else w)
  template = templates[int(rng.integers(len(templates)))]
  text = template.format(size=pick(size), color=pick(color), name=pick(name), pos=pos)
  words = text.split()
  for i, word in enumerate(words):
    if word in ("photo", "picture", "image", "drawing", "painted"):
      words[i] = pick(word)
  return " ".join(words)


def render(rng: np.random.Generator, *, names: tuple[str, ...], n: int, digit_pool: np.ndarray,
           digit_labels: np.ndarray, image_size: int, synonym_prob: float,
           templates: tuple[str, ...] = CAPTION_TEMPLATES) -> dict[str, np.ndarray]:
  """`n` random examples: images (n, H, H, 3) in [0, 1], attributes and captions."""
  h = image_size
  half = h // 2
  sizes = tuple(max(3, int(round(s * h / 24))) for s in _OBJECT_SIZES)
  by_digit = {d: np.flatnonzero(digit_labels == d) for d in range(10)}
  x = np.empty((n, h, h, 3), np.float32)
  y = rng.integers(len(names), size=n).astype(np.int32)
  color = rng.integers(len(COLOR_NAMES), size=n).astype(np.int32)
  position = rng.integers(len(POSITION_NAMES), size=n).astype(np.int32)
  size = rng.integers(len(SIZE_NAMES), size=n).astype(np.int32)
  captions = []
  for i in range(n):
    s = sizes[size[i]]
    name = names[y[i]]
    if name in DIGIT_NAMES:
      pool = by_digit[DIGIT_NAMES.index(name)]
      mask = _digit_mask(digit_pool[pool[int(rng.integers(len(pool)))]], s)
    else:
      mask = _shape_mask(name, s, rng)
    canvas = np.clip(rng.normal(0.06, 0.03, size=(h, h, 3)), 0, 1).astype(np.float32)
    row0 = (position[i] // 2) * half + int(rng.integers(max(1, half - s + 1)))
    col0 = (position[i] % 2) * half + int(rng.integers(max(1, half - s + 1)))
    rgb = np.asarray(COLORS[COLOR_NAMES[color[i]]], np.float32) * rng.uniform(0.75, 1.0)
    patch = canvas[row0:row0 + s, col0:col0 + s]
    canvas[row0:row0 + s, col0:col0 + s] = patch * (1 - mask[..., None]) + mask[..., None] * rgb
    x[i] = canvas
    captions.append(_caption(rng, name, COLOR_NAMES[color[i]], SIZE_NAMES[size[i]],
                             POSITION_NAMES[position[i]], synonym_prob, templates))
  return {"x": x, "y": y, "color": color, "position": position, "size": size,
          "caption": np.asarray(captions)}


def _to_dataset(parts: Mapping[str, np.ndarray], id_offset: int,
                tokenizer: Tokenizer | None) -> Dataset:
  """Rendered examples as a Dataset (tokens added when a tokenizer is given)."""
  n = len(parts["x"])
  extras = {k: parts[k] for k in ("color", "position", "size", "caption")}
  if tokenizer is not None:
    extras["tokens"] = tokenizer.encode_batch(list(parts["caption"]))
  return Dataset(x=parts["x"], y=parts["y"], ids=np.arange(id_offset, id_offset + n, dtype=np.int64),
                 extras=extras)


# The config.data fields `load_captioned_shapes` reads, with their defaults.
DEFAULTS = {"seed": 0, "image_size": 24, "context_length": 24, "synonym_prob": 0.3,
            "classes": "all", "caption_style": "attributes", "num_train": 4000, "num_val": 500,
            "num_test": 1000, "num_downstream_train": 1000, "num_downstream_test": 500}


@DATASETS.register("captioned_shapes", defaults=DEFAULTS)
def load_captioned_shapes(data_config: Any) -> DataSplits:
  """Builds the splits from `data_config` fields (all optional; see the module docstring)."""
  get = field_reader(data_config, DEFAULTS)
  seed = int(get("seed"))
  image_size = int(get("image_size"))
  context_length = int(get("context_length"))
  synonym_prob = float(get("synonym_prob"))
  names = class_names(get("classes"))
  style = get("caption_style")
  if style not in CAPTION_STYLES:
    raise ConfigError(f"config.data.caption_style={style!r} is not known; allowed: "
                      f"{', '.join(CAPTION_STYLES)}")
  templates = CAPTION_STYLES[style]
  counts = {k: int(get(f"num_{k}"))
            for k in ("train", "val", "test", "downstream_train", "downstream_test")}
  if image_size < 8:
    raise ConfigError(f"config.data.image_size={image_size} must be >= 8")
  for k, v in counts.items():
    if v < 0 or (k == "train" and v == 0):
      raise ConfigError(f"config.data.num_{k}={v} must be positive")

  digits = embedded.sklearn_digits()  # embedded in scikit-learn, no download
  perm = np.random.default_rng(seed).permutation(len(digits.target))
  cut = int(0.7 * len(perm))
  pools = {"seen": perm[:cut], "held_out": perm[cut:]}
  rng = np.random.default_rng(np.random.SeedSequence([seed, 6]))

  def make(n: int, pool: str) -> dict[str, np.ndarray]:
    idx = pools[pool]
    return render(rng, names=names, n=n, digit_pool=digits.images[idx],
                  digit_labels=digits.target[idx], image_size=image_size,
                  synonym_prob=synonym_prob, templates=templates)

  raw = {"train": make(counts["train"], "seen"), "val": make(counts["val"], "held_out"),
         "test": make(counts["test"], "held_out")}
  tokenizer = Tokenizer.build(raw["train"]["caption"], context_length=context_length)
  offsets = {"train": 0, "val": 1_000_000, "test": 2_000_000}
  splits = {k: _to_dataset(v, offsets[k], tokenizer) for k, v in raw.items()}

  ds_train = _to_dataset(make(counts["downstream_train"], "held_out"), 3_000_000, None)
  ds_test = _to_dataset(make(counts["downstream_test"], "held_out"), 4_000_000, None)
  downstream = {}
  for task, task_names in (("object", names), ("color", COLOR_NAMES),
                           ("position", POSITION_NAMES), ("size", SIZE_NAMES)):
    relabel = lambda d: d if task == "object" else d.replace(y=d.extras[task].astype(np.int32))
    downstream[task] = {"train": relabel(ds_train), "test": relabel(ds_test),
                        "class_names": tuple(task_names), "num_classes": len(task_names)}

  info = {
      "class_names": names, "prompt_templates": PROMPT_TEMPLATES, "synonyms": SYNONYMS,
      "caption_templates": templates, "tokenizer": tokenizer,
      "vocab_size": tokenizer.vocab_size, "context_length": context_length,
      "color_names": COLOR_NAMES, "position_names": POSITION_NAMES, "size_names": SIZE_NAMES,
      "downstream": downstream,
  }
  return DataSplits(train=splits["train"], val=splits["val"], test=splits["test"],
                    num_classes=len(names), info=info)
