"""A tfds dataset in ArrayRecord format written here, for tests of the tfds path (no download,
no TensorFlow)."""

import importlib.util
import os
import sys
import textwrap
import uuid


def write_fake_tfds(data_dir, name, n_train, n_test, shape, num_classes):
  """Writes an ArrayRecord tfds dataset called `name` into data_dir (no TensorFlow needed)."""
  pkg = os.path.join(str(data_dir), "_builder_pkg", f"fake_{name}")
  os.makedirs(pkg, exist_ok=True)
  version = {"mnist": "3.0.1", "cifar10": "3.0.2"}[name]
  code = textwrap.dedent(f'''
      import numpy as np
      import PIL.Image
      import tensorflow_datasets as tfds

      # Not registered: the name may already be taken by tfds's own builder (once anything has
      # loaded tfds's registry, e.g. a celeb_a lookup); the source reads the prepared files.
      with tfds.core.registered.skip_registration():
        class Builder(tfds.core.GeneratorBasedBuilder):
          name = {name!r}
          VERSION = tfds.core.Version({version!r})

          def _info(self):
            return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({{
                "image": tfds.features.Image(shape={shape!r}),
                "label": tfds.features.ClassLabel(num_classes={num_classes})}}))

          def _split_generators(self, dl_manager):
            return {{"train": self._generate_examples({n_train}, 0),
                     "test": self._generate_examples({n_test}, 1)}}

          def _generate_examples(self, n, seed):
            rng = np.random.default_rng(seed)
            for i in range(n):
              img = rng.integers(0, 256, {shape!r}, dtype=np.uint8)
              pil = PIL.Image.fromarray(img[..., 0] if {shape[-1]} == 1 else img)
              yield i, {{"image": pil, "label": i % {num_classes}}}
      ''')
  path = os.path.join(pkg, "__init__.py")
  with open(path, "w") as f:
    f.write(code)
  # A module of its own per call: an import by name would return the first call's module (its
  # sizes baked in) to every later call in the process.
  spec = importlib.util.spec_from_file_location(f"fake_{name}_{uuid.uuid4().hex}", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # tfds looks the builder's module up by name
  spec.loader.exec_module(module)
  module.Builder(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
