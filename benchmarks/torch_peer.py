"""PyTorch eager twins of the benchmark's CNN and large MLP, timed on request (only torch and numpy needed).

`benchmarks/run.py` starts this file under an interpreter that has torch and sends one line per round:

    cnn 100      ->  seconds for 100 training steps of the CNN (printed as one number)
    mlp 100      ->  the same for the 20 x 128 MLP

so its rounds alternate with those of `helpers.train` in one run. The models and optimizers are the ones
`run.py` times on the JAX side, written the way a PyTorch user would (eager mode, one step per call):

- CNN: 3 blocks of Conv2d(3x3, 32 channels, no bias) + BatchNorm2d + ReLU, global average pool, Linear;
  8x8x1 images, batch 64, AdamW(lr 1e-3, weight decay 1e-4 on the weights), global-norm clipping at 1.
- MLP: 20 blocks of Linear(128, no bias) + BatchNorm1d + ReLU on 64 inputs, Linear head; batch 128,
  SGD(lr 0.05, weight decay 1e-4 on the weights), global-norm clipping at 1.

Inputs are random arrays of the digits' shape and size (1437 training images): the step time does not depend
on the values. Each step draws its batch from the training set by index, as `helpers.train` does.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from torch import nn

N_TRAIN, CLASSES = 1437, 10


def cnn() -> tuple[nn.Module, torch.optim.Optimizer, int, tuple[int, ...]]:
    layers, channels = [], 1
    for _ in range(3):
        layers += [nn.Conv2d(channels, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU()]
        channels = 32
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, CLASSES))
    return model, _optimizer(model, torch.optim.AdamW, lr=1e-3), 64, (1, 8, 8)


def mlp() -> tuple[nn.Module, torch.optim.Optimizer, int, tuple[int, ...]]:
    layers, features = [], 64
    for _ in range(20):
        layers += [nn.Linear(features, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU()]
        features = 128
    model = nn.Sequential(*layers, nn.Linear(128, CLASSES))
    return model, _optimizer(model, torch.optim.SGD, lr=0.05), 128, (64,)


def _optimizer(model: nn.Module, kind, lr: float) -> torch.optim.Optimizer:
    """Weight decay 1e-4 on the weight matrices and kernels only, as helpers.optimizer.kernel_mask does."""
    decayed = [p for p in model.parameters() if p.dim() > 1]
    rest = [p for p in model.parameters() if p.dim() <= 1]
    return kind([{"params": decayed, "weight_decay": 1e-4}, {"params": rest, "weight_decay": 0.0}], lr=lr)


class Run:
    """One model, its optimizer and its data; `steps(n)` trains n steps and returns the seconds they took."""

    def __init__(self, build) -> None:
        torch.manual_seed(0)
        self.model, self.opt, self.batch, shape = build()
        rng = np.random.default_rng(0)
        self.x = torch.from_numpy(rng.random((N_TRAIN, *shape), dtype=np.float32))
        self.y = torch.from_numpy(rng.integers(0, CLASSES, N_TRAIN))
        self.rng = rng
        self.model.train()
        self.steps(20)  # warm-up: allocator, kernels chosen on first use

    def steps(self, n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            idx = torch.from_numpy(self.rng.integers(0, N_TRAIN, self.batch))
            loss = nn.functional.cross_entropy(self.model(self.x[idx]), self.y[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
        loss.item()  # eager CPU ops have run by now; this only reads the last loss
        return time.perf_counter() - start


def main() -> None:
    runs = {"cnn": Run(cnn), "mlp": Run(mlp)}
    print(f"ready torch {torch.__version__} threads {torch.get_num_threads()}", flush=True)
    for line in sys.stdin:
        name, n = line.split()
        print(f"{runs[name].steps(int(n)):.6f}", flush=True)


if __name__ == "__main__":
    main()
