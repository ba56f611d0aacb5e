"""Export: quantization (and, later, merge → GGUF → delivery package)."""
