"""The seed families that come as PyTorch code rather than Hugging Face folders, as factories a
user would write (`edgeinfer export tests/exporters/seed_families.py:NAME`): small AlexNet-, VGG-
and ResNet-style CNNs for 32x32 images, and RNN / LSTM / GRU sequence classifiers with a dynamic
sequence axis. LeNet is the digits example (edgeinfer/examples/digits.py)."""

import torch
from torch import nn


def _images(batch: int = 2):
    return {"image": torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))}


def alexnet():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip
    return model.eval(), _images()


def vgg():
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    channels = 3
    for width in (16, 16, "M", 32, 32, "M", 64, "M"):
        if width == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(channels, int(width), 3, padding=1), nn.BatchNorm2d(int(width)), nn.ReLU()]
            channels = int(width)
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    return model.eval(), _images()


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
        )  # fmt: skip
        self.skip = (
            nn.Identity() if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False))
        )

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


class ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.stages = nn.Sequential(_Block(16, 16, 1), _Block(16, 32, 2), _Block(32, 64, 2))
        self.head = nn.Linear(64, 10)

    def forward(self, image):
        return self.head(self.stages(self.stem(image)).mean((2, 3)))


def resnet():
    torch.manual_seed(0)
    return ResNet().eval(), _images()


class SequenceClassifier(nn.Module):
    """Token ids -> embedding -> a recurrent layer -> the last state's class logits."""

    def __init__(self, cell: str) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](16, 32, batch_first=True)
        self.head = nn.Linear(32, 4)

    def forward(self, tokens):
        out, _ = self.rnn(self.embed(tokens))
        return self.head(out[:, -1])


def _sequence(cell: str):
    torch.manual_seed(0)
    tokens = torch.randint(0, 100, (2, 9), generator=torch.Generator().manual_seed(0))
    return SequenceClassifier(cell).eval(), {"tokens": tokens}, {"tokens": {0: "batch", 1: "sequence"}}


def rnn():
    return _sequence("rnn")


def lstm():
    return _sequence("lstm")


def gru():
    return _sequence("gru")
