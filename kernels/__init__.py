"""Triton kernels, one op per module, each with its PyTorch reference in ``kernels.reference``.

Imports nothing of ours. On CPU (CI) kernels run under ``TRITON_INTERPRET=1``. Beside the ops: ``launch``
(retrying a launch with fewer pipeline stages where shared memory is short), ``cuda_compile`` (every kernel
built for a CUDA GPU without one, with its registers, spills and shared memory) and ``gguf_blocks`` (the GGUF
block layouts ``quant_matmul`` reads).
"""
