"""Export factories used by the tests (`tests/exporters/factories.py:NAME`)."""

import torch


class FixedBatch(torch.nn.Module):
    """Reshapes with a batch size written in Python: a graph that only works for batch 4."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.linear(x).reshape(4, 3)


def fixed_batch():
    torch.manual_seed(0)
    return FixedBatch(), {"x": torch.randn(4, 6)}


class TracedBatch(torch.nn.Module):
    """Correct at any batch in PyTorch, but int() makes the TorchScript tracer bake the batch in."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.linear(x).reshape(int(x.shape[0]), 3)


def traced_batch():
    torch.manual_seed(0)
    return TracedBatch(), {"x": torch.randn(4, 6)}


def two_outputs():
    torch.manual_seed(0)

    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(5, 2)
            self.b = torch.nn.Linear(5, 4)

        def forward(self, x, mask):
            h = x * mask.unsqueeze(-1)
            return self.a(h).sum(1), self.b(h).mean(1)

    mask = torch.ones(2, 7, dtype=torch.int64)
    mask[1, 5:] = 0
    return (
        TwoHeads(),
        {"x": torch.randn(2, 7, 5), "mask": mask},
        {"x": {0: "batch", 1: "sequence"}, "mask": {0: "batch", 1: "sequence"}},
    )


def not_a_module():
    return "nope", {}
