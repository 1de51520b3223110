"""Speech-to-text on this CPU: our Whisper (inference/engine/speech_engine.py) against faster-whisper
(CTranslate2) on the same weights (the packaged Whisper base) and the same files, in the same run, alternating.

    python3 -m venv /root/fw-venv && /root/fw-venv/bin/pip install faster-whisper   # the peer, optional
    .venv/bin/python benchmarks/bench_audio.py [--rounds 3] [--faster-whisper /root/fw-venv/bin/python] [--words]

Files: English sentences spoken by espeak-ng (tests/support/speech.py), joined with a second of silence into
recordings of about 40 s. Two measures, each a median over the rounds:
- batch 1: one recording alone; its real-time factor (seconds of compute per second of audio, lower is better);
- 4 at once: four recordings submitted together; audio seconds written per wall-clock second (higher is better).
Weights: ours as the service serves them (``--quantize``: auto, what ``make run`` serves: the decoder's steps on
int4x2 kernels, its head int4 with the top 1024 logits exact, the encoder and window prefixes on bf16 copies; int8;
none: float32) and faster-whisper's ``compute_type`` (int8, float32).
Both sides: greedy first (faster-whisper ``beam_size=1``, ``best_of=1``), the same temperature fallback and
thresholds, the previous text as prompt, timestamps, language detected, no VAD. Each side's time
includes decoding the file and its features. Word error rates against the spoken text are printed for both.
faster-whisper takes 4 files at once as 4 threads on one model (``num_workers=4``). ``--words``: both sides
with word timestamps (the cost of the alignment pass per window).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference import packaged  # noqa: E402
from inference.audio.decode import SAMPLE_RATE, decode_audio  # noqa: E402
from inference.audio.features import padded_log_mel  # noqa: E402
from inference.engine.speech_engine import SpeechEngine  # noqa: E402
from inference.loader.safetensors import load_model  # noqa: E402
from inference.loader.sources import resolve_source  # noqa: E402
from inference.speech.transcription import SpeechOptions, Transcription  # noqa: E402
from inference.speech.vocab import WhisperVocab  # noqa: E402
from inference.weights.quantize import quantize  # noqa: E402
from tests.support import speech  # noqa: E402

SENTENCES = [
    *speech.ENGLISH,
    "A cup of coffee in the morning helps me to start the day.",
    "The museum opens at ten and closes at six in the evening.",
    "We walked along the river until the sun went down.",
    "My brother is learning to play the piano this year.",
]

PEER = textwrap.dedent(
    """
    import json, sys, time
    from concurrent.futures import ThreadPoolExecutor
    from faster_whisper import WhisperModel
    model = WhisperModel(sys.argv[1], device="cpu", compute_type=sys.argv[3], cpu_threads=int(sys.argv[2]),
                         num_workers=4)
    words = sys.argv[4] == "words"
    def run(path):
        segments, info = model.transcribe(path, beam_size=1, best_of=1, vad_filter=False,
                                          condition_on_previous_text=True, word_timestamps=words)
        return "".join(s.text for s in segments).strip()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        paths = json.loads(line)
        start = time.perf_counter()
        with ThreadPoolExecutor(len(paths)) as pool:
            texts = list(pool.map(run, paths))
        print(json.dumps({"seconds": time.perf_counter() - start, "texts": texts}), flush=True)
    """
)


def recordings(folder: Path, count: int) -> list[tuple[Path, str, float]]:
    """``count`` wav files of about 40 s (the sentences in a different order each): (path, text, seconds)."""
    clips = [(text, speech.samples(speech.speak(text, "en", folder / f"s{i}.wav"))) for i, text in enumerate(SENTENCES)]
    pause = np.zeros(SAMPLE_RATE, np.float32)
    out = []
    for r in range(count):
        order = clips[r:] + clips[:r]
        samples = np.concatenate([part for _, clip in order for part in (clip, pause)])
        path = folder / f"recording{r}.flac"
        speech.encode(samples, "flac", path)
        out.append((path, " ".join(text for text, _ in order), len(samples) / SAMPLE_RATE))
    return out


class Ours:
    def __init__(self, mode: str, words: bool) -> None:
        self.words = words
        directory = resolve_source("packaged:whisper-base")
        self.model = load_model(directory)
        if mode != "none":  # as the service builds it (inference/server/registry.py)
            quantize(self.model, mode)
        self.vocab = WhisperVocab.from_dir(directory)
        self.engine = SpeechEngine(self.model, self.vocab, max_rows=8, max_windows_per_step=4)

    def run(self, paths: list[Path]) -> tuple[float, list[str]]:
        start = time.perf_counter()
        for i, path in enumerate(paths):
            samples = decode_audio(path.read_bytes(), max_seconds=3600)
            features = padded_log_mel(samples, self.model.config.num_mel_bins)
            job = Transcription(features, len(samples), self.vocab, SpeechOptions(word_timestamps=self.words))
            self.engine.add_request(str(i), job)
        texts: dict[str, str] = {}
        while self.engine.has_work:
            for out in self.engine.step():
                if out.finish_reason:
                    texts[out.request_id] = out.transcription.text
        return time.perf_counter() - start, [texts[str(i)] for i in range(len(paths))]


class Peer:
    def __init__(self, python: str, threads: int, folder: Path, compute_type: str, words: bool) -> None:
        script = folder / "faster_whisper_worker.py"
        script.write_text(PEER)
        ct2_dir, model_bin = packaged.whisper_base()
        model_dir = folder / "ct2"  # faster-whisper wants model.bin beside the config and tokenizer
        if not model_dir.exists():
            model_dir.mkdir()
            for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
                (model_dir / name).symlink_to(ct2_dir / name)
            (model_dir / "model.bin").symlink_to(model_bin)
        command = [python, str(script), str(model_dir), str(threads), compute_type, "words" if words else "-"]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        json.loads(self.process.stdout.readline())

    def run(self, paths: list[Path]) -> tuple[float, list[str]]:
        self.process.stdin.write(json.dumps([str(p) for p in paths]) + "\n")
        self.process.stdin.flush()
        reply = json.loads(self.process.stdout.readline())
        return reply["seconds"], reply["texts"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--faster-whisper", help="the python of a venv with faster-whisper (the peer)")
    parser.add_argument("--quantize", default="auto,none", help="our weight modes (auto: what make run serves)")
    parser.add_argument("--compute-types", default="int8,float32", help="faster-whisper's compute types")
    parser.add_argument("--words", action="store_true", help="word timestamps on both sides")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    folder = Path(tempfile.mkdtemp(prefix="bench-audio-"))
    files = recordings(folder, 4)
    sides: dict[str, Ours | Peer] = {f"ours {mode}": Ours(mode, args.words) for mode in args.quantize.split(",")}
    if args.faster_whisper:
        for kind in args.compute_types.split(","):
            sides[f"faster-whisper {kind}"] = Peer(args.faster_whisper, threads, folder, kind, args.words)
    results: dict[tuple[str, str], list[float]] = {}
    errors: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for workload, chosen in (("batch 1", files[:1]), ("4 at once", files)):
            for name, side in sides.items():  # alternating: ours, the peer, ours, ...
                seconds, texts = side.run([path for path, _, _ in chosen])
                audio = sum(length for _, _, length in chosen)
                results.setdefault((name, workload), []).append(
                    seconds / audio if workload == "batch 1" else audio / seconds
                )
                for (_, text, _), hyp in zip(chosen, texts, strict=True):
                    errors.setdefault(name, []).append(speech.word_error_rate(text, hyp))
    words = ", word timestamps" if args.words else ""
    print(f"{len(files)} recordings of {files[0][2]:.1f} s, {args.rounds} rounds, {threads} threads{words}")
    print(f"{'':24} {'RTF, batch 1':>14} {'audio s/s, 4 at once':>22} {'WER':>6}")
    for name in sides:
        rtf = statistics.median(results[(name, "batch 1")])
        throughput = statistics.median(results[(name, "4 at once")])
        print(f"{name:24} {rtf:14.3f} {throughput:22.1f} {statistics.mean(errors[name]):6.3f}")
    print("reproduce: .venv/bin/python benchmarks/bench_audio.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
