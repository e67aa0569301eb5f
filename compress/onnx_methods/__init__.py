"""ONNX quantization methods, one file each; every module registers itself with
`edgeinfer.compress.onnx_quant.register_method` and is found by `onnx_quant.methods()`."""
