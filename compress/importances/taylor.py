"""First-order Taylor: weight times gradient on a training batch, the loss change of removing a channel."""

from edgeinfer.compress.prune import register_importance


@register_importance("taylor", needs_gradients=True)
def taylor():
    import torch_pruning as tp

    return tp.importance.TaylorImportance()
