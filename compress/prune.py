"""Pruning: structured (channels removed, the model really shrinks) through Torch-Pruning's
DepGraph, and unstructured / N:M sparsity (zeros that CPU runtimes do not turn into speed).

Torch-Pruning tracks the dependencies (residual adds, concatenations, BatchNorm) so every
layer that shares a channel dimension loses the same channels.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from edgeinfer.core.config import PassConfig
from edgeinfer.core.errors import ConfigError, MissingDependencyError
from edgeinfer.core.registry import Registry


class PruneMethod(StrEnum):
    STRUCTURED = "structured"
    UNSTRUCTURED = "unstructured"
    SEMI_STRUCTURED = "2:4"


@dataclass(frozen=True)
class ImportanceKind:
    """A way to rank channels for structured pruning: `make()` returns a Torch-Pruning importance."""

    name: str
    make: Callable[[], Any]
    needs_gradients: bool  # Taylor-style importances read gradients of a training batch


_IMPORTANCES: Registry[ImportanceKind] = Registry(
    "pruning importance", "edgeinfer.compress.importances", lambda a, b: a.make is b.make
)


def register_importance(name: str, *, needs_gradients: bool = False):
    """Register `make() -> torch_pruning importance` under `name` (one file in compress/importances/)."""

    def register(make: Callable[[], Any]):
        _IMPORTANCES.add(name, ImportanceKind(name, make, needs_gradients))
        return make

    return register


def importances() -> dict[str, ImportanceKind]:
    """Every registered importance: each module of compress/importances/ registers its own on import."""
    return _IMPORTANCES.all()


@dataclass(frozen=True)
class PruneConfig(PassConfig):
    """How to prune. Validated when made.

    Args:
        method: structured (channels removed), unstructured (magnitude zeros) or 2:4.
        ratio: fraction of channels (structured) or weights (unstructured) to remove, in (0, 1).
        importance: a registered importance (`importances()`): l1, l2, taylor, ...
        global_ranking: rank across layers instead of pruning each layer by `ratio`.
        ignore: module names kept whole (the output layer always is).
        steps: iterative pruning in this many prune + fine-tune rounds.
    """

    method: PruneMethod = PruneMethod.STRUCTURED
    ratio: float = 0.5
    importance: str = "l2"
    global_ranking: bool = False  # rank across layers (global) or prune each layer by `ratio` (uniform)
    ignore: tuple[str, ...] = ()  # module names kept whole; the output layer always is
    steps: int = 1  # iterative: prune ratio/steps, fine-tune, repeat

    what: ClassVar[str] = "pruning config"

    def check(self) -> None:
        known = importances()
        if self.importance not in known:
            raise ConfigError(f"unknown importance {self.importance!r}; valid: {', '.join(sorted(known))}")
        if not 0.0 < self.ratio < 1.0:
            raise ConfigError(f"ratio must be between 0 and 1 (exclusive), got {self.ratio}")
        if self.steps < 1:
            raise ConfigError(f"steps must be at least 1, got {self.steps}")


@dataclass
class PruneReport:
    macs_before: int = 0
    macs_after: int = 0
    params_before: int = 0
    params_after: int = 0
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> channels or sparsity

    def as_dict(self) -> dict[str, Any]:
        return {
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "layers": self.layers,
        }


def _prunable(model) -> list[tuple[str, Any]]:
    import torch.nn as nn

    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _channels(layer) -> int:
    """Output channels of a Conv2d, output features of a Linear."""
    return int(layer.out_channels if hasattr(layer, "out_channels") else layer.out_features)


def _output_layer(model):
    layers = _prunable(model)
    return layers[-1] if layers else (None, None)


def _ignored(model, cfg: PruneConfig) -> list:
    modules = dict(model.named_modules())
    unknown = [n for n in cfg.ignore if n not in modules]
    if unknown:
        names = ", ".join(n for n, _ in _prunable(model))
        raise ConfigError(f"ignore {', '.join(unknown)}: no such module; prunable layers are {names}")
    _, out = _output_layer(model)
    return [modules[n] for n in cfg.ignore] + ([out] if out is not None else [])


def count(model, example) -> tuple[int, int]:
    """(MACs, parameters) of one forward pass on `example`, by Torch-Pruning's counter."""
    import torch_pruning as tp

    counted = tp.utils.count_ops_and_params(model, example)
    return int(counted[0]), int(counted[1])


