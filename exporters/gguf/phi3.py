"""Phi-3: fused QKV and gate/up projections (llama.cpp takes them fused), NeoX-style RoPE."""

from __future__ import annotations

import gguf

from edgeinfer.core.errors import UnsupportedError
from edgeinfer.exporters.gguf.base import Family, register


@register("Phi3ForCausalLM")
class Phi3(Family):
    arch = gguf.MODEL_ARCH.PHI3

    def write_hparams(self, w) -> None:
        super().write_hparams(w)
        rotary = float(self.config.get("partial_rotary_factor", 1.0))
        w.add_rope_dimension_count(int(self.head_dim * rotary))
        if (window := self.config.get("sliding_window")) is not None:
            w.add_sliding_window(int(window))

    def write_rope_scaling(self, w) -> None:
        # The 128k variants' longrope needs per-dimension factor tensors; not converted yet.
        if self.rope.get("rope_type", self.rope.get("type", "default")) != "default":
            raise UnsupportedError(
                "Phi-3 rope_scaling (longrope, the 128k-context variants) is not converted "
                "yet; the 4k-context checkpoints are"
            )
