"""Correct-n-Contrast (issue 25): the contrastive loss and its gradient equal a float64 NumPy
computation on a tiny batch, the positive/negative masks follow the definition (a brute-force
loop), the objective's training loss is (1 - lam) CE + lam L_con of the model's penultimate
features, the 'cnc' policy builds the paper's batches (anchors, positives, negatives) and
resumes bitwise, CnC inference gives (class, prediction) groups, a run on inferred attributes
trains exactly as on the same partition given as annotations, bad inputs are clear errors, and
the smoke chain of configs/spuco/cnc_digits.py reports worst-group accuracy."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from robustdata import config_lib, runner
from robustdata.data import sources
from robustdata.data.dataset import Dataset
from robustdata.data.policies import PolicyContext
from robustdata.poisoning.artifact import dataset_fingerprint
from robustdata.registry import POLICIES, ConfigError
from robustdata.spurious import cnc, group_source, infer_stage
from robustdata.spurious import inference as inf
from robustdata.spurious.objectives import CorrectNContrast
from robustdata.train import grad_rules
from robustdata.train import step as step_lib
from robustdata.train.driver import Driver
from robustdata.train.supervised import SupervisedTask


# --- The kernels against float64 NumPy. ----------------------------------------------------------

def _batch(seed=0, b=12, d=5):
  """Features, 3 classes, 3 attribute values, and two padding rows (mask 0)."""
  rng = np.random.default_rng(seed)
  features = rng.normal(size=(b, d))
  labels = rng.integers(0, 3, b)
  attribute = rng.integers(0, 3, b)
  mask = np.ones(b)
  mask[-2:] = 0.0
  return features, labels, attribute, mask


def _masks_loop(labels, attribute, mask):
  b = len(labels)
  pos, neg = np.zeros((b, b), bool), np.zeros((b, b), bool)
  for i in range(b):
    for j in range(b):
      if i == j or not (mask[i] and mask[j]):
        continue
      pos[i, j] = labels[j] == labels[i] and attribute[j] != attribute[i]
      neg[i, j] = labels[j] != labels[i] and attribute[j] == attribute[i]
  return pos, neg


def _loss_loop(features, labels, attribute, mask, tau):
  """(L_con, per-anchor losses, anchors) by the definition, one anchor at a time, float64."""
  z = features / np.linalg.norm(features, axis=1, keepdims=True)
  per, anchors = np.zeros(len(labels)), []
  for i in range(len(labels)):
    if not mask[i]:
      continue
    others = [j for j in range(len(labels)) if j != i and mask[j]]
    positives = [j for j in others if labels[j] == labels[i] and attribute[j] != attribute[i]]
    negatives = [j for j in others if labels[j] != labels[i] and attribute[j] == attribute[i]]
    if not positives or not negatives:
      continue
    denominator = sum(np.exp(z[i] @ z[j] / tau) for j in positives + negatives)
    per[i] = -np.mean([np.log(np.exp(z[i] @ z[p] / tau) / denominator) for p in positives])
    anchors.append(i)
  return per[anchors].mean() if anchors else 0.0, per, anchors


def test_masks_follow_the_definition():
  _, labels, attribute, mask = _batch()
  pos, neg = cnc.contrastive_masks(jnp.asarray(labels), jnp.asarray(attribute),
                                   jnp.asarray(mask))
  want_pos, want_neg = _masks_loop(labels, attribute, mask)
  np.testing.assert_array_equal(np.asarray(pos), want_pos)
  np.testing.assert_array_equal(np.asarray(neg), want_neg)
  assert want_pos.any() and want_neg.any() and not (want_pos & want_neg).any()


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_loss_equals_float64_numpy(tau):
  features, labels, attribute, mask = _batch()
  labels[0], attribute[0] = 3, 3  # a row with neither positives nor negatives
  want, want_per, anchors = _loss_loop(features, labels, attribute, mask, tau)
  assert 3 <= len(anchors) < int(mask.sum())  # some rows are anchors, some are not
  got, count = cnc.contrastive_loss(jnp.asarray(features, jnp.float32), jnp.asarray(labels),
                                    jnp.asarray(attribute), jnp.asarray(mask), temperature=tau)
  assert int(count) == len(anchors)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  pos, neg = cnc.contrastive_masks(jnp.asarray(labels), jnp.asarray(attribute),
                                   jnp.asarray(mask))
  per, is_anchor = cnc.anchor_losses(jnp.asarray(features, jnp.float32), pos, neg,
                                     temperature=tau)
  np.testing.assert_array_equal(np.flatnonzero(np.asarray(is_anchor)), anchors)
  np.testing.assert_allclose(np.asarray(per), want_per, rtol=1e-5, atol=1e-6)


def test_gradient_equals_float64_finite_differences():
  features, labels, attribute, mask = _batch(seed=1)
  tau = 0.5
  grad = jax.grad(lambda f: cnc.contrastive_loss(f, jnp.asarray(labels), jnp.asarray(attribute),
                                                 jnp.asarray(mask), temperature=tau)[0])(
                                                     jnp.asarray(features, jnp.float32))
  eps, want = 1e-6, np.zeros_like(features)
  for idx in np.ndindex(features.shape):
    up, down = features.copy(), features.copy()
    up[idx] += eps
    down[idx] -= eps
    want[idx] = (_loss_loop(up, labels, attribute, mask, tau)[0]
                 - _loss_loop(down, labels, attribute, mask, tau)[0]) / (2 * eps)
  np.testing.assert_allclose(np.asarray(grad), want, rtol=2e-3, atol=2e-5)
  assert not np.asarray(grad)[-2:].any()  # padding rows get no gradient


def test_no_anchor_gives_zero_loss_and_gradient():
  features, labels, _, mask = _batch()
  attribute = labels  # same class <=> same attribute: no positive and no negative anywhere
  loss_fn = lambda f: cnc.contrastive_loss(f, jnp.asarray(labels), jnp.asarray(attribute),
                                           jnp.asarray(mask), temperature=0.05)
  loss, count = loss_fn(jnp.asarray(features, jnp.float32))
  assert float(loss) == 0.0 and int(count) == 0
  grad = jax.grad(lambda f: loss_fn(f)[0])(jnp.asarray(features, jnp.float32))
  assert np.isfinite(np.asarray(grad)).all() and not np.asarray(grad).any()


# --- The objective. ------------------------------------------------------------------------------

def _config(**cnc_fields):
  config = config_lib.base_config()
  config.model.name = "mlp"
  config.model.hidden = (8,)
  config.method = "cnc"
  config.data.name = "spuco_digits"
  config.cnc = ml_collections.ConfigDict({"contrastive_weight": 0.5, "temperature": 0.5,
                                          **cnc_fields})
  return config


def _objective_and_batch(lam):
  """The objective on a 12-row train split whose groups are (class, attribute), and a batch
  of its first 10 rows plus two padding rows."""
  features, labels, attribute, mask = _batch(seed=2, d=4)
  groups = (3 * labels + attribute).astype(np.int32)
  train = Dataset(x=features.astype(np.float32), y=labels.astype(np.int32),
                  ids=np.arange(len(labels)), groups=groups, spurious=attribute.astype(np.int32))
  objective = CorrectNContrast(_config(contrastive_weight=lam), num_groups=9, num_classes=3)
  objective.prepare(train)
  present = np.bincount(groups, minlength=9) > 0
  np.testing.assert_array_equal(objective.group_attribute,
                                np.where(present, np.arange(9) % 3, -1))  # -1: empty group
  batch = {"x": jnp.asarray(features, jnp.float32), "y": jnp.asarray(labels, jnp.int32),
           "groups": jnp.asarray(groups), "mask": jnp.asarray(mask, jnp.float32),
           "weight": jnp.ones(len(labels), jnp.float32), "index": jnp.arange(len(labels))}
  return objective, batch, (labels, attribute, mask)


def test_objective_loss_is_weighted_ce_plus_contrastive():
  lam = 0.3
  objective, batch, (labels, attribute, mask) = _objective_and_batch(lam)
  variables = jax.jit(objective.model.init)(jax.random.PRNGKey(0), batch["x"][:1])
  params = variables["params"]
  logits, features = jax.jit(lambda v, x: objective.model.apply(v, x, return_features=True))(
      variables, batch["x"])
  logits, features = np.asarray(logits, np.float64), np.asarray(features, np.float64)
  logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  ce = -logp[np.arange(len(labels)), labels]
  l_con, _, anchors = _loss_loop(features, labels, attribute, mask, 0.5)
  assert anchors
  want = (1 - lam) * np.sum(mask * ce) / mask.sum() + lam * l_con

  plain = step_lib.make_loss_fn(objective.model)
  loss_fn = objective.wrap_loss(plain)
  # Each call below is one jitted program (eager, each operation compiles on its own).
  losses, (_, got_logits) = jax.jit(lambda p: loss_fn(p, {}, batch, None, True))(params)
  np.testing.assert_allclose(float(jnp.sum(batch["mask"] * losses) / jnp.sum(batch["mask"])),
                             want, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(got_logits), logits, rtol=1e-5, atol=1e-6)
  eval_losses, _ = jax.jit(lambda p: loss_fn(p, {}, batch, None, False))(params)  # eval: plain
  np.testing.assert_allclose(np.asarray(eval_losses), ce, rtol=1e-5)

  coef_fn = lambda l, b: objective.coefficients(l, b, {})[0]
  rule = objective.wrap_rule(grad_rules.plain_rule)
  grads, _, aux = jax.jit(lambda p: rule(loss_fn, p, {}, batch, None, coef_fn))(params)
  np.testing.assert_allclose(float(aux["cnc_contrastive_loss"]), l_con, rtol=1e-4)
  np.testing.assert_allclose(float(aux["cnc_cross_entropy"]),
                             np.sum(mask * ce) / mask.sum(), rtol=1e-5)
  assert float(aux["cnc_anchors"]) == len(anchors)

  def direct(p):  # the same loss written as one expression
    lg, f = objective.model.apply({"params": p}, batch["x"], return_features=True)
    c = -jnp.take_along_axis(jax.nn.log_softmax(lg), batch["y"][:, None], 1)[:, 0]
    con, _ = cnc.contrastive_loss(f, batch["y"], jnp.asarray(attribute), batch["mask"],
                                  temperature=0.5)
    return (1 - lam) * jnp.sum(batch["mask"] * c) / jnp.sum(batch["mask"]) + lam * con
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads,
               jax.jit(jax.grad(direct))(params))


def test_zero_contrastive_weight_is_plain_cross_entropy():
  objective, batch, _ = _objective_and_batch(0.0)
  params = jax.jit(objective.model.init)(jax.random.PRNGKey(1), batch["x"][:1])["params"]
  plain = step_lib.make_loss_fn(objective.model)
  coef_fn = lambda l, b: objective.coefficients(l, b, {})[0]
  got, _, aux = jax.jit(lambda p: objective.wrap_rule(grad_rules.plain_rule)(
      objective.wrap_loss(plain), p, {}, batch, None, coef_fn))(params)
  want, _, _ = jax.jit(lambda p: grad_rules.plain_rule(plain, p, {}, batch, None, coef_fn))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8), got, want)
  assert "cnc_contrastive_loss" not in aux


# --- The policy. ---------------------------------------------------------------------------------

def _train(seed=0, n=80):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 2, n)
  a = np.where(rng.random(n) < 0.8, y, 1 - y)
  return Dataset(x=np.zeros((n, 3), np.float32), y=y.astype(np.int32), ids=np.arange(n),
                 groups=(2 * y + a).astype(np.int32), spurious=a.astype(np.int32))


def _policy(train, *, batch_size=14, **fields):
  config = config_lib.base_config()
  config.policy.name = "cnc"
  config.data.name = "spuco_digits"
  config.policy.update({"num_positives": 4, "num_negatives": 3, **fields})
  return POLICIES.get("cnc")(config, train, batch_size=batch_size, seed=3, num_classes=2,
                             num_groups=4)


def test_policy_builds_anchor_positive_negative_batches():
  train = _train()
  y, a = train.y, train.spurious
  policy = _policy(train)
  assert policy.num_anchors == 7
  majority = [np.bincount(a[y == c]).argmax() for c in range(2)]
  for epoch in range(2):
    ctx = PolicyContext(step=0, epoch=epoch, state=None, probe=None)
    steps = policy.steps_for(ctx)
    assert steps == policy.expected_steps_per_epoch() == sum(
        -(-int(np.sum((y == c) & (a == majority[c]))) // 7) for c in range(2))
    anchors_seen = []
    for _ in range(steps):
      idx, w = policy.next_batch(ctx)
      np.testing.assert_array_equal(w, 1.0)
      anchors, pos, neg = idx[:-7], idx[-7:-3], idx[-3:]
      assert 1 <= len(anchors) <= 7
      c = y[anchors[0]]
      assert (y[anchors] == c).all() and (a[anchors] == majority[c]).all()
      assert (y[pos] == c).all() and (a[pos] != majority[c]).all()
      assert (y[neg] != c).all() and (a[neg] == majority[c]).all()
      anchors_seen.extend(anchors.tolist())
    # Every anchor exactly once per epoch.
    assert sorted(anchors_seen) == np.flatnonzero(a == np.array(majority)[y]).tolist()
  assert policy.results()["cnc_anchor_classes"] == [0, 1]


def test_policy_is_seeded_and_resumes_bitwise():
  train = _train()
  ctx = PolicyContext(step=0, epoch=0, state=None, probe=None)
  first, second = _policy(train), _policy(train)
  for _ in range(3):
    np.testing.assert_array_equal(first.next_batch(ctx)[0], second.next_batch(ctx)[0])
  saved = json.loads(json.dumps(first.state_dict()))
  ahead = [first.next_batch(ctx)[0] for _ in range(first.steps_for(ctx) - 3)]
  ahead += [first.next_batch(PolicyContext(step=0, epoch=1, state=None, probe=None))[0]]
  resumed = _policy(train)
  resumed.load_state_dict(saved)
  again = [resumed.next_batch(ctx)[0] for _ in range(resumed.steps_for(ctx) - 3)]
  again += [resumed.next_batch(PolicyContext(step=0, epoch=1, state=None, probe=None))[0]]
  for x, z in zip(ahead, again):
    np.testing.assert_array_equal(x, z)


def test_policy_reads_the_inferred_attribute():
  """With config.group_stage the policy contrasts by the inferred attribute, not the annotated
  one (here the inverse of it)."""
  train = _train()
  flipped = 1 - train.spurious
  inferred = train.replace(extras={group_source.INFERRED_ATTRIBUTE: flipped})
  config = config_lib.base_config()
  config.policy.name = "cnc"
  config.policy.update({"num_positives": 4, "num_negatives": 3})
  config.group_stage = ml_collections.ConfigDict({"trainer": "group_inference"})
  policy = POLICIES.get("cnc")(config, inferred, batch_size=14, seed=3, num_classes=2,
                               num_groups=4)
  want = cnc.contrastive_pools(train.y, flipped, num_classes=2)
  for (ga, gp, gn), (wa, wp, wn) in zip(policy.pools, want):
    np.testing.assert_array_equal(ga, wa)
    np.testing.assert_array_equal(gp, wp)
    np.testing.assert_array_equal(gn, wn)


# --- CnC inference. ------------------------------------------------------------------------------

def test_prediction_groups_are_class_and_prediction():
  rng = np.random.default_rng(4)
  labels = rng.integers(0, 3, 50)
  logits = rng.normal(size=(50, 3))
  logits[labels == 2, 0] += 10.0  # class 2 is never predicted as 2 (groups (2, 2) empty)
  groups, names, attribute = inf.prediction_groups(logits, labels, num_classes=3)
  pred = logits.argmax(1)
  pairs = sorted({(int(y), int(p)) for y, p in zip(labels, pred)})
  assert names == tuple(f"y={y},pred={p}" for y, p in pairs)
  assert attribute == [p for _, p in pairs]
  for i in range(50):
    assert pairs[groups[i]] == (labels[i], pred[i])
  get = lambda k: {**infer_stage.INFERENCE_DEFAULTS, "method": "cnc"}[k]
  g2, n2, info, score = infer_stage.infer(get, logits, None, labels, num_classes=3)
  np.testing.assert_array_equal(g2, groups)
  assert n2 == names and info == {"group_attribute": attribute}
  assert score == pytest.approx(np.mean(pred != labels))


# --- Inferred vs annotated, bad inputs, smoke. ---------------------------------------------------

def _data_fields(c):
  c.data.name = "spuco_digits"
  c.data.classes = ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))
  c.data.spurious_correlation_strength = 0.9
  c.data.val_fraction = 0.2
  c.data.seed = 0


def _chain(tiny_config, method="cnc"):
  """A tiny CnC run on spuco_digits whose config.group_stage names an inference stage."""
  stage = tiny_config(trainer="group_inference", name="tiny_infer")
  _data_fields(stage)
  stage.inference = ml_collections.ConfigDict(dict(infer_stage.INFERENCE_DEFAULTS))
  stage.inference.method = method
  stage.reference = tiny_config(name="tiny_reference")
  _data_fields(stage.reference)
  config = tiny_config(method="cnc", name="tiny_cnc")
  _data_fields(config)
  config.policy.name = "cnc"
  config.policy.num_positives = 8
  config.policy.num_negatives = 8
  config.cnc = ml_collections.ConfigDict({"contrastive_weight": 0.5, "temperature": 0.05})
  config.train.max_steps = 6
  config.group_stage = stage
  return config


def _write_partition(config, workdir, groups, group_attribute):
  stage = config_lib.resolve(config.group_stage)
  data = sources.load(stage.data)
  names = tuple(f"g{k}" for k in range(int(groups.max()) + 1))
  extra = {} if group_attribute is None else {"group_attribute": list(group_attribute)}
  inf.GroupPartition(groups=groups, group_names=names, method="cnc",
                     run_id=config_lib.run_id(stage), reference_run_id="ref",
                     data_fingerprint=dataset_fingerprint(data.train.x, data.train.y),
                     extra=extra).save(os.path.join(workdir, config_lib.run_id(stage)))


class _Annotated(SupervisedTask):
  """The same groups and attribute given as the data source's annotations."""

  def __init__(self, groups, attribute):
    self.groups, self.attribute = groups, attribute

  def load_data(self, config):
    data = sources.load(config.data)
    return dataclasses.replace(data, train=data.train.replace(groups=self.groups,
                                                              spurious=self.attribute))


