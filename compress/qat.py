"""Quantization-aware training: fake quantization in PyTorch, exported as an ONNX QDQ model.

The scheme is the static PTQ path's: activations uint8 asymmetric per tensor, weights int8
symmetric per output channel (or per tensor), BatchNorm folded into the convolution before
training. The fake-quant ops export as QuantizeLinear/DequantizeLinear pairs that ONNX Runtime
fuses into integer kernels (and that the QNN path takes).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any, ClassVar

from edgeinfer.core.config import PassConfig
from edgeinfer.core.errors import ConfigError, InputError


@dataclass(frozen=True)
class QatConfig(PassConfig):
    """How to fake-quantize during training.

    Args:
        per_channel: weight scales per output channel (else one per tensor).
        freeze_after: epochs after which the activation ranges stop moving.
        momentum: of the exponential moving average of the observed activation min/max, in (0, 1].
    """

    per_channel: bool = True
    freeze_after: int = 2
    momentum: float = 0.05

    what: ClassVar[str] = "QAT config"

    def check(self) -> None:
        if self.freeze_after < 0:
            raise ConfigError(f"freeze_after must not be negative, got {self.freeze_after}")
        if not 0.0 < self.momentum <= 1.0:
            raise ConfigError(f"momentum must be in (0, 1], got {self.momentum}")


def fold_batchnorm(model):
    """A copy with every BatchNorm that directly follows a convolution folded into it."""
    import torch.fx as fx
    import torch.nn as nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    try:
        graph = fx.symbolic_trace(model)
    except Exception as e:  # fx raises many types on dynamic control flow
        raise InputError(f"QAT traces the model to fold BatchNorm, and tracing failed: {str(e).splitlines()[0]}") from e
    modules: dict[str, Any] = dict(graph.named_modules())
    for node in list(graph.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.modules.batchnorm._BatchNorm):
            continue
        prev = node.args[0]
        if (
            getattr(prev, "op", None) != "call_module"
            or not isinstance(modules[prev.target], nn.Conv2d)
            or len(prev.users) != 1
        ):
            continue
        fused = fuse_conv_bn_eval(modules[prev.target], modules[node.target])
        parent, _, name = prev.target.rpartition(".")
        setattr(graph.get_submodule(parent) if parent else graph, name, fused)
        node.replace_all_uses_with(prev)
        graph.graph.erase_node(node)
    graph.graph.lint()
    graph.recompile()
    graph.delete_all_unused_submodules()
    return graph


@functools.cache
def _fake_quant_cls():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class ActivationFQ(nn.Module):
        """uint8 asymmetric per-tensor fake quantization with an EMA min/max observer."""

        lo: torch.Tensor
        hi: torch.Tensor
        scale: torch.Tensor  # set by finalize()
        zero: torch.Tensor

        def __init__(self, momentum: float) -> None:
            super().__init__()
            self.momentum = momentum
            self.observing = True
            self.register_buffer("lo", torch.tensor(float("inf")))
            self.register_buffer("hi", torch.tensor(float("-inf")))

        def qparams(self):
            lo, hi = torch.clamp(self.lo, max=0.0), torch.clamp(self.hi, min=0.0)
            scale = torch.clamp((hi - lo) / 255.0, min=1e-8)
            zero = torch.clamp(torch.round(-lo / scale), 0, 255).to(torch.int32)
            return scale, zero

        def forward(self, x):
            if self.training and self.observing:
                with torch.no_grad():
                    lo, hi = x.min(), x.max()
                    if torch.isinf(self.lo):
                        self.lo.copy_(lo)
                        self.hi.copy_(hi)
                    else:
                        self.lo.lerp_(lo, self.momentum)
                        self.hi.lerp_(hi, self.momentum)
            if hasattr(self, "scale"):  # finalized: constants, so the export holds plain initializers
                return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero, 0, 255)
            scale, zero = self.qparams()
            return torch.fake_quantize_per_tensor_affine(x, scale.reshape(()), zero.reshape(()), 0, 255)

        def finalize(self) -> None:
            scale, zero = self.qparams()
            self.observing = False
            self.register_buffer("scale", scale.reshape(()).clone())
            self.register_buffer("zero", zero.reshape(()).clone())

    class QuantLayer(nn.Module):
        """A Conv2d or Linear whose input, weight and output are fake-quantized."""

        wscale: torch.Tensor  # set by finalize()

        def __init__(self, layer: nn.Conv2d | nn.Linear, per_channel: bool, momentum: float) -> None:
            super().__init__()
            self.layer = layer
            self.per_channel = per_channel
            self.inp = ActivationFQ(momentum)
            self.out = ActivationFQ(momentum)

        def finalize(self) -> None:
            w = self.layer.weight.detach()
            amax = w.abs().reshape(w.shape[0], -1).amax(dim=1) if self.per_channel else w.abs().max()
            self.register_buffer("wscale", torch.clamp(amax / 127.0, min=1e-8))

        def weight_fq(self):
            w = self.layer.weight
            if hasattr(self, "wscale"):
                if self.per_channel:
                    return torch.fake_quantize_per_channel_affine(
                        w, self.wscale, torch.zeros_like(self.wscale, dtype=torch.int32), 0, -128, 127
                    )
                return torch.fake_quantize_per_tensor_affine(
                    w, self.wscale.reshape(()), torch.zeros((), dtype=torch.int32), -128, 127
                )
            if self.per_channel:
                amax = w.detach().abs().reshape(w.shape[0], -1).amax(dim=1)
                scale = torch.clamp(amax / 127.0, min=1e-8)
                return torch.fake_quantize_per_channel_affine(
                    w, scale, torch.zeros_like(scale, dtype=torch.int32), 0, -128, 127
                )
            scale = torch.clamp(w.detach().abs().max() / 127.0, min=1e-8)
            return torch.fake_quantize_per_tensor_affine(
                w, scale.reshape(()), torch.zeros((), dtype=torch.int32), -128, 127
            )

        def forward(self, x):
            x = self.inp(x)
            w = self.weight_fq()
            if isinstance(self.layer, nn.Conv2d):
                c = self.layer
                y = F.conv2d(x, w, c.bias, c.stride, c.padding, c.dilation, c.groups)
            else:
                y = F.linear(x, w, self.layer.bias)
            return self.out(y)

    return ActivationFQ, QuantLayer


def prepare(model, cfg: QatConfig):
    """Fold BatchNorm, then wrap every Conv2d / Linear with fake quantization (a new model)."""
    import torch.nn as nn

    _, QuantLayer = _fake_quant_cls()
    model = fold_batchnorm(model)
    targets = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not targets:
        raise InputError("the model has no Conv2d or Linear layer to quantize")
    for name in targets:
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, child, QuantLayer(getattr(owner, child), cfg.per_channel, cfg.momentum))
    return model


def freeze_observers(model) -> int:
    """Stop the activation ranges from moving; returns how many observers were frozen."""
    ActivationFQ, _ = _fake_quant_cls()
    n = 0
    for m in model.modules():
        if isinstance(m, ActivationFQ):
            m.observing = False
            n += 1
    return n


def finalize(model) -> None:
    """Freeze every scale and zero point into constant buffers: the model to export."""
    ActivationFQ, QuantLayer = _fake_quant_cls()
    for m in model.modules():
        if isinstance(m, (ActivationFQ, QuantLayer)):
            m.finalize()


def calibrate(model, loader, batches: int = 8) -> None:
    """Fill the observers from a few training batches before training starts."""
    import torch

    model.train()
    with torch.no_grad():
        for i, (x, _) in enumerate(loader):
            if i >= batches:
                break
            model(x)
    model.eval()


def store_int8_weights(path) -> int:
    """Replace QuantizeLinear nodes on constant float weights by the int8 weights themselves, as the
    static PTQ path stores them: a quarter of the size, and nothing left to fold at load time.
    Returns how many weights were stored as int8."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    # torch's exporter may route a constant through Identity; follow it.
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]]
    done, keep = 0, []
    for node in graph.node:
        w_name = node.input[0] if node.op_type == "QuantizeLinear" else None
        if w_name is None or w_name not in consts or consts[w_name].dtype != np.float32 or consts[w_name].ndim < 2:
            keep.append(node)
            continue
        w, scale = consts[w_name], consts[node.input[1]]
        zero = consts[node.input[2]] if len(node.input) > 2 else np.zeros_like(scale, dtype=np.uint8)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim:
            shape = [1] * w.ndim
            shape[axis] = -1
            scale, zero_b = scale.reshape(shape), zero.reshape(shape)
        else:
            zero_b = zero
        info = np.iinfo(zero.dtype)
        q = np.clip(np.rint(w / scale) + zero_b.astype(np.int32), info.min, info.max).astype(zero.dtype)
        graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
        done += 1
    del graph.node[:]
    graph.node.extend(keep)
    used = {i for n in graph.node for i in n.input}
    unused = [t for t in graph.initializer if t.name not in used and t.name not in {o.name for o in graph.output}]
    for t in unused:
        graph.initializer.remove(t)
    onnx.save(model, str(path))
    return done