def structured(
    model,
    example,
    cfg: PruneConfig,
    grad_batch: Callable[[Any], None] | None = None,
    finetune: Callable[[Any, int], None] | None = None,
):
    """Remove channels; returns (pruned copy, report). `grad_batch(model)` runs backward for
    Taylor importance; `finetune(model, step)` runs between iterative steps."""
    try:
        import torch_pruning as tp
    except ImportError as e:
        raise MissingDependencyError("torch-pruning", "structured pruning") from e

    model = copy.deepcopy(model).eval()
    ignored = _ignored(model, cfg)
    per_step_keep = 1 - cfg.ratio
    for name, layer in _prunable(model):
        if layer in ignored:
            continue
        channels = _channels(layer)
        if round(channels * per_step_keep) < 1:
            raise ConfigError(
                f"ratio {cfg.ratio} would remove every channel of {name} ({channels} channels); "
                f"lower the ratio or add {name} to ignore"
            )
    report = PruneReport()
    report.macs_before, report.params_before = count(model, example)
    before = {n: _channels(m) for n, m in _prunable(model)}
    kind = importances()[cfg.importance]
    importance = kind.make()
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=importance,
        pruning_ratio=cfg.ratio,
        global_pruning=cfg.global_ranking,
        iterative_steps=cfg.steps,
        ignored_layers=ignored,
    )
    for step in range(cfg.steps):
        if kind.needs_gradients:
            if grad_batch is None:
                raise ConfigError(f"{cfg.importance} importance needs training data for its gradients")
            model.zero_grad()
            grad_batch(model)
        pruner.step()
        model.zero_grad()
        if finetune is not None:
            finetune(model, step)
    model.eval()
    report.macs_after, report.params_after = count(model, example)
    for n, m in _prunable(model):
        after = _channels(m)
        if after < 1:
            raise ConfigError(f"pruning removed every channel of {n}; lower the ratio or add {n} to ignore")
        report.layers[n] = {"channels_before": before[n], "channels_after": after}
    return model, report


def sparsify(model, cfg: PruneConfig):
    """Zero weights by magnitude (unstructured, global or per layer) or 2 of every 4 along the
    input dimension (2:4); the masks are made permanent. Returns (copy, report with sparsity)."""
    import torch
    import torch.nn.utils.prune as tprune

    model = copy.deepcopy(model).eval()
    ignored = _ignored(model, cfg)
    layers = [(n, m) for n, m in _prunable(model) if m not in ignored]
    report = PruneReport()
    report.params_before = sum(p.numel() for p in model.parameters())
    if cfg.method is PruneMethod.UNSTRUCTURED:
        if cfg.global_ranking:
            tprune.global_unstructured(
                [(m, "weight") for _, m in layers], pruning_method=tprune.L1Unstructured, amount=cfg.ratio
            )
        else:
            for _, m in layers:
                tprune.l1_unstructured(m, "weight", amount=cfg.ratio)
        for _, m in layers:
            tprune.remove(m, "weight")  # the mask becomes the weights; no reparametrization left
    else:
        with torch.no_grad():
            for name, m in layers:
                w = m.weight
                flat = w.reshape(w.shape[0], -1)
                if flat.shape[1] % 4:
                    raise ConfigError(
                        f"2:4 sparsity needs input sizes that are multiples of 4; {name} has "
                        f"{flat.shape[1]}; add {name} to ignore"
                    )
                groups = flat.reshape(flat.shape[0], -1, 4)
                drop = groups.abs().argsort(dim=-1)[..., :2]
                groups.scatter_(-1, drop, 0.0)
                m.weight.copy_(groups.reshape(w.shape))
    for name, m in layers:
        w = m.weight
        report.layers[name] = {"sparsity": float((w == 0).float().mean()), "weights": int(w.numel())}
    report.params_after = report.params_before
    return model, report
