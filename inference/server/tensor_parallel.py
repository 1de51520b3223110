"""``python -m inference serve --tensor-parallel-size N``: the other N - 1 ranks of the one generative model, as
processes of their own (spawned), each loading its slice and following rank 0's engine
(``inference.engine.parallel_runner``); this process is rank 0 and serves HTTP. NCCL on CUDA (rank r on GPU r),
gloo on the CPU, over a rendezvous on a free loopback port."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from inference.config import ServerConfig

log = logging.getLogger("inference.tensor_parallel")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _join(rank: int, size: int, port: int, cuda: bool) -> None:
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=size)  # fmt: skip


def _rank(rank: int, size: int, port: int, config: ServerConfig) -> None:
    """A rank above 0: its slice of the model, then every step rank 0 sends, until it sends none."""
    from inference.engine.parallel_runner import follow
    from inference.server.registry import build_model

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: rank 0 stops this one in turn
    spec = config.models[0]
    if config.threads:
        torch.set_num_threads(config.threads)
    _join(rank, size, port, spec.engine.resolved_device() == "cuda")
    model, _, _ = build_model(spec, (rank, size))
    steps = follow(model, spec.engine)
    log.info("rank %d: %d steps; done", rank, steps)
    dist.barrier()


class Ranks:
    def __init__(self, size: int, processes: list):
        self.size, self.processes = size, processes
        self.runner = None

    def drive(self, engine) -> None:
        """Rank 0's engine: its runner broadcasts each step to the other ranks."""
        from inference.engine.parallel_runner import TensorParallelRunner

        engine.runner = self.runner = TensorParallelRunner(engine.runner)

    def stop(self) -> None:
        if self.runner is not None:
            try:
                self.runner.stop()
                dist.barrier()
            except RuntimeError as exc:  # a rank already gone (killed): nothing left to release
                log.warning("tensor parallelism: a rank ended first: %s", exc)
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()

    def watch(self, engines, engines_done: threading.Event, grace: float = 10.0) -> threading.Thread:
        """Rank 0 watches the other ranks' processes: one that dies (killed, out of memory, a failure of its own)
        leaves rank 0 waiting in its next collective, which fails at once on gloo but only after the process
        group's timeout on NCCL, and nothing would tell until then. So a rank gone breaks the engines
        (``EngineBroken``: requests answered 503, ``/health`` 503, the service exits 1 to be restarted), and if
        the engines' thread is stuck in a collective past ``grace`` s, the process exits (1) at once."""
        from inference.engine.quarantine import EngineBroken

        def run() -> None:
            while not engines.stopped:
                gone = next(((r, p) for r, p in enumerate(self.processes, 1) if not p.is_alive()), None)
                if gone is None:
                    time.sleep(0.25)
                    continue
                rank, process = gone
                log.critical("tensor parallelism: rank %d exited (code %s); the service stops", rank,
                             process.exitcode)  # fmt: skip
                if engines.broken is None:
                    engines.broken = EngineBroken(f"rank {rank} exited (code {process.exitcode})")
                engines.stop()
                if not engines_done.wait(grace):
                    print(f"inference service: rank {rank} exited and the engines are stuck in a collective; "
                          "exiting to be restarted", flush=True)  # fmt: skip
                    os._exit(1)
                return

        thread = threading.Thread(target=run, name="ranks-watch", daemon=True)
        thread.start()
        return thread


def start_ranks(config: ServerConfig) -> Ranks:
    size, port = config.tensor_parallel_size, _free_port()
    cuda = config.models[0].engine.resolved_device() == "cuda"
    if cuda and torch.cuda.device_count() < size:
        from inference.errors import ConfigError

        raise ConfigError(
            f"--tensor-parallel-size {size} needs {size} GPUs; this machine has {torch.cuda.device_count()}"
        )
    context = mp.get_context("spawn")
    processes = [context.Process(target=_rank, args=(r, size, port, config), daemon=True) for r in range(1, size)]
    for process in processes:
        process.start()
    _join(0, size, port, cuda)
    log.info("tensor parallelism: %d ranks (%s)", size, "nccl" if cuda else "gloo")
    return Ranks(size, processes)
