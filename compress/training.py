"""The training loop that pruning fine-tunes, distillation and QAT share: seeded, with progress,
a NaN guard and a last-good checkpoint, so Ctrl-C or a diverging run never loses good weights.

Data is a pair of DataLoaders (train, eval) yielding (inputs, labels) batches.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from edgeinfer.core.config import PassConfig
from edgeinfer.core.errors import ConfigError, EdgeInferError, InputError
from edgeinfer.core.progress import QUIET, Progress


class TrainingStopped(EdgeInferError):
    """Training ended early (Ctrl-C or a NaN loss); `state` holds the last good weights."""

    def __init__(self, message: str, state: dict[str, Any], history: list[dict[str, float]]) -> None:
        super().__init__(message)
        self.state = state
        self.history = history


@dataclass(frozen=True)
class TrainConfig(PassConfig):
    """The shared training loop's settings (fine-tuning after pruning, distillation, QAT).

    Args:
        epochs: passes over the training data (0: none); lr, weight_decay: AdamW's.
        seed: seeds Python, NumPy and torch, so a run is repeatable.
    """

    epochs: int = 5
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0

    what: ClassVar[str] = "training config"

    def check(self) -> None:
        if self.epochs < 0:
            raise ConfigError(f"epochs must not be negative, got {self.epochs}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError(f"lr must be positive and weight_decay not negative, got {self.lr}, {self.weight_decay}")


@dataclass
class Loaders:
    train: Any  # torch DataLoader of (inputs, labels)
    eval: Any


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)

    @property
    def last(self) -> dict[str, float]:
        return self.epochs[-1] if self.epochs else {}


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def logits(out):
    """The prediction of a model that returns a tensor, or a tuple/list whose first item it is."""
    return out[0] if isinstance(out, (tuple, list)) else out


def accuracy(model, loader) -> float:
    import torch

    model.eval()
    right = total = 0
    with torch.no_grad():
        for x, y in loader:
            out = logits(model(x))
            right += int((out.argmax(-1) == y).sum())
            total += len(y)
    if not total:
        raise InputError("the eval data is empty")
    return right / total


def check_batch(model, loaders: Loaders) -> None:
    """Run one batch before training so a shape mismatch is one clear line, not a traceback mid-epoch."""
    import torch

    try:
        x, y = next(iter(loaders.train))
    except StopIteration as e:
        raise InputError("the training data is empty") from e
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except (RuntimeError, ValueError, TypeError) as e:
        raise InputError(
            f"the model does not take the training inputs of shape {list(x.shape)}: {str(e).splitlines()[0]}"
        ) from e
    out = logits(out)
    if out.dim() != 2 or out.shape[0] != len(y):
        raise InputError(
            f"the model gives outputs of shape {list(out.shape)} for {len(y)} labels; "
            "a classifier must give [batch, classes]"
        )
    if int(y.max()) >= out.shape[1]:
        raise InputError(f"labels go up to {int(y.max())} but the model has {out.shape[1]} classes")


def train(
    model,
    loaders: Loaders,
    cfg: TrainConfig,
    loss_fn: Callable | None = None,
    *,
    extra_params: list | None = None,
    on_epoch: Callable[[int, Any], None] | None = None,
    progress: Progress = QUIET,
    checkpoint=None,
) -> History:
    """Train `model` in place; returns the per-epoch loss and eval accuracy.

    `loss_fn(model, x, y)` returns the loss (cross-entropy when None). On Ctrl-C or a NaN/inf
    loss the weights of the last finished epoch are restored and TrainingStopped is raised.
    With `checkpoint` (a path), every finished epoch's weights are also saved there as
    safetensors, atomically, so even a killed process leaves the last good epoch on disk.
    """
    import torch

    seed_everything(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad] + list(extra_params or [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    ce = torch.nn.CrossEntropyLoss()

    def default_loss(m, x, y):
        return ce(logits(m(x)), y)

    loss_fn = loss_fn or default_loss
    history = History()
    good = copy.deepcopy(model.state_dict())
    try:
        for epoch in range(cfg.epochs):
            if on_epoch:
                on_epoch(epoch, model)
            model.train()
            total = n = 0.0
            for x, y in loaders.train:
                opt.zero_grad()
                loss = loss_fn(model, x, y)
                value = loss.item()
                if not math.isfinite(value):
                    model.load_state_dict(good)
                    where = f" in {checkpoint}" if checkpoint is not None and history.epochs else ""
                    raise TrainingStopped(
                        f"the loss became {value} in epoch {epoch + 1}; the weights of epoch "
                        f"{epoch} are kept{where}. Lower the learning rate ({cfg.lr:g})",
                        good,
                        history.epochs,
                    )
                loss.backward()
                opt.step()
                total += value * len(y)
                n += len(y)
            sched.step()
            row = {"epoch": epoch + 1, "loss": total / max(n, 1), "eval_accuracy": accuracy(model, loaders.eval)}
            history.epochs.append(row)
            good = copy.deepcopy(model.state_dict())
            if checkpoint is not None:
                _save(good, checkpoint)
            progress.epoch(row)
    except KeyboardInterrupt:
        model.load_state_dict(good)
        where = f" in {checkpoint}" if checkpoint is not None and history.epochs else ""
        raise TrainingStopped(
            f"interrupted; the weights of epoch {len(history.epochs)} are kept{where}", good, history.epochs
        ) from None
    model.eval()
    return history


def _save(state: dict[str, Any], path) -> None:
    from safetensors.torch import save_file

    from edgeinfer.core.io import atomic_path

    with atomic_path(path, overwrite=True) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
