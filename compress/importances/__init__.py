"""Channel importances for structured pruning, one file each; every module registers itself with
`edgeinfer.compress.prune.register_importance` and is found by `prune.importances()`."""
