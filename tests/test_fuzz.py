"""Bad inputs across every method family end with one clear error, no traceback, naming the
field or file, before anything compiles (jax.jit is made to fail while they run).

In process: out-of-range config values through `runner.run_cli`, config files and variants,
`--reproduce` run directories, data files, and public kernels; end to end: a few command lines
through `python -m experiments.main`."""

import contextlib
import csv
import importlib.util
import io
import json
import os
import time

import jax
import numpy as np
import pytest

from robustdata import config_lib, runner, validation
from robustdata.registry import ConfigError
from tests.conftest import REPO, run_python
from tests.test_validation import _with

NAN, INF = float("nan"), float("inf")


def _load(rel, arg="smoke"):
  spec = importlib.util.spec_from_file_location("cfg", os.path.join(REPO, "configs", rel))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.fixture
def no_compile(monkeypatch):
  """jax.jit raises: an error must come before anything compiles."""
  def refuse(*args, **kwargs):
    raise AssertionError("jax.jit called before the bad input was refused")
  monkeypatch.setattr(jax, "jit", refuse)


def _run_cli(config, workdir):
  err, out = io.StringIO(), io.StringIO()
  start = time.perf_counter()
  with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
    code = runner.run_cli(config, str(workdir))
  return code, err.getvalue() + out.getvalue(), time.perf_counter() - start


FAMILIES = {
    "erm": "baselines/erm_digits.py", "craig": "craig/digits.py", "crest": "crest/digits.py",
    "groupdro": "spuco/groupdro_digits.py", "jtt": "spuco/jtt_digits.py",
    "pde": "spuco/pde_digits.py", "dfr": "spuco/dfr_digits.py", "dp": "dpsgd/digits.py",
    "clip": "clip/shapes.py", "roclip": "roclip/shapes.py", "safeclip": "safeclip/shapes.py",
    "cleanclip": "cleanclip/shapes.py",
}
CASES = [
    # Supervised / ERM.
    ("erm", "optim.learning_rate", NAN), ("erm", "optim.learning_rate", INF),
    ("erm", "optim.learning_rate", -0.5), ("erm", "optim.momentum", -5),
    ("erm", "optim.weight_decay", -1e-4), ("erm", "optim.grad_clip_norm", -1.0),
    ("erm", "optim.warmup_epochs", -2.0), ("erm", "optim.label_smoothing", 1.5),
    ("erm", "optim.milestones", (8, 4)), ("erm", "optim.milestones", 4),
    ("erm", "optim.gamma", -0.1), ("erm", "train.max_steps", -1),
    ("erm", "train.max_checkpoints_to_keep", 0), ("erm", "train.epochs", -3),
    ("erm", "seed", -1), ("erm", "seed", 2**63), ("erm", "seed", 2**32),
    ("erm", "data.crop_padding", -4), ("erm", "data.val_fraction", 1.5),
    ("erm", "data.label_noise", -0.2), ("erm", "model.dense", 0), ("erm", "model.channels", 16),
    ("erm", "model.channels", (16, -8)), ("erm", "eval.select_by", "val_f1"),
    ("erm", "eval.select_by", "test_accuracy"), ("erm", "optim.nesterov", "yes"),
    # CRAIG / CREST.
    ("craig", "policy.fraction", 0.0), ("craig", "policy.fraction", 2.0),
    ("craig", "policy.lag", 0), ("craig", "policy.start_epoch", -1),
    ("craig", "policy.shuffle", 1), ("crest", "policy.train_frac", 0.0),
    ("crest", "policy.random_subset_size", 1.5), ("crest", "policy.check_thresh_factor", -0.1),
    ("crest", "policy.interval_mul", 0.0), ("crest", "policy.watch_interval", 0),
    ("crest", "policy.drop_thresh", -1.0), ("crest", "policy.min_train_size", -5),
    ("crest", "policy.check_size", -3), ("crest", "policy.num_minibatch_coreset", 2.5),
    # Spurious: GroupDRO, JTT, PDE, DFR.
    ("groupdro", "groupdro.step_size", -0.01), ("groupdro", "groupdro.step_size", NAN),
    ("groupdro", "data.spurious_correlation_strength", 1.2),
    ("groupdro", "data.classes", ((0, 1), (1, 2))), ("jtt", "policy.stage1_epochs", 0),
    ("jtt", "policy.upweight", 0.5), ("pde", "policy.add_interval", 0),
    ("pde", "policy.add_start", -7), ("pde", "policy.subsample_cap", -1),
    ("dfr", "dfr.num_models", 0), ("dfr", "dfr.tune_fraction", 1.0),
    ("dfr", "dfr.c_grid", ()), ("dfr", "dfr.c_grid", (1.0, -0.5)),
    # DP.
    ("dp", "privacy.target_epsilon", -1.0), ("dp", "privacy.target_epsilon", INF),
    ("dp", "privacy.clip_norm", 0.0), ("dp", "privacy.noise_multiplier", -0.5),
    ("dp", "privacy.delta", 0.0), ("dp", "privacy.delta", 1.0),
    ("dp", "privacy.prune_sparsity", 1.0), ("dp", "privacy.microbatch_size", -2),
    ("dp", "privacy.switch_epoch", -3),
    # CLIP family.
    ("clip", "contrastive.warmup_steps", -1), ("clip", "model.embed_dim", 0),
    ("clip", "model.cnn_widths", ()), ("clip", "optim.learning_rate", NAN),
    ("clip", "optim.weight_decay", -0.1), ("clip", "poison.rate", 1.5),
    ("clip", "poison.count", -1), ("clip", "poison.seed", -1), ("clip", "data.synonym_prob", 2.0),
    ("clip", "eval.select_by", "val_accuracy"), ("clip", "seed", -2),
    ("roclip", "contrastive.pool_size", 0), ("roclip", "contrastive.break_epoch", 0),
    ("roclip", "contrastive.clip_warmup_epochs", -1),
    ("safeclip", "contrastive.safe_threshold", 1.0),
    ("safeclip", "contrastive.safe_fraction_cap", 0.0), ("safeclip", "contrastive.in_lr", NAN),
    ("safeclip", "contrastive.unimodal_pool_size", -1),
    ("cleanclip", "contrastive.finetune_lr", -1e-5), ("cleanclip", "contrastive.clip_weight", -1.0),
    ("cleanclip", "contrastive.clean_subset_size", -1),
    ("cleanclip", "contrastive.pretrain_epochs", -1),
]
_BASES = {}


