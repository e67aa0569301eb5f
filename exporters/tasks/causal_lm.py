"""A decoder's next-token logits over the whole sequence, without a KV cache."""

from __future__ import annotations

import functools

from edgeinfer.exporters.tasks import ExportTask, register_task
from edgeinfer.exporters.tasks._inputs import text_inputs


def _no_cache(model) -> None:
    model.config.use_cache = False  # the graph takes the whole sequence; no past_key_values outputs


register_task(
    ExportTask(
        name="causal-lm",
        auto_class="AutoModelForCausalLM",
        architectures=("ForCausalLM", "LMHeadModel"),
        outputs=("logits",),
        inputs=functools.partial(text_inputs, drop=("token_type_ids",)),
        prepare=_no_cache,
    )
)
