"""The filtering baseline on poisoned `captioned_scenes` (issue 23): plain CLIP for 2 epochs on
all pairs, then every pair is scored by its image-caption cosine under that model and CLIP
trains on the 90% best-aligned pairs for the remaining 8 epochs (contrastive method 'filter';
robustdata/contrastive/config.py says why it is a strong, cheap baseline).

Setup and attack: configs/clip_scenes/common.py (same data, model, poisons, epochs and LR
schedule as configs/clip_scenes/clip.py). results.json `filter_history` (metrics.jsonl
`filter`) gives the poisons kept per attack and the kept poison rate against the base rate.
Command:   python -m experiments.main --config=configs/clip_scenes/filter.py:r1,s0
Variants:  r005 / r02 / r05 / r1 (default r1), t50, s0 / s1 / s2, e30 (30 epochs, scored after
           2), blend (blended backdoor trigger), smoke (1 + 1 epochs).
Hardware:  2 CPU cores. Time: about 8 minutes on one core (one XLA thread); e30 about 45.
Expected:  r1, s0: zero-shot 0.87, targeted ASR 0.19, backdoor ASR 0.73 (CLIP 0.91, 0.69, 0.86);
           the cut removes 150 of 192 targeted poisons but 33 of 200 backdoor ones; t50:
           targeted ASR 0.69 (CLIP 1.00); r02,e30, s0: zero-shot 0.97, targeted 0.06, backdoor
           0.16 (CLIP 0.98, 0.31, 0.54); blend, s0: backdoor 0.013 (CLIP 0.69).
Results:   docs/results/clip-poisoning.md
"""

from configs.clip_scenes import common
from robustdata import config_lib


def get_config(arg=None):
  config, smoke = common.scenes_config("filter", arg, name="filter_scenes")
  config.contrastive.augment = False       # plain CLIP on the kept pairs
  config.contrastive.filter_warmup_epochs = 2 if not smoke else 1
  config.contrastive.keep_fraction = 0.9
  config.contrastive.refilter_every = 0    # score once
  return config_lib.finalize(config)


def get_sweep():
  """The filter at 0.05%, 0.2%, 0.5% and 1% per attack (and 0.2% in 30 epochs), seeds 0-2."""
  return common.sweep("configs/clip_scenes/filter.py")
