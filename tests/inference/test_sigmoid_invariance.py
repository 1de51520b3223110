"""The sigmoid the models use (the Qwen2-MoE shared expert's gate, DeepSeek-V3's router scores, CLIP's quick_gelu,
a cross-encoder's score): each element's value does not depend on how long the tensor is, so a token's (or a
document's) value does not depend on what else shares its step. torch.sigmoid on the CPU computes the flat
tensor's tail on another path, which on some CPUs (an AMD EPYC here) rounds differently: a Qwen2-MoE prompt's
first logprob changed in its last bits when batched."""

from __future__ import annotations

import pytest
import torch

from inference.layers.activation import quick_gelu, sigmoid


@pytest.mark.parametrize("fn", [sigmoid, quick_gelu], ids=["sigmoid", "quick_gelu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_an_elements_value_does_not_depend_on_the_tensors_length(fn, dtype):
    x = (torch.randn(1100, generator=torch.Generator().manual_seed(0)) * 4).to(dtype)
    full = fn(x)
    assert [n for n in range(1, 1100) if not torch.equal(fn(x[:n]), full[:n])] == []
    assert torch.allclose(sigmoid(x.float()), torch.sigmoid(x.float()), rtol=1e-6, atol=1e-7)
