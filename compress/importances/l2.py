"""L2 magnitude (the default): a channel matters as much as the norm of its weights."""

from edgeinfer.compress.prune import register_importance


@register_importance("l2")
def l2():
    import torch_pruning as tp

    return tp.importance.MagnitudeImportance(p=2)
