"""The pipeline tier: export, quantize, compare, bench, train and the LLM harness, composing the
subsystems (exporters, compress, runtime, devices) over the ground tier. One function per command."""