def test_inferred_attribute_trains_exactly_as_annotations(tiny_config, tmp_path):
  config = _chain(tiny_config)
  y = sources.load(config_lib.resolve(config).data).train.y
  attribute = np.random.default_rng(6).integers(0, 2, len(y)).astype(np.int32)  # not the truth
  groups = (2 * y + attribute).astype(np.int32)
  _write_partition(config, str(tmp_path), groups, [0, 1, 0, 1])
  inferred = SupervisedTask()
  Driver(config_lib.resolve(config), str(tmp_path / "inferred")).run(inferred)
  np.testing.assert_array_equal(inferred.objective.group_attribute, [0, 1, 0, 1])
  assert int(inferred.state.step) == 6

  plain = config_lib.from_dict(config_lib.to_dict(config))
  with plain.unlocked():
    del plain["group_stage"]
  annotated = _Annotated(groups, attribute)
  Driver(config_lib.resolve(plain), str(tmp_path / "annotated")).run(annotated)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(inferred.state.params),
               jax.device_get(annotated.state.params))


def test_bad_inputs_are_clear_errors(tiny_config, tmp_path):
  # An inference stage whose partition records no attribute (jtt: (class, error) groups).
  config = _chain(tiny_config, method="jtt")
  y = sources.load(config_lib.resolve(config).data).train.y
  error = np.arange(len(y)) % 7 == 0
  _write_partition(config, str(tmp_path), (2 * y + error).astype(np.int32), None)
  with pytest.raises(ConfigError, match=r"config.method='cnc' needs a spurious attribute .*"
                     r"inference.method='jtt'.*inference.method='cnc'"):
    Driver(config_lib.resolve(config), str(tmp_path / "run")).run(SupervisedTask())
  train = _train()
  with pytest.raises(ConfigError, match=r"num_positives=8 \+ .*num_negatives=6 leave no anchors"):
    _policy(train, num_positives=8, num_negatives=6)
  digits = config_lib.base_config()
  digits.policy.name = "cnc"
  digits.policy.update({"num_positives": 4, "num_negatives": 3})
  with pytest.raises(ConfigError, match=r"config.data.name='digits' annotates none"):
    POLICIES.get("cnc")(digits, train.replace(spurious=None), batch_size=14, seed=0,
                        num_classes=2, num_groups=4)
  with pytest.raises(ConfigError, match=r"nothing to contrast"):  # attribute = class
    _policy(train.replace(spurious=train.y))
  with pytest.raises(ConfigError, match=r"config.cnc.temperature=0.0 is out of range"):
    CorrectNContrast(_config(temperature=0.0), num_groups=4, num_classes=2)
  with pytest.raises(ConfigError, match=r"config.cnc.weight is not a known field"):
    CorrectNContrast(_config(weight=1.0), num_groups=4, num_classes=2)
  dp = _config()
  dp.privacy.mode = "dp_sgd"
  with pytest.raises(ConfigError, match=r"config.method='cnc' needs the plain gradient rule"):
    CorrectNContrast(dp, num_groups=4, num_classes=2)
  objective = CorrectNContrast(_config(), num_groups=2, num_classes=2)
  with pytest.raises(ConfigError, match=r"group 0 holds examples of spurious attributes \[0, 1\]"):
    objective.prepare(train.replace(groups=train.y))


@pytest.mark.slow
def test_cnc_smoke_chain(tmp_path):
  """Reference -> CnC inference -> CnC training (configs/spuco/cnc_digits.py:smoke); a rerun
  reuses every stage."""
  from configs.spuco import cnc_digits  # pylint: disable=g-import-not-at-top
  config = cnc_digits.get_config("smoke")
  run_dir, results = runner.run(config, str(tmp_path))
  with open(os.path.join(runner.stage_dir(config, "group_stage", run_dir), "results.json")) as f:
    inferred = json.load(f)
  assert inferred["inference_method"] == "cnc"
  assert len(inferred["inference_group_attribute"]) == inferred["num_inferred_groups"]
  assert results["method"] == "cnc" and results["policy"] == "cnc"
  assert 0.0 <= results["worst_group_accuracy"] <= 1.0
  assert results["worst_group_accuracy"] == min(results["group_accuracy"].values())
  assert 0.0 <= results["average_accuracy"] <= 1.0
  assert results["cnc_anchor_classes"] == [0, 1]
  _, again = runner.run(config, str(tmp_path))
  assert again["worst_group_accuracy"] == results["worst_group_accuracy"]
