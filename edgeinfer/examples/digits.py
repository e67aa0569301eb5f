"""LeNet-5 on scikit-learn's digits (1,797 real 8x8 images, upsampled to 32x32).

Trains in seconds on a CPU; the trained weights are cached so the demo and tests train once.
`edgeinfer.examples.digits:lenet` is an export factory: it returns the trained model and inputs.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.core.cache import cache_dir

IMAGE = 32
SEED = 0

log = logging.getLogger(__name__)


def load_split(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train/test split (75/25, stratified), images float32 [N,1,32,32] in [0,1], labels int64."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits: Any = load_digits()  # a Bunch (the stubs only know the return_X_y tuple)
    images = (digits.images / 16.0).astype(np.float32)
    scale = IMAGE // images.shape[1]
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)[:, None]
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=0.25, random_state=seed, stratify=labels
    )
    return np.asarray(train_x), np.asarray(test_x), np.asarray(train_y), np.asarray(test_y)


def lenet5(width: float = 1.0):
    import torch.nn as nn

    c1, c2, f1, f2 = (max(1, int(round(c * width))) for c in (6, 16, 120, 84))
    return nn.Sequential(
        nn.Conv2d(1, c1, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 5 * 5, f1),
        nn.ReLU(),
        nn.Linear(f1, f2),
        nn.ReLU(),
        nn.Linear(f2, 10),
    )


def accuracy(model, images: np.ndarray, labels: np.ndarray) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(images))
    return float((logits.argmax(1).numpy() == labels).mean())


def train(model, epochs: int = 12, lr: float = 2e-3, batch: int = 64, seed: int = SEED, progress=None):
    import torch

    x_train, _, y_train, _ = load_split()
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), batch):
            idx = order[i : i + batch]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if progress:
            progress(epoch + 1, epochs, total / len(xt))
    return model.eval()


def trained_lenet(epochs: int = 12, progress=None):
    """The trained LeNet-5, from the cache when it is there (safetensors, no pickle)."""
    return _trained("lenet5", lenet5, epochs, progress=progress)


def lenet():
    """Export factory: the trained LeNet-5 and a batch of real test images."""
    return _factory(trained_lenet())


def save_eval_npz(path: Path, limit: int | None = None) -> Path:
    """The test split as an .npz (`input`, `labels`) for `run`, `compare` and `check`."""
    _, x_test, _, y_test = load_split()
    n = limit or len(x_test)
    np.savez(path, input=x_test[:n], labels=y_test[:n])
    return Path(path)


def save_calib_npz(path: Path, samples: int = 128) -> Path:
    """Training images for calibration (never the test split)."""
    x_train, _, _, _ = load_split()
    np.savez(path, input=x_train[:samples])
    return Path(path)


# -- models and data for training-time compression (pruning, distillation, QAT) -----------------


def loaders(batch: int = 64, seed: int = SEED):
    """Data factory for `prune` / `distill` / `qat --data`: (train DataLoader, eval DataLoader)."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    x_train, x_test, y_train, y_test = load_split()
    gen = torch.Generator().manual_seed(seed)
    train = DataLoader(
        TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train)),
        batch_size=batch,
        shuffle=True,
        generator=gen,
    )
    test = DataLoader(TensorDataset(torch.from_numpy(x_test), torch.from_numpy(y_test)), batch_size=256)
    return train, test


def resnet(width: float = 1.0):
    """A small ResNet (three stages of two residual blocks) for 32x32 digits: convolutions dominate."""
    import torch.nn as nn

    def block(cin: int, cout: int, stride: int) -> nn.Module:
        return _residual_cls()(cin, cout, stride)

    c = [max(2, int(round(w * width))) for w in (32, 64, 128)]
    return nn.Sequential(
        nn.Conv2d(1, c[0], 3, padding=1, bias=False),
        nn.BatchNorm2d(c[0]),
        nn.ReLU(),
        block(c[0], c[0], 1),
        block(c[0], c[0], 1),
        block(c[0], c[1], 2),
        block(c[1], c[1], 1),
        block(c[1], c[2], 2),
        block(c[2], c[2], 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c[2], 10),
    )


@functools.cache
def _residual_cls():
    """The residual block class; built on first use so importing this module does not load torch."""
    import torch.nn as nn

    class Residual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.short = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )

        def forward(self, x):
            return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + self.short(x))

    return Residual


def dscnn(width: float = 1.0):
    """A depthwise-separable CNN (MobileNet-style): per-tensor INT8 hurts its depthwise layers."""
    import torch.nn as nn

    def ds(cin: int, cout: int, stride: int) -> list:
        return [
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU(),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        ]

    c = [max(2, int(round(w * width))) for w in (16, 32, 64)]
    return nn.Sequential(
        nn.Conv2d(1, c[0], 3, 1, 1, bias=False),
        nn.BatchNorm2d(c[0]),
        nn.ReLU(),
        *ds(c[0], c[1], 2),
        *ds(c[1], c[1], 1),
        *ds(c[1], c[2], 2),
        *ds(c[2], c[2], 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c[2], 10),
    )


def _trained(name: str, build, epochs: int, lr: float = 2e-3, progress=None):
    """A model trained on the digits once, then loaded from the cache (safetensors, no pickle)."""
    import torch
    from safetensors.torch import load_file, save_file

    torch.manual_seed(SEED)
    model = build()
    path = cache_dir() / f"{name}-digits-e{epochs}-s{SEED}.safetensors"
    if path.exists():
        model.load_state_dict(load_file(str(path)))
        return model.eval()

    def log_progress(epoch: int, total: int, loss: float) -> None:
        log.info(
            f"training the {name} example on the digits (once; cached in {cache_dir()}): epoch {epoch}/{total}, "
            f"loss {loss:.3f}"
        )

    train(model, epochs=epochs, lr=lr, progress=progress or log_progress)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(model.state_dict(), str(tmp))
    os.replace(tmp, path)
    return model.eval()


def _factory(model):
    """(model, {"input": 8 real test images}): what an export factory returns."""
    import torch

    _, x_test, _, _ = load_split()
    return model, {"input": torch.from_numpy(x_test[:8])}


def resnet_trained():
    """Factory: the trained small ResNet and a batch of test images (for export / prune)."""
    return _factory(_trained("resnet", resnet, epochs=8))


def dscnn_trained():
    """Factory: the trained depthwise-separable CNN (for qat, and PTQ to compare with)."""
    return _factory(_trained("dscnn", dscnn, epochs=10))


def lenet_half():
    """Factory: an untrained half-width LeNet-5, the student for distillation."""
    return _factory(lenet5(width=0.5))
