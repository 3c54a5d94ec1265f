"""The contrastive trainer's evaluations of the results contract: zero-shot accuracy, linear
probe, targeted and backdoor attack success.
"""

from __future__ import annotations

from typing import Any, Optional

from robustdata.data.dataset import DataSplits


def evaluate(config, data: DataSplits, attack_eval: dict[str, Any], *, encode_image, encode_text,
             image_features, with_probe: bool = True) -> dict[str, Optional[float]]:
  """Zero-shot top-1 on test, linear probe on the downstream task, targeted/backdoor ASR.

  Metrics a dataset cannot support (no class names, prompts or downstream task) are None.
  """
  from robustdata.evals import attacks as attack_evals
  from robustdata.evals.linear_probe import linear_probe
  from robustdata.evals.zero_shot import class_embeddings, zero_shot_accuracy

  info, cap = data.info, config.contrastive.eval_max_images or None
  out: dict[str, Optional[float]] = {"zero_shot_accuracy": None, "linear_probe_accuracy": None,
                                     "targeted_asr": None, "backdoor_asr": None}
  if "class_names" not in info or "prompt_templates" not in info:
    return out
  cls = class_embeddings(encode_text, info["tokenizer"], info["class_names"],
                         info["prompt_templates"])
  zs = zero_shot_accuracy(encode_image(data.test.x[:cap]), data.test.y[:cap], cls, topk=(1, 5))
  out["zero_shot_accuracy"], out["zero_shot_top5"] = zs["top1"], zs["top5"]
  if "targeted" in attack_eval:
    t = attack_eval["targeted"]
    out.update(attack_evals.targeted_asr(encode_image(t["x"]), t["adversarial"], cls))
  if "backdoor" in attack_eval:
    b = attack_eval["backdoor"]
    out.update(attack_evals.backdoor_asr(encode_image(b["x"][:cap]), b["y"][:cap], cls,
                                         target_class=b["target_class"]))
  task = info.get("downstream", {}).get(config.contrastive.probe_task)
  if with_probe and task is not None:
    tr, te = task["train"], task["test"]
    out.update(linear_probe(image_features(tr.x[:cap]), tr.y[:cap], image_features(te.x[:cap]),
                            te.y[:cap]))
  return out
