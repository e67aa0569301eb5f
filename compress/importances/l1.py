"""L1 magnitude: a channel matters as much as the sum of its weights' absolute values."""

from edgeinfer.compress.prune import register_importance


@register_importance("l1")
def l1():
    import torch_pruning as tp

    return tp.importance.MagnitudeImportance(p=1)
