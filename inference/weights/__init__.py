"""Weight formats the models run on, applied to a loaded model: CPU weight-only quantization (``quantize.py``) and
GGUF blocks kept for the Triton matmul (``gguf.py``)."""
