"""Compression: post-training quantization (ONNX Runtime, llama.cpp k-quants) and friends.

Each technique is one file with a frozen config; the CLI in edgeinfer/ composes them.
"""
