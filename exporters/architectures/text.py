"""Text models: encoders and decoder-only LMs, fed by the folder's own tokenizer."""

from edgeinfer.exporters.architectures import Modality, declare

declare(
    "bert",
    Modality.TEXT,
    "feature-extraction",
    "text-classification",
    "token-classification",
    "question-answering",
    "fill-mask",
    "multiple-choice",
    torchscript_first=(
        "ONNX Runtime runs the TorchScript graph of BERT encoders 1.09-1.14x faster than the torch.export "
        "graph in FP32 and 1.13-1.21x in dynamic INT8 (GELU fuses, LayerNorm stays cheap)"
    ),
)
declare("gpt2", Modality.TEXT, "causal-lm", "feature-extraction")
declare("llama", Modality.TEXT, "causal-lm", "feature-extraction")
