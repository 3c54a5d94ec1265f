"""CC3M-style CSV/TSV reader on files written by the test."""

import numpy as np
import pytest
from PIL import Image

from robustdata.data.caption_csv import load_caption_csv, read_caption_csv
from robustdata.data.tokenizer import Tokenizer
from robustdata.registry import ConfigError


def _write(tmp_path, sep, name):
  rng = np.random.default_rng(0)
  (tmp_path / "img").mkdir(exist_ok=True)
  caps = ["a red square", "a blue circle, on grass", "two dogs"]
  lines = ["image" + sep + "caption"]
  for i, c in enumerate(caps):
    arr = (rng.random((10 + i, 12, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "img" / f"{i}.png")
    cell = f'"{c}"' if "," in c and sep == "," else c
    lines.append(f"img/{i}.png{sep}{cell}")
  (tmp_path / name).write_text("\n".join(lines) + "\n")
  return str(tmp_path / name), caps


@pytest.mark.parametrize("sep,name", [(",", "train.csv"), ("\t", "train.tsv")])
def test_reader_loads_images_and_tokens(tmp_path, sep, name):
  path, caps = _write(tmp_path, sep, name)
  tok = Tokenizer.build(caps, context_length=10)
  ds = read_caption_csv(path, tokenizer=tok, image_size=8)
  assert ds.x.shape == (3, 8, 8, 3) and ds.x.dtype == np.float32
  assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0
  assert list(ds.extras["caption"]) == caps
  assert [tok.decode(r) for r in ds.extras["tokens"]] == ["a red square", "a blue circle , on grass",
                                                          "two dogs"]
  ref = np.asarray(Image.open(tmp_path / "img" / "0.png").convert("RGB").resize((8, 8), Image.BICUBIC))
  np.testing.assert_allclose(ds.x[0], ref / 255.0, atol=1e-6)


def test_registered_source_and_bad_column(tmp_path):
  path, _ = _write(tmp_path, ",", "train.csv")
  splits = load_caption_csv({"train_file": path, "val_file": path, "image_size": 6})
  assert len(splits.train) == 3 and len(splits.val) == 3 and len(splits.test) == 0
  assert splits.info["tokenizer"].vocab_size > 259
  with pytest.raises(ConfigError, match="caption_key"):
    load_caption_csv({"train_file": path, "caption_key": "text"})
  with pytest.raises(ConfigError, match="train_file"):
    load_caption_csv({})
