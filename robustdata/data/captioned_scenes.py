"""`captioned_scenes`: an embedded image-caption set large enough for the poisoning papers'
regime (poison rates of 0.05-1% of tens of thousands of pairs) on a CPU, generated from a seed.

Each image is one object on a patterned background (plain, striped, dotted or checkered) at
`image_size` pixels (default 32): one of 24 object classes, the 10 digits (real handwritten
scikit-learn digits; held-out writers' images feed val, test and the probes, so a target image
is never a training image) and 14 drawn glyphs (square, circle, ..., chevron, bar), each with a
colour, a size, a position and a small rotation. Object classes rather than compositional ones
(shape x pattern): a CLIP of a few hundred thousand parameters learns them within a few epochs,
so zero-shot accuracy is far from chance (1/24) and an attack success rate means something;
composition would make utility, not the attack, the bottleneck.

Captions are sampled sentences that always name the object (a synonym w.p. `synonym_prob`)
and name its colour, size, position and background only sometimes, with several word orders
("a photo of a small red star in the top left", "top left : a crimson star", "a star , red and
small , on a striped background") and distractor words that describe nothing in the image
("found this today", "# art"). So a caption that names a class is a caption of the data, and
the targeted attack can pair a target image with real captions of the adversarial class
(`poison.caption_source='data'`, the default for this source: `info['poison_caption_source']`).

Generation is vectorised over images (signed-distance glyphs and bilinear digit resampling on
per-image coordinate grids), a few seconds for 20,000 pairs at 32 px on one core. `info` holds
what CLIP evaluation needs: class names, an 8-prompt zero-shot ensemble, the synonym table for
EDA, the tokenizer built from the training captions, and held-out probe tasks (object, colour,
size, position, background) on fresh images of held-out writers.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from robustdata.data import embedded
from robustdata.data.captioned_shapes import COLOR_NAMES, COLORS, DIGIT_NAMES
from robustdata.data.dataset import Dataset, DataSplits
from robustdata.data.tokenizer import Tokenizer
from robustdata.registry import DATASETS, ConfigError, field_reader

GLYPH_NAMES = ("square", "circle", "triangle", "cross", "ring", "diamond", "star", "heart",
               "arrow", "moon", "frame", "hourglass", "chevron", "bar")
CLASS_NAMES = DIGIT_NAMES + GLYPH_NAMES
SIZE_NAMES = ("small", "medium", "large")
POSITION_NAMES = ("top left", "top right", "bottom left", "bottom right", "center")
BACKGROUND_NAMES = ("plain", "striped", "dotted", "checkered")
PROBE_TASKS = ("object", "color", "size", "position", "background")

PROMPT_TEMPLATES = ("a photo of a {}", "a drawing of a {}", "an image of the {}", "a {}",
                    "a picture of a {}", "a sketch of the {}", "a close-up of a {}",
                    "there is a {}")

# Single-word synonyms (EDA replaces word by word). No synonym is another class's name.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "zero": ("0", "nought"), "one": ("1",), "two": ("2",), "three": ("3",), "four": ("4",),
    "five": ("5",), "six": ("6",), "seven": ("7",), "eight": ("8",), "nine": ("9",),
    "square": ("box",), "circle": ("disc", "disk"), "triangle": ("wedge",), "cross": ("plus",),
    "ring": ("hoop", "loop"), "diamond": ("rhombus",), "star": ("pentagram",),
    "heart": ("valentine",), "arrow": ("pointer",), "moon": ("crescent",),
    "frame": ("outline",), "hourglass": ("bowtie",), "chevron": ("caret",), "bar": ("stick",),
    "small": ("tiny", "little"), "medium": ("mid-sized", "average"), "large": ("big", "huge"),
    "red": ("crimson", "scarlet"), "green": ("lime",), "blue": ("navy", "azure"),
    "yellow": ("golden",), "magenta": ("pink", "purple"), "cyan": ("turquoise", "aqua"),
    "white": ("pale",), "orange": ("amber",),
    "photo": ("picture", "image"), "picture": ("photo", "image"), "image": ("photo", "picture"),
    "drawing": ("sketch",), "sketch": ("drawing",),
    "striped": ("stripy",), "dotted": ("spotted",), "checkered": ("chequered",),
    "plain": ("dark",), "background": ("backdrop",),
}
_OPENERS = ("a photo of", "a picture of", "an image of", "a drawing of", "a sketch of",
            "a close-up of")
_FILLERS_BEFORE = ("found this today :", "stock photo :", "new post :", "my kid drew",
                   "look at", "random")
_FILLERS_AFTER = ("so cute", "high quality", "# art", "for sale", "lol", "vintage style",
                  "free download", "today")
# Object side as a fraction of the canvas, per size.
_SIZE_FRACTIONS = (0.34, 0.46, 0.58)


def _sdf(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """A glyph as a signed distance (< 0 inside) in object units (extent about [-1, 1])."""
  a, b = np.abs(u), np.abs(v)
  r = np.sqrt(u * u + v * v)
  if name == "square":
    return np.maximum(a, b) - 0.8
  if name == "circle":
    return r - 0.85
  if name == "triangle":  # apex up (rows grow downwards)
    return np.maximum(v - 0.8, (a - 0.55 * (v + 0.85)) / 1.14)
  if name == "cross":
    return np.minimum(np.maximum(a - 0.26, b - 0.9), np.maximum(b - 0.26, a - 0.9))
  if name == "ring":
    return np.abs(r - 0.66) - 0.21
  if name == "diamond":
    return (a + b - 0.92) / 1.414
  if name == "star":  # five points, one up
    t = np.mod(np.arctan2(u, -v) * 5 / (2 * np.pi), 1.0)
    return r - (0.38 + 0.55 * np.abs(2 * t - 1))
  if name == "heart":
    x, y = 1.15 * u, -1.15 * v + 0.25
    return (x * x + y * y - 1) ** 3 - x * x * y ** 3
  if name == "arrow":  # head up, shaft down
    head = np.maximum(np.maximum(-0.9 - v, v + 0.05), (a - 0.95 * (v + 0.9)) / 1.38)
    shaft = np.maximum(a - 0.22, np.maximum(-0.1 - v, v - 0.9))
    return np.minimum(head, shaft)
  if name == "moon":
    return np.maximum(r - 0.85, 0.68 - np.sqrt((u - 0.38) ** 2 + (v + 0.12) ** 2))
  if name == "frame":
    m = np.maximum(a, b)
    return np.maximum(m - 0.85, 0.55 - m)
  if name == "hourglass":
    return np.maximum((a - 0.9 * b) / 1.35, b - 0.85)
  if name == "chevron":  # pointing up
    return np.maximum(np.abs(v - (0.9 * a - 0.4)) - 0.24, a - 0.88)
  if name == "bar":
    return np.maximum(a - 0.88, b - 0.22)
  raise ValueError(name)


def _bilinear(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
  """`images` (n, h, w) sampled at fractional pixel coordinates (n, H, W); 0 outside."""
  n, h, w = images.shape
  r0, c0 = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
  fr, fc = rows - r0, cols - c0
  idx = np.arange(n)[:, None, None]
  out = np.zeros(rows.shape, np.float32)
  for dr, wr in ((0, 1 - fr), (1, fr)):
    for dc, wc in ((0, 1 - fc), (1, fc)):
      rr, cc = r0 + dr, c0 + dc
      ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
      out += np.where(ok, images[idx, np.clip(rr, 0, h - 1), np.clip(cc, 0, w - 1)], 0) * wr * wc
  return out


def _backgrounds(rng: np.random.Generator, kind: np.ndarray, h: int) -> np.ndarray:
  """(n, h, h, 3) dim tinted backgrounds with the pattern of each `kind` (BACKGROUND_NAMES)."""
  n = len(kind)
  rows, cols = np.arange(h)[None, :, None], np.arange(h)[None, None, :]
  period = rng.choice((4, 6, 8), size=n)[:, None, None]
  phase = rng.integers(8, size=n)[:, None, None]
  orient = rng.integers(3, size=n)[:, None, None]
  pattern = np.zeros((n, h, h), np.float32)
  for k in (1, 2, 3):  # striped, dotted, checkered
    sel = np.flatnonzero(kind == k)
    p, ph = period[sel], phase[sel]
    if k == 1:
      line = np.where(orient[sel] == 0, rows, np.where(orient[sel] == 1, cols, rows + cols)) + ph
      pattern[sel] = 2 * np.mod(line, p) < p
    elif k == 2:
      dr, dc = 2 * np.mod(rows + ph, p) - p, 2 * np.mod(cols + ph, p) - p
      pattern[sel] = 4 * (dr * dr + dc * dc) <= p * p
    else:
      pattern[sel] = np.mod((rows + ph) // (p // 2) + (cols + ph) // (p // 2), 2)
  base = (rng.uniform(0.02, 0.12, size=(n, 1, 1, 1))
          * rng.uniform(0.6, 1.4, size=(n, 1, 1, 3))).astype(np.float32)
  tint = rng.uniform(0.08, 0.18, size=(n, 1, 1, 3)).astype(np.float32)
  out = rng.standard_normal(size=(n, h, h, 3), dtype=np.float32)
  out *= 0.02
  out += base
  out += tint * pattern[..., None]
  return np.clip(out, 0, 1, out=out)


def render_images(rng: np.random.Generator, y: np.ndarray, attrs: Mapping[str, np.ndarray], *,
                  image_size: int, digit_pool: np.ndarray, digit_labels: np.ndarray
                  ) -> np.ndarray:
  """(n, H, H, 3) images in [0, 1] of classes `y` (CLASS_NAMES) with the given attributes."""
  n, h = len(y), image_size
  x = _backgrounds(rng, attrs["background"], h)
  side = np.asarray(_SIZE_FRACTIONS)[attrs["size"]] * h * rng.uniform(0.9, 1.1, size=n)
  pos = attrs["position"]
  col_c = np.where(pos == 4, 0.5, np.where(np.isin(pos, (0, 2)), 0.28, 0.72))
  row_c = np.where(pos == 4, 0.5, np.where(pos < 2, 0.28, 0.72))
  jitter = rng.uniform(-0.06, 0.06, size=(2, n)) * h
  cx, cy = col_c * h + jitter[0], row_c * h + jitter[1]
  theta = rng.uniform(-0.35, 0.35, size=n).astype(np.float32)
  cx, cy, side = cx.astype(np.float32), cy.astype(np.float32), side.astype(np.float32)
  grid = np.arange(h, dtype=np.float32) + 0.5
  dx = grid[None, None, :] - cx[:, None, None]
  dy = grid[None, :, None] - cy[:, None, None]
  cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
  half = (side / 2)[:, None, None]
  u = (dx * cos + dy * sin) / half
  v = (-dx * sin + dy * cos) / half
  mask = np.zeros((n, h, h), np.float32)
  for k, name in enumerate(CLASS_NAMES):
    rows = np.flatnonzero(y == k)
    if not len(rows):
      continue
    if name in DIGIT_NAMES:
      pool = np.flatnonzero(digit_labels == k)
      pick = digit_pool[pool[rng.integers(len(pool), size=len(rows))]].astype(np.float32) / 16
      # The digit's 8x8 grid spans the object's square, [-1, 1] in object units.
      mask[rows] = np.clip(_bilinear(pick, (v[rows] + 1) * 4 - 0.5, (u[rows] + 1) * 4 - 0.5)
                           * 1.3, 0, 1)
    else:  # about one pixel of anti-aliasing at the edge
      mask[rows] = np.clip(0.5 - _sdf(name, u[rows], v[rows]) * half[rows], 0, 1)
  rgb = np.asarray([COLORS[c] for c in COLOR_NAMES], np.float32)[attrs["color"]]
  rgb = rgb * rng.uniform(0.75, 1.0, size=(n, 1))
  m = mask[..., None]
  return (x * (1 - m) + m * rgb[:, None, None, :]).astype(np.float32)


def _article(word: str) -> str:
  return "an" if word[0] in "aeiou8" else "a"


def make_captions(rng: np.random.Generator, y: np.ndarray, attrs: Mapping[str, np.ndarray], *,
                  synonym_prob: float) -> np.ndarray:
  """One sampled caption per example; every caption names its object (or a synonym)."""
  n = len(y)
  syn, syn_pick = rng.random(size=(n, 6)), rng.integers(1 << 30, size=(n, 6))
  inc, pick = rng.random(size=(n, 6)), rng.integers(1 << 30, size=(n, 8))

  def word(w: str, i: int, slot: int) -> str:  # a synonym of `w` w.p. synonym_prob
    options = SYNONYMS.get(w, ())
    return options[syn_pick[i, slot] % len(options)] if options and syn[i, slot] < synonym_prob \
        else w

  out = []
  for i in range(n):
    name = word(CLASS_NAMES[y[i]], i, 0)
    color = word(COLOR_NAMES[attrs["color"][i]], i, 1) if inc[i, 0] < 0.5 else ""
    size = word(SIZE_NAMES[attrs["size"][i]], i, 2) if inc[i, 1] < 0.3 else ""
    adjs = [a for a in ((size, color) if pick[i, 0] % 10 < 7 else (color, size)) if a]
    pos_name = POSITION_NAMES[attrs["position"][i]]
    pos = ""
    if inc[i, 2] < 0.3:
      preps = ("in the", "at the", "near the") + (("corner",) if pos_name != "center" else ())
      prep = preps[pick[i, 1] % len(preps)]
      pos = f"in the {pos_name} corner" if prep == "corner" else f"{prep} {pos_name}"
    bg = ""
    if inc[i, 3] < 0.25:
      bg = (f"{('on a', 'against a')[pick[i, 2] % 2]} "
            f"{word(BACKGROUND_NAMES[attrs['background'][i]], i, 3)} {word('background', i, 4)}")
    order = pick[i, 3] % 5
    noun = " ".join([*adjs, name])
    if order == 0:
      opener = word(_OPENERS[pick[i, 4] % len(_OPENERS)], i, 5) if inc[i, 4] < 0.6 else ""
      text = " ".join(t for t in (opener, _article(noun), noun, pos, bg) if t)
    elif order == 1 and adjs:
      text = " ".join(t for t in (_article(name), name, ",", " and ".join(adjs), pos and ",",
                                  pos, bg) if t)
    elif order == 2:
      text = " ".join(t for t in ("there is", _article(noun), noun, pos, bg) if t)
    elif order == 3 and pos:
      text = " ".join(t for t in (pos_name, ":", _article(noun), noun, bg) if t)
    else:
      text = " ".join(t for t in (noun, pos, bg) if t)
    if inc[i, 5] < 0.15:
      text = f"{_FILLERS_BEFORE[pick[i, 5] % len(_FILLERS_BEFORE)]} {text}"
    elif inc[i, 5] > 0.85:
      text = f"{text} {_FILLERS_AFTER[pick[i, 6] % len(_FILLERS_AFTER)]}"
    out.append(text)
  return np.asarray(out)


def render(rng: np.random.Generator, n: int, *, image_size: int, synonym_prob: float,
           digit_pool: np.ndarray, digit_labels: np.ndarray) -> dict[str, np.ndarray]:
  """`n` examples: class-balanced `y` (each class n // 24 or one more times), attributes,
  images and captions."""
  y = rng.permutation(np.arange(n) % len(CLASS_NAMES)).astype(np.int32)
  attrs = {"color": rng.integers(len(COLOR_NAMES), size=n),
           "size": rng.integers(len(SIZE_NAMES), size=n),
           "position": rng.integers(len(POSITION_NAMES), size=n),
           "background": rng.integers(len(BACKGROUND_NAMES), size=n)}
  attrs = {k: a.astype(np.int32) for k, a in attrs.items()}
  x = np.empty((n, image_size, image_size, 3), np.float32)
  chunk = 4096  # bounds the per-image coordinate grids' memory
  for s in range(0, n, chunk):
    part = {k: a[s:s + chunk] for k, a in attrs.items()}
    x[s:s + chunk] = render_images(rng, y[s:s + chunk], part, image_size=image_size,
                                   digit_pool=digit_pool, digit_labels=digit_labels)
  captions = make_captions(rng, y, attrs, synonym_prob=synonym_prob)
  return {"x": x, "y": y, **attrs, "caption": captions}


def _to_dataset(parts: Mapping[str, np.ndarray], id_offset: int,
                tokenizer: Tokenizer | None) -> Dataset:
  n = len(parts["x"])
  extras = {k: parts[k] for k in ("color", "size", "position", "background", "caption")}
  if tokenizer is not None:
    extras["tokens"] = tokenizer.encode_batch(list(parts["caption"]))
  return Dataset(x=parts["x"], y=parts["y"],
                 ids=np.arange(id_offset, id_offset + n, dtype=np.int64), extras=extras)


# The config.data fields `load_captioned_scenes` reads, with their defaults.
DEFAULTS = {"seed": 0, "image_size": 32, "context_length": 24, "synonym_prob": 0.3,
            "num_train": 20000, "num_val": 1000, "num_test": 2000,
            "num_downstream_train": 2000, "num_downstream_test": 1000}
_ID_OFFSETS = {"train": 0, "val": 10 ** 9, "test": 2 * 10 ** 9, "downstream_train": 3 * 10 ** 9,
               "downstream_test": 4 * 10 ** 9}


@DATASETS.register("captioned_scenes", defaults=DEFAULTS)
def load_captioned_scenes(data_config: Any) -> DataSplits:
  """Builds the splits from `data_config` fields (all optional; see the module docstring)."""
  get = field_reader(data_config, DEFAULTS)
  seed, image_size = int(get("seed")), int(get("image_size"))
  context_length, synonym_prob = int(get("context_length")), float(get("synonym_prob"))
  counts = {k: int(get(f"num_{k}")) for k in _ID_OFFSETS}
  if image_size < 16:
    raise ConfigError(f"config.data.image_size={image_size} must be >= 16 (the glyphs need "
                      "about 6 pixels)")
  if not 0.0 <= synonym_prob <= 1.0:
    raise ConfigError(f"config.data.synonym_prob={synonym_prob} must be in [0, 1]")
  for k, v in counts.items():
    if v < 0 or (k == "train" and v == 0) or v >= 10 ** 9:
      raise ConfigError(f"config.data.num_{k}={v} must be in [{int(k == 'train')}, 1e9)")

  digits = embedded.sklearn_digits()  # embedded in scikit-learn, no download
  perm = np.random.default_rng(seed).permutation(len(digits.target))
  cut = int(0.7 * len(perm))
  pools = {"seen": perm[:cut], "held_out": perm[cut:]}
  raw = {}
  for j, split in enumerate(_ID_OFFSETS):  # one stream per split: sizes do not interact
    idx = pools["seen" if split == "train" else "held_out"]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 23, j]))
    raw[split] = render(rng, counts[split], image_size=image_size, synonym_prob=synonym_prob,
                        digit_pool=digits.images[idx], digit_labels=digits.target[idx])
  tokenizer = Tokenizer.build(raw["train"]["caption"], context_length=context_length)
  splits = {k: _to_dataset(raw[k], _ID_OFFSETS[k], tokenizer) for k in ("train", "val", "test")}
  ds = {k: _to_dataset(raw[k], _ID_OFFSETS[k], None)
        for k in ("downstream_train", "downstream_test")}
  names = {"object": CLASS_NAMES, "color": COLOR_NAMES, "size": SIZE_NAMES,
           "position": POSITION_NAMES, "background": BACKGROUND_NAMES}
  downstream = {}
  for task in PROBE_TASKS:
    relabel = lambda d: d if task == "object" else d.replace(y=d.extras[task].astype(np.int32))
    downstream[task] = {"train": relabel(ds["downstream_train"]),
                        "test": relabel(ds["downstream_test"]),
                        "class_names": names[task], "num_classes": len(names[task])}
  info = {
      "class_names": CLASS_NAMES, "prompt_templates": PROMPT_TEMPLATES, "synonyms": SYNONYMS,
      "tokenizer": tokenizer, "vocab_size": tokenizer.vocab_size,
      "context_length": context_length, "color_names": COLOR_NAMES,
      "position_names": POSITION_NAMES, "size_names": SIZE_NAMES,
      "background_names": BACKGROUND_NAMES, "downstream": downstream,
      "poison_caption_source": "data",
  }
  return DataSplits(train=splits["train"], val=splits["val"], test=splits["test"],
                    num_classes=len(CLASS_NAMES), info=info)
