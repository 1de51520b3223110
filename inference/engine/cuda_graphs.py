"""CUDA graphs for decode steps: the whole forward of a decode batch replayed as one launch.

At batch 1 a decode step of a small model is hundreds of kernel launches of a few microseconds each, so
the GPU waits on the host; a captured graph replays them with one call. One graph per batch size in
``graph_batch_sizes`` (a batch is padded up to the next one: padding rows write no KV, slot -1, and
attend to nothing, context 0), all sharing one memory pool, captured largest first. Inputs live in
static buffers that every replay overwrites. Only the model's forward is captured; the logits of the
rows that sample are computed after it, eagerly.

Requires the model on the Triton kernels (their decode path has no host synchronisation and its launch
grid depends only on shapes, which the static buffers fix).
"""

from __future__ import annotations

import logging

import torch

from inference.layers.context import ForwardContext, forward_context

log = logging.getLogger("inference.cuda_graphs")


def graph_batch_sizes(max_num_seqs: int) -> list[int]:
    """1, 2, 4, 8, then every multiple of 16 up to ``max_num_seqs`` (which is always included)."""
    sizes = [b for b in (1, 2, 4, 8) if b < max_num_seqs] + list(range(16, max_num_seqs, 16))
    return sorted(set(sizes + [max_num_seqs]))


class DecodeInputs:
    """The static buffers a captured decode step reads, sized for the largest of the graphs' batch ``sizes``, and the
    forward context over their first ``size`` rows. ``load`` writes a batch of n into them, padded up to the next
    size with rows of no sequence: slot -1 (no KV written) and context 0 (nothing attended to)."""

    def __init__(self, max_num_seqs: int, max_blocks: int, block_size: int, device):
        self.sizes = graph_batch_sizes(max_num_seqs)
        b = self.sizes[-1]
        self.block_size = block_size
        self.input_ids = torch.zeros(b, dtype=torch.long, device=device)
        self.positions = torch.zeros(b, dtype=torch.long, device=device)
        self.slot_mapping = torch.full((b,), -1, dtype=torch.long, device=device)
        self.block_tables = torch.zeros(b, max_blocks, dtype=torch.int32, device=device)
        self.context_lens = torch.zeros(b, dtype=torch.int32, device=device)
        self.cu_seqlens = torch.arange(b + 1, dtype=torch.int32, device=device)

    def context(self, size: int) -> ForwardContext:
        return ForwardContext(
            cu_seqlens_q=list(range(size + 1)),
            context_lens=[1] * size,  # unused on the kernel path; the tensors below are what it reads
            slot_mapping=self.slot_mapping[:size],
            is_decode=True,
            block_tables=self.block_tables[:size],
            context_lens_t=self.context_lens[:size],
            cu_seqlens_q_t=self.cu_seqlens[: size + 1],
            max_seqlen_q=1,
            block_size=self.block_size,
        )

    def fits(self, num_seqs: int, table_width: int) -> bool:
        return num_seqs <= self.input_ids.shape[0] and table_width <= self.block_tables.shape[1]

    def load(self, input_ids: torch.Tensor, positions: torch.Tensor, ctx: ForwardContext) -> int:
        """n sequences' decode inputs (device tensors; ``ctx`` the eager step's context, whose slot mapping, block
        tables and context lengths are copied) into rows 0..n → the batch size they are padded to (rows n..size
        padding)."""
        n = input_ids.shape[0]
        size = next(s for s in self.sizes if s >= n)
        self.input_ids[:n].copy_(input_ids)
        self.positions[:n].copy_(positions)
        self.slot_mapping[:n].copy_(ctx.slot_mapping)
        self.slot_mapping[n:size].fill_(-1)
        self.block_tables[:n].zero_()
        self.block_tables[:n, : ctx.block_tables.shape[1]].copy_(ctx.block_tables)
        self.context_lens[:n].copy_(ctx.context_lens_t)
        self.context_lens[n:size].zero_()
        return size

    def forward(self, model: torch.nn.Module, size: int) -> torch.Tensor:
        """The model over rows 0..size: what a graph captures (no host synchronisation in it, which
        ``tests/inference/test_cuda_graph_inputs.py`` checks on the CPU) → hidden states [size, hidden]."""
        with forward_context(self.context(size)):
            return model(self.input_ids[:size], self.positions[:size])


class DecodeGraphs:
    def __init__(self, model: torch.nn.Module, max_num_seqs: int, max_blocks: int, block_size: int, device):
        self.model = model
        self.inputs = DecodeInputs(max_num_seqs, max_blocks, block_size, device)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.replays = 0  # decode steps served by a graph (the GPU tests check that steps do replay)
        pool = torch.cuda.graph_pool_handle()
        for size in reversed(self.sizes):  # largest first: the smaller ones reuse its memory
            self.graphs[size] = self._capture(size, pool)
        log.info("captured decode CUDA graphs for batch sizes %s", self.sizes)

    @property
    def sizes(self) -> list[int]:
        return self.inputs.sizes

    @torch.inference_mode()
    def _capture(self, size: int, pool) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm up: Triton compiles here
            for _ in range(2):
                self.inputs.forward(self.model, size)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            hidden = self.inputs.forward(self.model, size)
        return graph, hidden

    def fits(self, num_seqs: int, table_width: int) -> bool:
        return self.inputs.fits(num_seqs, table_width)

    @torch.inference_mode()
    def run(self, input_ids: torch.Tensor, positions: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        """One decode step of n sequences (device tensors, ``ctx`` their eager context) → hidden states [n, hidden]."""
        size = self.inputs.load(input_ids, positions, ctx)
        graph, hidden = self.graphs[size]
        graph.replay()
        self.replays += 1
        return hidden[: input_ids.shape[0]]
