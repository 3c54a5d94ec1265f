"""CREST on a softmax-regression model with real probes: the quadratic-model check, the
estimator against jax.grad, learned-example dropping, bitwise resume of plans, bad input."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from robustdata import runner
from robustdata.data.dataset import Dataset
from robustdata.data.policies import PolicyContext, to_json
from robustdata.registry import ConfigError
from robustdata.selection.crest import Crest

N, C, D, B = 200, 4, 5, 8


class _State:
  def __init__(self, params):
    self.params, self.model_state = params, {}


def _loss_fn(params, model_state, batch, rng, train=False):
  del rng, train
  logits = batch["x"] @ params["w"] + params["b"]
  losses = -jax.nn.log_softmax(logits)[jnp.arange(len(batch["y"])), batch["y"]]
  return losses, (model_state, logits)


def _setup(num_classes=C, batch=B, **fields):
  rng = np.random.default_rng(0)
  y = (np.arange(N) % C).astype(np.int32)
  means = rng.normal(size=(C, D)) * 2
  x = (means[y] + rng.normal(size=(N, D))).astype(np.float32)
  train = Dataset(x=x, y=y, ids=np.arange(N))
  policy_fields = dict(train_frac=0.5, random_subset_size=0.2, num_minibatch_coreset=2,
                       start_epoch=0, min_train_size=0)
  policy_fields.update(fields)
  config = ml_collections.ConfigDict({"policy": {"name": "crest", **policy_fields}})
  policy = Crest(config, train, batch_size=batch, seed=0, num_classes=num_classes)
  return policy, train


def _ctx(step, params, train, epoch=0):
  def probe(name, idx):  # on all of train, then indexed: one shape, one compile of each op
    losses, (_, logits) = _loss_fn(params, {}, {"x": train.x, "y": train.y}, None)
    return np.asarray({"logits": logits, "loss": losses}[name])[np.asarray(idx, np.int64)]
  return PolicyContext(step=step, epoch=epoch, state=_State(params), probe=probe,
                       loss_fn=_loss_fn, lr=0.1)


def _params(scale, seed=1):
  rng = np.random.default_rng(seed)
  return {"w": jnp.asarray(scale * rng.normal(size=(D, C)), jnp.float32),
          "b": jnp.zeros(C, jnp.float32)}


def test_check_keeps_coreset_when_quadratic_model_holds_and_reselects_when_wrong():
  policy, train = _setup()
  zero = _params(0.0)
  policy.next_batch(_ctx(0, zero, train))  # step 0 = reset step: select + quadratic model
  assert policy.selections == 1 and policy.reset_step == 0
  # The model at theta0 = 0: every loss is log C, so L0 = L_true there.
  np.testing.assert_allclose(policy.loss0, np.log(C), rtol=1e-6)
  near = _params(1e-3)                     # a tiny step: the quadratic model holds
  policy.next_batch(_ctx(1, near, train))
  assert policy.checks == 1 and policy.triggers == 0 and policy.selections == 1
  far = _params(5.0)                       # far away: the local model is wrong
  policy.next_batch(_ctx(2, far, train))
  assert policy.checks == 2 and policy.triggers == 1
  assert policy.selections == 2 and policy.reset_step == 2
  check = policy.last_check
  assert abs(check["true"] - check["approx"]) > 0.1 * check["true"]


@pytest.mark.parametrize("anchor", ["subsets", "coreset"])
def test_check_anchor(anchor):
  """'subsets': L0 is the mean CE on the union of the random subsets at θ0, so a check at θ0
  itself (δ = 0) always passes; 'coreset' (reference): L0 is the weighted coreset loss."""
  policy, train = _setup(check_anchor=anchor)
  params = _params(0.5)
  policy.next_batch(_ctx(0, params, train))
  union = policy.union
  union_loss = np.mean(np.asarray(_loss_fn(params, {}, {"x": train.x[union],
                                                        "y": train.y[union]}, None)[0], np.float64))
  i, w = policy.coreset, policy.coreset_weights.astype(np.float64)
  coreset_loss = np.sum(w * np.asarray(_loss_fn(params, {}, {"x": train.x[i], "y": train.y[i]},
                                               None)[0])) / len(i)
  assert abs(union_loss - coreset_loss) > 1e-3   # the two anchors differ here
  np.testing.assert_allclose(policy.loss0, union_loss if anchor == "subsets" else coreset_loss,
                             rtol=1e-5)
  policy.next_batch(_ctx(1, params, train))       # δ = 0
  check = policy.last_check
  if anchor == "subsets":
    np.testing.assert_allclose(check["approx"], check["true"], rtol=1e-5)
    assert policy.triggers == 0


def test_check_size_evaluates_a_fixed_sample_of_the_union():
  policy, train = _setup(check_size=10)
  params = _params(0.5)
  policy.next_batch(_ctx(0, params, train))
  rows = policy.check_rows
  assert len(rows) == 10 and len(policy.union) > 10 and set(rows) <= set(policy.union)
  losses = np.asarray(_loss_fn(params, {}, {"x": train.x[rows], "y": train.y[rows]}, None)[0])
  np.testing.assert_allclose(policy.loss0, np.mean(losses, dtype=np.float64), rtol=1e-5)
  before = policy.examples_probed
  policy.next_batch(_ctx(1, params, train))
  assert policy.examples_probed - before == 10 and policy.triggers == 0


def test_lazy_coresets_are_built_when_served_at_the_parameters_of_then():
  """P = 3, h = 1: the selection probes and builds one coreset (plus the check sample); each
  later coreset is built when the queue runs short, from proxies at that step's parameters,
  exactly as an FL selection on its random subset would be."""
  from robustdata.selection.facility_location import facility_location, normalize_weights
  policy, train = _setup(lazy_coresets=True, quad_batches="interval", num_minibatch_coreset=3,
                         check_thresh_factor=1e9)  # checks never fail here
  params0 = _params(0.5)
  policy.next_batch(_ctx(0, params0, train))
  assert len(policy.pending) == 2 and len(policy.coreset) == B
  subsets = list(policy.pending)
  first_probe = policy.examples_probed
  assert first_probe < len(policy.union) + len(policy.check_rows)
  for t, subset in zip((1, 2), subsets):
    params = _params(0.5, seed=10 + t)
    queued = len(policy.queue) - policy.queue_pos
    before = policy.examples_probed
    idx, w = policy.next_batch(_ctx(t, params, train))
    assert len(policy.pending) == 2 - t
    assert policy.examples_probed - before == len(subset) + len(policy.check_rows)  # + check
    logits = _loss_fn(params, {}, {"x": train.x[subset], "y": train.y[subset]}, None)[1][1]
    proxy = np.asarray(jax.nn.softmax(logits)) - np.eye(C)[train.y[subset]]
    ref, ref_w = facility_location(proxy.astype(np.float32), train.y[subset], budget=B,
                                   kernel="exp")
    np.testing.assert_array_equal(policy.coreset[-B:], subset[ref])
    np.testing.assert_array_equal(policy.coreset_weights[-B:], normalize_weights(ref_w))
    assert queued == 0 and set(idx) == set(subset[ref])  # served right after it is built
  assert policy.selections == 1


@pytest.mark.parametrize("batch", [8, 6])
def test_intact_serving_gives_each_batch_one_whole_coreset(batch):
  """serve='intact': every served batch is exactly one S_p (its FL picks in round-robin order,
  with their weights), the P coresets in shuffled order, again after the queue restarts. b = 6
  with C = 4 classes: equal_num picks 2 per class (8 rows) and the batch keeps the first 6."""
  from robustdata.selection.facility_location import facility_location, normalize_weights
  policy, train = _setup(batch=batch, serve="intact", num_minibatch_coreset=3,
                         check_thresh_factor=1e9)  # checks never fail: one selection
  drawn = []
  sample = policy.random_subsets
  policy.random_subsets = lambda: drawn.extend(sample()) or list(drawn)
  params = _params(0.5)
  served = [policy.next_batch(_ctx(t, params, train)) for t in range(6)]  # U served twice
  assert policy.selections == 1 and len(drawn) == 3
  logits = np.asarray(_loss_fn(params, {}, {"x": train.x, "y": train.y}, None)[1][1])
  proxy = np.asarray(jax.nn.softmax(logits)) - np.eye(C)[train.y]
  expected_idx, expected_w = [], []
  for subset in drawn:
    ref, w = facility_location(proxy[subset].astype(np.float32), train.y[subset], budget=batch,
                               kernel="exp")
    expected_idx.append(subset[ref][:batch])
    expected_w.append(w[:batch])
  scale = normalize_weights(np.concatenate(expected_w))[0] / np.concatenate(expected_w)[0]
  for rnd in (served[:3], served[3:]):
    order = []
    for idx, w in rnd:
      p = [q for q in range(3) if np.array_equal(idx, expected_idx[q])]
      assert len(p) == 1, idx
      np.testing.assert_allclose(w, expected_w[p[0]] * scale, rtol=1e-6)
      order.append(p[0])
    assert sorted(order) == [0, 1, 2]


@pytest.mark.parametrize("quad_batches", ["all", "interval"])
def test_quadratic_model_gradient_matches_jax_grad_on_coreset(quad_batches):
  """'all': every batch of U enters the estimate; 'interval': only the first h (here h = 1)."""
  policy, train = _setup(quad_batches=quad_batches)
  params = _params(0.3)
  policy.next_batch(_ctx(0, params, train))
  # First QUAD: k = 1 for the first batch, so gbar_batch = m/(1-0.9) = g exactly; later batches
  # mix moments. Recompute the reference the same way in float64 NumPy.
  idx, w = policy.queue, policy.queue_weights.astype(np.float64)
  assert len(idx) == 2 * B and policy.interval == 1
  if quad_batches == "interval":
    idx, w = idx[:B], w[:B]
  assert policy.moment_steps == len(idx) // B
  m = np.zeros(D * C + C)
  gsum, k = np.zeros_like(m), 0
  for lo in range(0, len(idx), B):
    i, wb = idx[lo:lo + B], w[lo:lo + B]
    grad = jax.grad(lambda p: jnp.sum(wb * _loss_fn(p, {}, {"x": train.x[i], "y": train.y[i]},
                                                    None)[0]) / len(i))(params)
    g = np.concatenate([np.asarray(grad["b"]).ravel(), np.asarray(grad["w"]).ravel()])
    k += 1
    m = 0.9 * m + 0.1 * g
    gsum += len(i) * m / (1 - 0.9 ** k)
  np.testing.assert_allclose(policy.gbar, gsum / len(idx), rtol=1e-4, atol=1e-6)
  assert np.all(policy.diag > 0)


def test_drop_learned_never_below_min_and_dropped_never_reenter():
  policy, _ = _setup(drop_learned=True, min_train_size=int(0.8 * N))
  learned = (np.arange(N) // C) % 2 == 0   # half of every class
  policy.watch[:] = np.where(learned, 0.0, 1.0)   # half the examples learned, every class
  policy.drop_learned()
  assert policy.pool.all()                        # 100 left < min 160: nothing dropped
  policy.cfg["min_train_size"] = int(0.4 * N)
  policy.drop_learned()
  np.testing.assert_array_equal(policy.pool, ~learned)
  assert policy.dropped == N // 2
  policy.watch[:] = 1.0                           # nothing looks learned any more
  policy.drop_learned()
  np.testing.assert_array_equal(policy.pool, ~learned)  # dropped examples stay out
  for subset in policy.random_subsets():
    assert policy.pool[subset].all()
  policy.watch[:] = 0.0                           # everything learned: per-class floor keeps it
  policy.drop_learned()
  assert policy.pool.sum() >= policy.cfg.min_train_size


@jax.jit
def _sgd(params, x, y, w):
  grad = jax.grad(lambda p: jnp.mean(w * _loss_fn(p, {}, {"x": x, "y": y}, None)[0]))(params)
  return jax.tree.map(lambda p, g: p - 0.5 * g, params, grad)


def _train(policy, train, params, start, stop, served):
  """Runs steps [start, stop): serve a batch, then one SGD step on its weighted loss."""
  for t in range(start, stop):
    epoch = t // policy.steps_per_epoch
    idx, w = policy.next_batch(_ctx(t, params, train, epoch))
    served.append((idx.copy(), w.copy()))
    params = _sgd(params, train.x[idx], train.y[idx], w)
    if (t + 1) % policy.steps_per_epoch == 0:
      policy.on_epoch_end(_ctx(t + 1, params, train, epoch))
  return params


@pytest.mark.parametrize("lazy, serve", [(False, "union"), (True, "union"), (True, "intact")])
def test_resume_gives_identical_plans(lazy, serve):
  fields = dict(drop_learned=True, drop_interval=2, watch_interval=2, min_train_size=100,
                check_thresh_factor=0.05, serve=serve)
  if lazy:  # the snapshot may hold random subsets whose coresets are not built yet
    fields.update(lazy_coresets=True, quad_batches="interval", num_minibatch_coreset=4)
  policy, train = _setup(**fields)
  params = _params(0.0)
  first = []
  params = _train(policy, train, params, 0, 30, first)
  snapshot = json.loads(json.dumps(to_json(policy.state_dict())))
  assert policy.pending or not lazy  # coresets still to build in the snapshot
  rest_a = []
  _train(policy, train, params, 30, 80, rest_a)
  resumed, _ = _setup(**fields)
  resumed.load_state_dict(snapshot)
  rest_b = []
  _train(resumed, train, params, 30, 80, rest_b)
  assert policy.selections > 2  # the run did reselect
  for (ia, wa), (ib, wb) in zip(rest_a, rest_b):
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(wa, wb)
  untimed = lambda r: {k: v for k, v in r.items() if not runner.is_nondeterministic(k)}
  assert untimed(policy.results()) == untimed(resumed.results())
  np.testing.assert_array_equal(policy.gbar, resumed.gbar)


@pytest.mark.parametrize("fields, match", [
    (dict(random_subset_size=0.01), "random_subset_size"),   # subsets smaller than budget b
    (dict(random_subset_size=0.0), "random_subset_size"),
    (dict(train_frac=0.0), "train_frac"),
    (dict(num_minibatch_coreset=0), "num_minibatch_coreset"),
    (dict(drop_interval=-1), "drop_interval"),
    (dict(watch_interval=1.5), "watch_interval"),
    (dict(check_anchor="union"), "check_anchor"),
    (dict(check_size=-1), "check_size"),
    (dict(quad_batches="some"), "quad_batches"),
    (dict(lazy_coresets=True), "lazy_coresets"),   # needs quad_batches='interval'
    (dict(serve="batches"), "serve"),
])
def test_bad_config(fields, match):
  with pytest.raises(ConfigError, match=match):
    _setup(**fields)


def test_missing_class_and_nan_proxies():
  policy, train = _setup(num_classes=C + 1)  # class C has no examples: skipped in the subsets
  policy.next_batch(_ctx(0, _params(0.1), train))
  assert set(np.unique(train.y[policy.coreset])) == set(range(C))
  bad = _params(0.1)
  bad["b"] = bad["b"].at[0].set(jnp.nan)
  policy, train = _setup()
  with pytest.raises(FloatingPointError, match="not finite"):
    policy.next_batch(_ctx(0, bad, train))
