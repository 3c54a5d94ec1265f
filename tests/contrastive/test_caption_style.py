"""`captioned_shapes` caption styles: 'object' captions always name the object (or a synonym of
it) and name the attributes less often than 'attributes' captions; an unknown style is a
ConfigError naming the field; the default is 'attributes'."""

import numpy as np
import pytest

from robustdata.data import captioned_shapes as cs
from robustdata.registry import ConfigError

_SMALL = {"classes": "shapes", "num_train": 400, "num_val": 4, "num_test": 4,
          "num_downstream_train": 4, "num_downstream_test": 4}


def _words(style):
  cfg = dict(_SMALL) if style is None else {**_SMALL, "caption_style": style}
  data = cs.load_captioned_shapes(cfg)
  return data, [c.split() for c in data.train.extras["caption"]]


def _mentions(caption_words, names):
  return np.mean([any(w in words for n in names for w in (n, *cs.SYNONYMS.get(n, ())))
                  for words in caption_words])


def test_object_captions_name_the_object_and_fewer_attributes():
  data, obj = _words("object")
  assert data.info["caption_templates"] == cs.OBJECT_CAPTION_TEMPLATES
  for words, y in zip(obj, data.train.y):
    name = cs.SHAPE_NAMES[y]
    assert name in words or any(s in words for s in cs.SYNONYMS[name])
  _, attr = _words("attributes")
  colors, sizes = cs.COLOR_NAMES, cs.SIZE_NAMES
  assert _mentions(obj, colors) < 0.65 < _mentions(attr, colors)
  assert _mentions(obj, sizes) < 0.35 < _mentions(attr, sizes)
  assert _mentions(obj, ("left", "right")) < 0.35 < _mentions(attr, ("left", "right"))


def test_default_style_and_unknown_style():
  data, default = _words(None)
  assert data.info["caption_templates"] == cs.CAPTION_TEMPLATES
  assert default == _words("attributes")[1]
  with pytest.raises(ConfigError, match="config.data.caption_style='short'"):
    cs.load_captioned_shapes({**_SMALL, "caption_style": "short"})
