"""Exporters: trained models (PyTorch modules, Hugging Face checkpoints) to ONNX and GGUF.

Every export is checked against its source model before it is reported as a success.
"""
