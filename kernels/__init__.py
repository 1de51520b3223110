"""Triton kernels, one op per module, each with its PyTorch reference in ``kernels.reference``.

Imports nothing of ours. On CPU (CI) kernels run under ``TRITON_INTERPRET=1``.
"""
