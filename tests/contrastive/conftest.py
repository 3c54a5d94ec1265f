"""Shared fixtures of the contrastive tests: a small captioned_shapes split and a tiny CLIP."""

import pytest

from robustdata.data.captioned_shapes import load_captioned_shapes
from robustdata.models.clip import make_clip

TINY = {"embed_dim": 32, "cnn_widths": (8, 16), "text_width": 32, "text_depth": 1,
        "text_heads": 2, "vit_width": 32, "vit_depth": 1, "vit_heads": 2, "vit_patch_size": 6}


@pytest.fixture(scope="module")
def splits():
  return load_captioned_shapes({"num_train": 384, "num_val": 8, "num_test": 64, "context_length": 16,
                                "num_downstream_train": 64, "num_downstream_test": 64})


def tiny_model(splits, **kw):
  return make_clip({**TINY, **kw}, vocab_size=splits.info["vocab_size"],
                   context_length=splits.info["context_length"])
