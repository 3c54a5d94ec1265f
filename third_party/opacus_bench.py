"""PyTorch CPU steps on the same CNN / ResNet-20 (GroupNorm), for benchmarks/dp_sgd.py: plain
non-private SGD and Opacus DP-SGD (hooks and ghost clipping). Needs
`pip install torch==2.13.0 opacus`; the library never imports this.

  python third_party/opacus_bench.py --quick
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from opacus import GradSampleModule
from opacus.grad_sample import GradSampleModuleFastGradientClipping
from torch import nn

# All cores, as JAX's CPU backend uses them (torch's default may be fewer).
torch.set_num_threads(os.cpu_count() or 1)


def _gn(channels: int) -> nn.Module:
  """GroupNorm as robustdata.models.norm builds it: groups of 16 channels (one when fewer)."""
  return nn.GroupNorm(max(1, channels // 16), channels)


def _cnn(num_classes: int = 10) -> nn.Module:
  """The CNN of robustdata.models.cnn with norm='group': conv-GN-relu-pool x2, Dense, head."""
  gn = _gn
  return nn.Sequential(
      nn.Conv2d(3, 32, 3, padding=1, bias=False), gn(32), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(32, 64, 3, padding=1, bias=False), gn(64), nn.ReLU(), nn.MaxPool2d(2),
      nn.Flatten(), nn.Linear(64 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, num_classes))


class _Block(nn.Module):
  """ResNet basic block with GroupNorm and a 1x1 projection when the shape changes."""

  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    gn = _gn
    self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), gn(cout),
                              nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), gn(cout))
    self.proj = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), gn(cout))
                 if stride != 1 or cin != cout else nn.Identity())

  def forward(self, x):
    return torch.relu(self.body(x) + self.proj(x))


def _resnet20(num_classes: int = 10) -> nn.Module:
  layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), _gn(16), nn.ReLU()], 16
  for stage, cout in enumerate((16, 32, 64)):
    for i in range(3):
      layers.append(_Block(cin, cout, 2 if stage > 0 and i == 0 else 1))
      cin = cout
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
  return nn.Sequential(*layers)


MAKERS = {"cnn": _cnn, "resnet20": _resnet20}
MODES = ("sgd", "hooks", "ghost")


def make_step(mode: str, name: str, batch: int):
  """A warmed-up callable running one SGD step of model `name` ('cnn' or 'resnet20'): plain
  non-private ('sgd', mean loss) or clipped and noised with Opacus in 'hooks' or 'ghost'
  grad-sample mode."""
  if mode not in MODES:
    raise ValueError(f"mode={mode!r} is not known; allowed: {list(MODES)}")
  model = MAKERS[name]()
  x = torch.randn(batch, 3, 32, 32)
  y = torch.randint(0, 10, (batch,))
  opt = torch.optim.SGD(model.parameters(), lr=0.1)
  if mode == "sgd":
    loss_fn = nn.CrossEntropyLoss()

    def step():
      opt.zero_grad()
      loss_fn(model(x), y).backward()
      opt.step()
  elif mode == "hooks":
    gsm = GradSampleModule(model)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")

    def step():
      opt.zero_grad()
      loss_fn(gsm(x), y).backward()
      grads = [p.grad_sample.reshape(batch, -1) for p in gsm.parameters()]
      norms = torch.cat(grads, 1).norm(dim=1)
      factor = (1.0 / norms.clamp(min=1e-6)).clamp(max=1.0)
      for p in gsm.parameters():
        p.grad = (torch.einsum("b,b...->...", factor, p.grad_sample)
                  + torch.randn_like(p)) / batch
        p.grad_sample = None
      opt.step()
  else:
    gsm = GradSampleModuleFastGradientClipping(model, max_grad_norm=1.0, use_ghost_clipping=True,
                                               loss_reduction="sum")
    loss_fn = nn.CrossEntropyLoss(reduction="none")

    def step():
      opt.zero_grad()
      losses = loss_fn(gsm(x), y)
      losses.sum().backward(retain_graph=True)
      coeff = gsm.get_clipping_coef()
      gsm.disable_hooks()
      (coeff * losses).sum().backward()
      gsm.enable_hooks()
      for p in gsm.parameters():
        p.grad = (p.grad + torch.randn_like(p)) / batch
      opt.step()
  step()
  return step


def _time(mode: str, name: str, batch: int, iters: int) -> float:
  """samples/s of one PyTorch step, median over `iters` calls."""
  step = make_step(mode, name, batch)
  times = []
  for _ in range(iters):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
  return batch / float(np.median(times))


def run(*, models: list[str], batches: list[int], iters: int) -> dict:
  """{(model, batch, 'sgd'|'hooks'|'ghost'): samples/s}."""
  out = {}
  for name in models:
    for batch in batches:
      for mode in MODES:
        out[(name, batch, mode)] = _time(mode, name, batch, iters)
        print(f"torch {name:10s} {batch:5d} {mode:>6s} {out[(name, batch, mode)]:10.1f}",
              flush=True)
  return out


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--quick", action="store_true")
  a = parser.parse_args()
  run(models=["cnn", "resnet20"], batches=[64, 256], iters=2 if a.quick else 10)