def _family(name):
  if name not in _BASES:
    _BASES[name] = _load(FAMILIES[name])
  return _BASES[name]


@pytest.mark.parametrize("family,field,value", CASES,
                         ids=[f"{f}-{k}={v!r}" for f, k, v in CASES])
def test_out_of_range_values(family, field, value, tmp_path, no_compile):
  code, text, seconds = _run_cli(_with(_family(family), field, value), tmp_path)
  assert code == 2, text[-2000:]
  assert f"config.{field}=" in text and ("allowed" in text or "must be" in text)
  assert "Traceback" not in text and seconds < 10


def test_crest_floor_above_the_train_set_is_named(tmp_path, no_compile):
  config = _with(_family("crest"), "policy.min_train_size", 10**6)
  code, text, _ = _run_cli(config, tmp_path)
  assert code == 2 and "config.policy.min_train_size=1000000 exceeds the" in text, text[-2000:]


# --- Config files and variants (in process). ---------------------------------------------------

def _write(path, text):
  path.write_text(text)
  return str(path)


FILE_CASES = [
    ("missing", None, "does not exist"),
    ("directory", None, "is not a file"),
    ("syntax", "def get_config(:\n", "syntax error"),
    ("indent", "def get_config(arg=None):\nreturn 1\n", "syntax error"),
    ("raises", "def get_config(arg=None):\n  return 1 / 0\n", "ZeroDivisionError"),
    ("import", "import no_such_module_xyz\n", "ModuleNotFoundError"),
    ("no_get_config", "X = 1\n", "defines no get_config"),
    ("returns_int", "def get_config(arg=None):\n  return 3\n", "not a ConfigDict"),
    ("no_arg", "def get_config():\n  return None\n", "TypeError"),
]


