"""Dual encoders: label texts through the tokenizer and images through the image processor, in one
graph giving the image-label logits and both embeddings."""

from edgeinfer.exporters.architectures import Modality, declare

declare("clip", Modality.TEXT_IMAGE, "zero-shot-image-classification")
declare("siglip", Modality.TEXT_IMAGE, "zero-shot-image-classification")
