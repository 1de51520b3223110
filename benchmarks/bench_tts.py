"""What text to speech costs on this CPU: our VITS (``inference/models/vits.py``: weight norm folded at load, one
sentence a pass as the synthesis engine speaks them) against transformers' ``VitsModel`` (the peer: its forward
as its documentation calls it, weight norm recomputed from its parametrizations on every call) on the same weights,
the same sentences and the same noise (checked: the same audio within 1e-3); and ours as the service runs it (the
synthesis engine: a stretch of ``VOCODER_FRAMES`` spectrogram frames a step, each with its vocoder context, and a
pause between sentences).

The weights are random, in the shape of Meta's MMS-TTS English voice (transformers' ``VitsConfig`` defaults: 6
layers of 192, a 4-flow prior, HiFi-GAN 512 channels upsampling 256x, 16 kHz). The text is ``--sentences``
sentences of about 60 characters; the audio's length is what the random durations make it (about the same order
as speech). Ours and the peer's alternate, ``--rounds`` each; medians in seconds for the whole text, and the real
time factor (seconds of audio made per second of compute). Then the encoding of that audio in each format (PyAV,
``inference/audio/encode.py``), in ms per second of audio.

    .venv/bin/python benchmarks/bench_tts.py [--rounds 5] [--sentences 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SENTENCE = "the quick brown fox jumps over the lazy dog near the river bank"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sentences", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import numpy as np
    import torch
    from transformers import VitsConfig, VitsModel

    from inference.audio.encode import FORMATS, AudioEncoder
    from inference.engine.synthesis_engine import VOCODER_FRAMES, SynthesisEngine, Utterance
    from inference.loader.safetensors import load_model
    from inference.synthesis.characters import CharacterTokenizer

    torch.set_num_threads(args.threads)
    directory = Path(tempfile.mkdtemp(prefix="bench-tts-"))
    torch.manual_seed(0)
    letters = "abcdefghijklmnopqrstuvwxyz '"
    vocab = {"<pad>": 0, **{c: i + 1 for i, c in enumerate(letters)}}
    VitsModel(VitsConfig(vocab_size=len(vocab))).eval().save_pretrained(directory)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "tokenizer_config.json").write_text(json.dumps({"phonemize": False, "add_blank": True}))
    peer = VitsModel.from_pretrained(directory).eval()
    ours = load_model(directory)
    tokenizer = CharacterTokenizer.from_dir(directory)
    pieces = [tokenizer.encode(SENTENCE) for _ in range(args.sentences)]
    rate = ours.config.sampling_rate

    def run_ours(seed: int) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        return [ours.synthesize(ids, generator=generator) for ids in pieces]

    first: dict[str, list[float]] = {"ours": [], "served": [], "transformers": []}  # seconds to the first audio

    def run_served(seed: int) -> list[torch.Tensor]:
        """As the service speaks it: the synthesis engine, a stretch of VOCODER_FRAMES frames a step."""
        engine = SynthesisEngine(ours)
        engine.add_request("r", Utterance([list(p) for p in pieces], generator=torch.Generator().manual_seed(seed)))
        out, start = [], time.perf_counter()
        while engine.has_work:
            out += [torch.from_numpy(o.samples) for o in engine.step()]
            if len(out) == 1:
                first["served"].append(time.perf_counter() - start)
        return out

    def run_peer(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        with torch.no_grad():
            return [peer(torch.tensor([ids])).waveform[0] for ids in pieces]

    a, b = run_ours(1), run_peer(1)
    assert all(x.shape == y.shape and (x - y).abs().max() < 1e-3 for x, y in zip(a, b, strict=True))
    seconds_of_audio = sum(len(x) for x in a) / rate
    served = f"ours, served ({VOCODER_FRAMES}-frame stretches, pauses)"
    times: dict[str, list[float]] = {"ours": [], served: [], "transformers": []}
    for r in range(args.rounds):
        for name, run in (("ours", run_ours), (served, run_served), ("transformers", run_peer)):
            start = time.perf_counter()
            run(r)
            times[name].append(time.perf_counter() - start)
    print(f"VITS (MMS-TTS shape, random weights), {args.sentences} sentences of {len(SENTENCE)} characters, "
          f"{seconds_of_audio:.2f} s of audio, {args.threads} threads, {args.rounds} rounds alternating")  # fmt: skip
    # the first audio of a sentence-at-a-time pass is its first sentence's: a pass of the whole first piece
    for _ in range(args.rounds):
        for name, model_call in (("ours", lambda: ours.synthesize(pieces[0], generator=torch.Generator())),
                                 ("transformers", lambda: peer(torch.tensor([pieces[0]])))):  # fmt: skip
            start = time.perf_counter()
            with torch.no_grad():
                model_call()
            first[name].append(time.perf_counter() - start)
    print("| | median s | real time factor | first audio after, s |\n|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        to_first = statistics.median(first["served" if name == served else name])
        print(f"| {name} | {median:.3f} | {seconds_of_audio / median:.1f}x | {to_first:.3f} |")
    audio = torch.cat(a).numpy().astype(np.float32)
    print("\n| format | encode ms per audio second | bytes per audio second |\n|---|---|---|")
    for fmt in FORMATS:
        spent, size = [], 0
        for _ in range(args.rounds):
            start = time.perf_counter()
            encoder = AudioEncoder(fmt, rate)
            size = len(encoder.feed(audio) + encoder.finish())
            spent.append(time.perf_counter() - start)
        print(f"| {fmt} | {statistics.median(spent) / seconds_of_audio * 1000:.1f} | {size / seconds_of_audio:,.0f} |")
    print(f"\ncommand: .venv/bin/python benchmarks/bench_tts.py --rounds {args.rounds} --sentences {args.sentences} "
          f"--threads {args.threads}")  # fmt: skip


if __name__ == "__main__":
    main()