@pytest.mark.parametrize("kind,text,message", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_config_files(kind, text, message, tmp_path):
  path = str(tmp_path / "nope.py") if kind == "missing" else (
      str(tmp_path) if kind == "directory" else _write(tmp_path / f"{kind}.py", text))
  spec = path + (":smoke" if kind == "no_arg" else "")
  with pytest.raises(ConfigError, match=message) as e:
    validation.load_config_file(spec)
  assert str(e.value).startswith(f"--config={spec}: ")


VARIANT_CASES = [
    ("quickstart.py", "bogus"), ("baselines/erm_digits.py", "smoke,x"),
    ("crest/digits.py", "craig,random"), ("crest/digits.py", "full,loose"),
    ("craig/digits.py", "b20"), ("ordering/digits.py", "random,descending"),
    ("augment_coresets/digits.py", "none,random"), ("dpsgd/digits.py", "eps3"),
    ("dpsgd/digits.py", "eps1,eps8"), ("pde/synthetic_pde.py", "case3"),
    ("pde/synthetic_erm.py", "smoke,case2"), ("spuco/jtt_digits.py", "smoke,smoke"),
    ("clip/shapes.py", "tiny"), ("safeclip/cc3m.py", ",smoke"), ("crest/cifar10_resnet20.py", "x"),
]


@pytest.mark.parametrize("rel,arg", VARIANT_CASES, ids=[f"{r}:{a}" for r, a in VARIANT_CASES])
def test_bad_variants(rel, arg):
  spec = os.path.join(REPO, "configs", rel) + ":" + arg
  with pytest.raises(ConfigError, match="variant") as e:
    validation.load_config_file(spec)
  assert "Traceback" not in str(e.value)


TUPLE_CASES = [("optim.milestones", "5", True), ("data.augment", "crop", True),
               ("model.channels", "32", True), ("model.channels", "(32, 64)", False),
               ("model.channels", "32,64", False), ("optim.milestones", "()", False)]


@pytest.mark.parametrize("field,text,refused", TUPLE_CASES,
                         ids=[f"{f}={t}" for f, t, _ in TUPLE_CASES])
def test_scalar_for_a_tuple_field(field, text, refused):
  config = _load("quickstart.py")
  problem = validation.tuple_override_problem(config, field, text)
  assert (problem is not None) == refused
  if refused:
    assert f"config.{field} is a tuple" in problem


# --- --reproduce (in process). -----------------------------------------------------------------

def _run_dir(tmp_path, config_text, results_text='{"test_accuracy": 0.5}'):
  d = tmp_path / "run"
  d.mkdir()
  if config_text is not None:
    (d / "config.json").write_text(config_text)
  if results_text is not None:
    (d / "results.json").write_text(results_text)
  return str(d)


_GOOD = config_lib.canonical_json(config_lib.with_defaults(_load("baselines/erm_digits.py")))
_BAD_LR = _GOOD.replace('"learning_rate":0.05', '"learning_rate":-1')
REPRODUCE_CASES = [
    ("no directory", None, None, "is not a directory"),
    ("no config.json", None, "{}", "holds no config.json"),
    ("config.json not JSON", "{not json", "{}", "config.json is not valid JSON"),
    ("config.json a list", "[1, 2]", "{}", "config.json holds a JSON list"),
    ("config.json bad value", _BAD_LR, "{}", "config.optim.learning_rate=-1"),
    ("config.json section a number", _GOOD.replace('"eval":{"select_by":""}', '"eval":3'), "{}",
     "config.json"),
    ("config.json unknown trainer", _GOOD.replace('"trainer":"supervised"', '"trainer":"x"'),
     "{}", "config.trainer='x'"),
    ("no results.json", _GOOD, None, "holds no results.json"),
    ("results.json not JSON", _GOOD, "{'a': 1}", "results.json is not valid JSON"),
    ("results.json not utf-8", _GOOD, b"\xff\xfe\x00", "results.json is not valid JSON"),
]


@pytest.mark.parametrize("name,config_text,results_text,message", REPRODUCE_CASES,
                         ids=[c[0] for c in REPRODUCE_CASES])
def test_bad_reproduce_directories(name, config_text, results_text, message, tmp_path,
                                   no_compile):
  assert _BAD_LR != _GOOD
  if name == "no directory":
    run_dir = str(tmp_path / "missing")
  else:
    binary = isinstance(results_text, bytes)
    run_dir = _run_dir(tmp_path, config_text, None if binary else results_text)
    if binary:
      with open(os.path.join(run_dir, "results.json"), "wb") as f:
        f.write(results_text)
  err = io.StringIO()
  with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    code = runner.reproduce_cli(run_dir)
  assert code == 2 and message in err.getvalue(), err.getvalue()
  assert "Traceback" not in err.getvalue()


# --- Data files (in process). ------------------------------------------------------------------

def _image(path, size=(6, 5)):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(path)


def _caption_config(tmp_path, rows, **extra):
  table = tmp_path / "train.csv"
  with open(table, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["image", "caption"])
    w.writerows(rows)
  config = _load("clip/cc3m.py")
  config = _with(config, "data.train_file", str(table))
  for k, v in extra.items():
    config = _with(config, f"data.{k}", v)
  return config


def _caption_case(kind, tmp_path):
  _image(tmp_path / "a.png")
  (tmp_path / "not_image.png").write_text("hello")
  if kind == "missing table":
    return _with(_load("clip/cc3m.py"), "data.train_file", str(tmp_path / "none.csv")), "none.csv"
  if kind == "missing val table":
    return _caption_config(tmp_path, [["a.png", "a cat"]],
                           val_file=str(tmp_path / "val.csv")), "config.data.val_file"
  if kind == "missing image":
    return _caption_config(tmp_path, [["a.png", "a cat"], ["b.png", "a dog"]]), "b.png"
  if kind == "not an image":
    return _caption_config(tmp_path, [["not_image.png", "text"]]), "not_image.png"
  if kind == "table is a directory":
    return _with(_load("clip/cc3m.py"), "data.train_file", str(tmp_path)), "is not a file"
  if kind == "empty table":
    return _caption_config(tmp_path, []), "holds no rows"
  if kind == "bad column":
    return _caption_config(tmp_path, [["a.png", "x"]], caption_key="text"), "caption_key"
  raise ValueError(kind)


CAPTION_CASES = ["missing table", "missing val table", "missing image", "not an image",
                 "table is a directory", "empty table", "bad column"]


@pytest.mark.parametrize("kind", CAPTION_CASES)
def test_bad_caption_tables(kind, tmp_path, no_compile):
  config, named = _caption_case(kind, tmp_path)
  code, text, _ = _run_cli(config, tmp_path / "runs")
  assert code == 2 and named in text, text[-2000:]
  assert "Traceback" not in text


def _waterbirds(root, *, splits=(0, 1, 2), missing=False, not_image=False, bad_y=False):
  rows = []
  for i in range(12):
    name = f"img_{i}.png"
    if not (missing and i == 5):
      if not_image and i == 4:
        (root / name).write_text("not a png")
      else:
        _image(root / name)
    rows.append({"img_filename": name, "y": "x" if bad_y and i == 3 else i % 2,
                 "split": splits[i % len(splits)], "place": (i // 2) % 2})
  with open(root / "metadata.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)


WATERBIRDS_CASES = [
    ("missing image", dict(missing=True), "img_5.png"),
    ("not an image", dict(not_image=True), "img_4.png"),
    ("empty train", dict(splits=(1, 2)), "no train rows"),
    ("empty test", dict(splits=(0, 1)), "no test rows"),
    ("bad label", dict(bad_y=True), "y='x' is not an integer"),
    ("split code", dict(splits=(0, 1, 2, 7)), "split=7 is not allowed"),
]


@pytest.mark.parametrize("name,kwargs,message", WATERBIRDS_CASES,
                         ids=[c[0] for c in WATERBIRDS_CASES])
def test_bad_image_folders(name, kwargs, message, tmp_path, no_compile):
  root = tmp_path / "wb"
  root.mkdir()
  _waterbirds(root, **kwargs)
  config = _with(_load("pde/waterbirds_pde.py"), "data.data_dir", str(root))
  code, text, _ = _run_cli(config, tmp_path / "runs")
  assert code == 2 and message in text, text[-2000:]
  assert "Traceback" not in text


@pytest.mark.parametrize("select_by", ["val_accuracy", "val_loss", "val_worst_group_accuracy"])
def test_empty_validation_split_with_select_by(select_by):
  from robustdata.data import sources  # pylint: disable=g-import-not-at-top
  config = _with(_with(_family("groupdro"), "data.val_fraction", 0.0), "eval.select_by", select_by)
  data = sources.load(config_lib.with_defaults(config).data)
  with pytest.raises(ConfigError, match=f"config.eval.select_by='{select_by}'.*empty"):
    validation.check_data(config, data)


# --- Public kernels. ---------------------------------------------------------------------------

def test_kernels_state_their_preconditions():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from robustdata.selection import greedy, similarity  # pylint: disable=g-import-not-at-top
  cases = [
      (lambda: similarity.max_distance(jnp.zeros((10, 2)), jnp.ones(10, bool), block=4),
       "not a multiple of block=4"),
      (lambda: similarity.nearest_medoid(jnp.zeros((10, 2)), jnp.zeros((3, 2)), block=4),
       "not a multiple of block=4"),
      (lambda: greedy.greedy_fl(jnp.zeros((5, 5)), 6), "k=6 picks"),
      (lambda: greedy.stochastic_greedy(jnp.zeros((5, 2)), jnp.ones(5), jnp.ones(5, bool),
                                        jnp.asarray(1.0), 2, jax.random.PRNGKey(0), kernel="exp",
                                        dim=2, sample_size=9), "sample_size=9"),
  ]
  for fn, message in cases:
    with pytest.raises(ValueError, match=message):
      fn()


# --- End to end: the command line (subprocesses). ----------------------------------------------

CLI_CASES = [
    (["--config=configs/no_such.py"],
     "--config=configs/no_such.py: 'configs/no_such.py' does not exist"),
    (["--config=configs/quickstart.py:tiny"], "unknown token(s) ['tiny']"),
    (["--config=configs/crest/digits.py:smoke", "--config.optim.milestones=3"],
     "config.optim.milestones is a tuple"),
    (["--config=configs/quickstart.py:smoke", "--config.optim.learning_rate=nan"],
     "config.optim.learning_rate=nan is not finite"),
    (["--config=configs/spuco/groupdro_digits.py:smoke", "--config.seed=-1"], "config.seed=-1"),
    (["--config=configs/dpsgd/digits.py:smoke", "--config.privacy.target_epsilon=-3"],
     "config.privacy.target_epsilon=-3.0"),
    (["--reproduce=configs"], "holds no config.json"),
]


@pytest.mark.slow
@pytest.mark.parametrize("args,message", CLI_CASES, ids=[a[-1] for a, _ in CLI_CASES])
def test_command_line(args, message, tmp_path):
  proc = run_python(["-m", "experiments.main", *args, f"--workdir={tmp_path}"], check=False,
                    timeout=120)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]


def test_syntax_error_on_the_command_line(tmp_path):
  path = _write(tmp_path / "broken.py", "def get_config(arg=None)\n  return None\n")
  proc = run_python(["-m", "experiments.main", f"--config={path}", f"--workdir={tmp_path}"],
                    check=False, timeout=120)
  assert proc.returncode == 2
  assert f"error: --config={path}: syntax error" in proc.stderr and "Traceback" not in proc.stderr
