"""The pruning-importance registry: one file per importance, each really prunes a model, and the
config refuses a name that is not registered."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeinfer.compress.prune import PruneConfig, importances, register_importance, structured
from edgeinfer.core.errors import ConfigError

IMPORTANCE_FILES = Path(__file__).parents[2] / "compress" / "importances"


def _lenet():
    import torch

    from edgeinfer.examples.digits import lenet5

    torch.manual_seed(0)
    return lenet5(), torch.randn(4, 1, 32, 32)


def _grad_batch(model):
    import torch

    torch.manual_seed(1)
    model(torch.randn(4, 1, 32, 32)).sum().backward()


def test_every_importance_file_registers_one_importance():
    assert sorted(importances()) == sorted(p.stem for p in IMPORTANCE_FILES.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", sorted(importances()))
def test_every_importance_prunes_half_the_channels(name):
    model, example = _lenet()
    kind = importances()[name]
    pruned, report = structured(
        model,
        example,
        PruneConfig(ratio=0.5, importance=name),
        grad_batch=_grad_batch if kind.needs_gradients else None,
    )
    assert report.params_after < 0.6 * report.params_before
    assert pruned(example).shape == (4, 10)


def test_different_importances_keep_different_channels():
    import torch

    model, example = _lenet()
    kept = {}
    for name in ("l1", "taylor"):
        pruned, _ = structured(model, example, PruneConfig(ratio=0.5, importance=name), grad_batch=_grad_batch)
        first = next(m for m in pruned.modules() if isinstance(m, torch.nn.Conv2d))
        kept[name] = first.weight.detach().clone()
    assert kept["l1"].shape == kept["taylor"].shape and not torch.equal(kept["l1"], kept["taylor"])


def test_gradient_importances_need_training_data_and_unknown_names_are_refused():
    model, example = _lenet()
    with pytest.raises(ConfigError, match="taylor importance needs training data"):
        structured(model, example, PruneConfig(importance="taylor"))
    with pytest.raises(ConfigError, match="valid: l1, l2, taylor"):
        PruneConfig(importance="random")
    with pytest.raises(RuntimeError, match="two pruning importances"):
        register_importance("l1")(lambda: None)
