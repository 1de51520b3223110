"""What the engine captures into decode CUDA graphs, run eagerly on the CPU: the model's forward over the static,
padded inputs (``DecodeInputs`` in inference/engine/cuda_graphs.py) on the Triton kernels.

A graph records one forward's launches and replays them over new values in the same buffers, so that forward must
never read a value back to the host (``.item()``, ``.tolist()``, ``bool(t)``, ``nonzero``...): under capture that is
an error, and the engine falls back to eager decoding. Nor may it make a tensor from host data (``torch.tensor``):
the graph would keep that step's values. On a GPU, test_engine_device.py can only see that capture failed; here
every decode step of a greedy run goes through ``DecodeInputs`` with those calls trapped, and the tokens are the
plain engine's: the padding rows of a batch padded up to a graph's size change nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from inference.config import EngineConfig
from inference.engine.cuda_graphs import DecodeInputs
from inference.engine.llm_engine import LLMEngine
from inference.loader.safetensors import load_model
from inference.sampling_params import SamplingParams
from tests.support import checkpoints as rc
from tests.support import moe_checkpoints as mc

pytestmark = pytest.mark.interpreter

# what makes the host wait for the device (refused while a CUDA graph is captured), and tensors made from host data
# (on a GPU a copy whose values the graph would keep, whatever the next step's are)
HOST_READS = [
    *((torch.Tensor, name) for name in ("item", "tolist", "numpy", "cpu", "nonzero", "__bool__", "__int__",
                                        "__float__", "__index__")),
    *((torch, name) for name in ("tensor", "as_tensor", "from_numpy")),
]  # fmt: skip


@contextmanager
def no_host_reads() -> Iterator[None]:
    """Any of HOST_READS fails, unless Triton's interpreter itself calls it (it is not on a GPU)."""
    saved = [(owner, name, getattr(owner, name)) for owner, name in HOST_READS]

    def trap(owner, name: str, original):
        def trapped(*args, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if not caller.startswith("triton."):
                raise AssertionError(f"{owner.__name__}.{name}() in {caller}, inside the forward a CUDA graph captures")
            return original(*args, **kwargs)

        return trapped

    for owner, name, original in saved:
        setattr(owner, name, trap(owner, name, original))
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


class EagerReplay:
    """DecodeGraphs' part on the CPU: the same static inputs and forward, run where the GPU would replay a graph."""

    def __init__(self, model: torch.nn.Module, max_num_seqs: int, max_blocks: int, block_size: int):
        self.model = model
        self.inputs = DecodeInputs(max_num_seqs, max_blocks, block_size, "cpu")
        self.padded: list[tuple[int, int]] = []  # (batch, graph size) per step

    def fits(self, num_seqs: int, table_width: int) -> bool:
        return self.inputs.fits(num_seqs, table_width)

    @torch.inference_mode()
    def run(self, input_ids, positions, ctx) -> torch.Tensor:
        size = self.inputs.load(input_ids, positions, ctx)
        with no_host_reads():
            hidden = self.inputs.forward(self.model, size)
        n = input_ids.shape[0]
        self.padded.append((n, size))
        return hidden[:n]


def test_the_trap_catches_host_reads():
    x = torch.ones(3)
    with no_host_reads():
        reads = (lambda: x.sum().item(), lambda: x.tolist(), lambda: bool(x[0]), lambda: x.nonzero(),
                 lambda: torch.tensor([1, 2]))  # fmt: skip
        for read in reads:
            with pytest.raises(AssertionError, match="inside the forward a CUDA graph captures"):
                read()
    assert x.sum().item() == 3.0 and torch.tensor([1]).tolist() == [1]  # restored


@pytest.mark.parametrize(
    "build", [rc.llama_checkpoint, mc.mixtral_checkpoint], ids=["llama", "mixtral"]
)  # dense, and the experts' sort and fused kernel
def test_decode_over_the_graphs_inputs_reads_nothing_back_and_gives_the_eager_tokens(build, tmp_path):
    path = build(tmp_path)
    greedy = SamplingParams(max_tokens=6, temperature=0.0, ignore_eos=True)
    gen = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, rc.VOCAB, (n,), generator=gen).tolist() for n in (23, 7, 12)]
    answers = []
    for replay in (False, True):
        model = load_model(path, dtype=torch.float32, device="cpu").eval()
        cfg = EngineConfig(device="cpu", block_size=5, kernels="on", kv_cache_tokens=256, max_num_seqs=8)
        engine = LLMEngine(model, rc.IdTokenizer(), rc.IdDetokenizer, cfg)
        if replay:
            stand_in = EagerReplay(model, cfg.max_num_seqs, -(-engine.max_model_len // cfg.block_size), cfg.block_size)
            engine.runner.graphs = stand_in
        for i, prompt in enumerate(prompts[:2]):
            engine.add_request(str(i), prompt, greedy)
        got: dict[str, list[int]] = {}
        for step in range(40):
            if step == 3:  # a third joins mid-flight: batches of 2 (graph 2) and 3 (padded to 4)
                engine.add_request("2", prompts[2], greedy)
            for delta in engine.step():
                got.setdefault(delta.request_id, []).extend(delta.token_ids)
            if not engine.has_work:
                break
        answers.append(got)
    assert answers[0] == answers[1] and all(len(ids) == 6 for ids in answers[0].values())
    assert {(2, 2), (3, 4)} <= set(stand_in.padded)  # a step of each, one padded
