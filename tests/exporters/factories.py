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


def sequential_image():
    """An nn.Sequential, whose forward takes one positional `input`, fed an example named `image`."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    image = torch.randn(2, 1, 8, 8)
    model(image)  # materialise the lazy layer
    return model, {"image": image}


class Denoiser(torch.nn.Module):
    """Returns a dict whose key is also its input's name, as a diffusers UNet does with `sample`."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, sample, timestep):
        return {"sample": self.conv(sample) * timestep.reshape(-1, 1, 1, 1)}


def denoiser():
    torch.manual_seed(0)
    return Denoiser(), {"sample": torch.randn(2, 2, 8, 8), "timestep": torch.tensor([1.0, 0.5])}


class Tagger(torch.nn.Module):
    """Per-token logits: the sequence axis is dynamic as well as the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, input_ids, attention_mask):
        return self.head(self.embed(input_ids)) * attention_mask.unsqueeze(-1)


def tagger():
    torch.manual_seed(0)
    ids = torch.randint(0, 50, (2, 7))
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    return Tagger(), {"input_ids": ids, "attention_mask": torch.ones(2, 7)}, axes


class MaskedMean(torch.nn.Module):
    def forward(self, x, mask):
        return (x * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)


def positional_tuple():
    """Example inputs as a tuple: they are named after forward's parameters (x, mask)."""
    return (
        MaskedMean(),
        (torch.randn(2, 5, 3), torch.ones(2, 5)),
        {0: {0: "batch", 1: "sequence"}, 1: {0: "batch", 1: "sequence"}},
    )


def wrong_arity():
    """Three example inputs for a forward that takes two."""
    return MaskedMean(), (torch.randn(2, 5, 3), torch.ones(2, 5), torch.ones(2))


def sequential_two_named():
    """Named inputs, but an nn.Sequential takes one: refused with what forward takes."""
    return torch.nn.Sequential(torch.nn.Linear(4, 2)), {"a": torch.randn(2, 4), "b": torch.randn(2, 4)}


def zero_head():
    """A body whose features vary and a zero-initialised head whose logits are 0.0 everywhere."""
    torch.manual_seed(0)

    class ZeroHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Linear(6, 4)
            self.head = torch.nn.Linear(4, 3)
            torch.nn.init.zeros_(self.head.weight)
            torch.nn.init.zeros_(self.head.bias)

        def forward(self, x):
            features = torch.relu(self.body(x))
            return features, self.head(features)

    return ZeroHead(), {"x": torch.randn(4, 6)}
