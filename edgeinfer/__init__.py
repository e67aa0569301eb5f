"""edgeinfer: export, compress and run models on edge devices, and prove they are still good.

Importing this package stays light: torch, onnxruntime, transformers and llama_cpp load only
inside the functions that need them.
"""

__version__ = "0.1.0"
