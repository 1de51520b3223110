"""The GGUF block types the kernels read, and how their blocks are laid out: what ``quant_matmul`` decodes, what
the inference service keeps on the device (``inference/weights/gguf.py``) and what ``reference.dequantize`` checks.

Imports nothing of ours.
"""

# type name → (weights per block, bytes per block)
GGUF_BLOCKS = {
    "Q8_0": (32, 34),
    "Q4_0": (32, 18),
    "Q4_1": (32, 20),
    "Q5_0": (32, 22),
    "Q5_1": (32, 24),
    "Q4_K": (256, 144),
    "Q6_K": (256, 210),
}
# type name → byte offsets of its fp16 fields in a block (scales and mins), for tools that write random blocks
GGUF_HALF_FIELDS = {
    "Q8_0": (0,),
    "Q4_0": (0,),
    "Q4_1": (0, 2),
    "Q5_0": (0,),
    "Q5_1": (0, 2),
    "Q4_K": (0, 2),
    "Q6_K": (208,),
}
