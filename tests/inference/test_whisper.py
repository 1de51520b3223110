"""Whisper in our code against transformers: the log-mel front end, the model's logits and greedy tokens (a tiny
random checkpoint at both mel sizes, and the packaged Whisper base loaded into transformers by this test's own
conversion of its CTranslate2 file), then real speech: English and German spoken by espeak-ng, transcribed with a
bounded word error rate and the right language, alone or batched with others alike, and across several windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

from inference.audio.features import CHUNK_FRAMES, padded_log_mel, window_at
from inference.engine.output import RequestFailed
from inference.engine.speech_engine import SpeechEngine
from inference.loader.ctranslate2 import read_model_bin
from inference.loader.safetensors import load_model
from inference.speech.transcription import SpeechOptions, Transcription
from tests.support import checkpoints, speech

# measured on this machine at 140 words a minute: English 0.00 and German 0.14 mean word error rate (espeak-ng's
# German is hard on Whisper base); the bounds leave room for a changed espeak-ng voice, not for a broken decoder
MAX_WER = {"en": 0.10, "de": 0.30}


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> dict[str, list[tuple[str, np.ndarray]]]:
    folder = tmp_path_factory.mktemp("speech")
    return {
        language: [
            (text, speech.samples(speech.speak(text, language, folder / f"{language}{i}.wav")))
            for i, text in enumerate(texts)
        ]  # fmt: skip
        for language, texts in (("en", speech.ENGLISH), ("de", speech.GERMAN))
    }


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_features_equal_transformers_feature_extractor(spoken, n_mels):
    extractor = WhisperFeatureExtractor(feature_size=n_mels)
    for _, samples in spoken["en"][:2] + spoken["de"][:1]:
        expected = extractor(samples, sampling_rate=16000, return_tensors="np").input_features[0]
        ours = window_at(padded_log_mel(samples, n_mels), 0).numpy()
        assert ours.shape == (n_mels, CHUNK_FRAMES)
        assert np.abs(ours - expected).max() <= 1e-4


def _transformers_greedy(hf, features: torch.Tensor, prefix: list[int], steps: int) -> tuple[list[int], torch.Tensor]:
    """transformers' greedy tokens after ``prefix`` and its logits over prefix + tokens (float32)."""
    with torch.no_grad():
        encoded = hf.model.encoder(features).last_hidden_state
        ids = torch.tensor([prefix])
        for _ in range(steps):
            ids = torch.cat([ids, hf(encoder_outputs=(encoded,), decoder_input_ids=ids).logits[:, -1:].argmax(-1)], 1)
        return ids[0, len(prefix) :].tolist(), hf(encoder_outputs=(encoded,), decoder_input_ids=ids).logits[0]


def _our_greedy(model, features: torch.Tensor, prefix: list[int], steps: int) -> tuple[list[int], torch.Tensor]:
    state = model.new_state(1)
    model.set_audio(state, model.encode(features))
    logits = [model.decode(torch.tensor([prefix]), state)[0]]
    tokens: list[int] = []
    for _ in range(steps):
        tokens.append(int(logits[-1][-1].argmax()))
        logits.append(model.decode(torch.tensor([[tokens[-1]]]), state)[0])
    return tokens, torch.cat(logits)[: len(prefix) + steps]


@pytest.mark.parametrize("n_mels", [80, 128])
def test_tiny_whisper_logits_and_greedy_tokens_equal_transformers(tmp_path, n_mels):
    path = checkpoints.whisper_checkpoint(tmp_path, n_mels)
    hf = WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    ours = load_model(path)
    noise = torch.randn(2, n_mels, CHUNK_FRAMES, generator=torch.Generator().manual_seed(1))
    # two windows unlike each other in level and spread (cross-attention averages 1500 frames of alike noise away)
    features = torch.stack([noise[0] - 1.0, noise[1] * 3.0 + 1.0])
    answers = []
    for b in range(2):
        expected_tokens, expected_logits = _transformers_greedy(hf, features[b : b + 1], [126, 3, 7], 20)
        tokens, logits = _our_greedy(ours, features[b : b + 1], [126, 3, 7], 20)
        assert tokens == expected_tokens
        torch.testing.assert_close(logits, expected_logits, atol=1e-3, rtol=0)
        answers.append(tokens)
    assert answers[0] != answers[1]  # the audio steers the answer (a random model soon repeats one token)


@pytest.mark.interpreter
def test_tiny_whisper_decoder_on_the_kernels_equals_the_torch_path(tmp_path):
    """The decoder's two attentions and its LayerNorms on the Triton kernels (each row's cache a block of a paged
    cache; the windows a variable-length batch): prefixes of different lengths, then steps of three rows at three
    lengths, the logits of the torch path."""
    from inference.layers.kernel_switch import use_kernels

    # 37 encoder positions: the windows are made up (the encoder's kernels: test_engine_device.py's BERT test)
    model = load_model(checkpoints.whisper_checkpoint(tmp_path, source_positions=37))
    encoded = torch.randn(2, 37, 64, generator=torch.Generator().manual_seed(2))

    def run() -> list[torch.Tensor]:
        state = model.new_state(3)
        model.set_audio(state.view(0, 2), encoded)
        model.set_audio(state.view(2, 3), encoded[1:])
        logits = [model.decode(torch.tensor([prefix]), state.view(r, r + 1), prompt=True)
                  for r, prefix in enumerate([[126, 3, 7], [126, 5], [126]])]  # fmt: skip
        for step in range(3):
            logits.append(model.decode(torch.tensor([[9 + step], [20], [30 + step]]), state))
        return logits

    expected = run()
    assert use_kernels(model) > 0
    for got, want in zip(run(), expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def _transformers_from_ctranslate2(ct2_file) -> WhisperForConditionalGeneration:
    """transformers' Whisper filled straight from the CTranslate2 variables (this test's own mapping)."""
    from transformers import WhisperConfig

    _, v = read_model_bin(ct2_file)

    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(np.array(v[name], dtype=np.float32))

    config = WhisperConfig.from_pretrained(speech.whisper_dir())
    hf = WhisperForConditionalGeneration(config).eval()
    sd = {"model.encoder.conv1.weight": t("encoder/conv1/weight"), "model.encoder.conv1.bias": t("encoder/conv1/bias"),
          "model.encoder.conv2.weight": t("encoder/conv2/weight"), "model.encoder.conv2.bias": t("encoder/conv2/bias"),
          "model.encoder.embed_positions.weight": t("encoder/position_encodings/encodings"),
          "model.decoder.embed_positions.weight": t("decoder/position_encodings/encodings"),
          "model.decoder.embed_tokens.weight": t("decoder/embeddings/weight"),
          "proj_out.weight": t("decoder/embeddings/weight")}  # fmt: skip
    for side in ("encoder", "decoder"):
        sd[f"model.{side}.layer_norm.weight"] = t(f"{side}/layer_norm/gamma")
        sd[f"model.{side}.layer_norm.bias"] = t(f"{side}/layer_norm/beta")
        for i in range(config.encoder_layers if side == "encoder" else config.decoder_layers):
            src, dst = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            blocks = [("self_attention", "self_attn", "self_attn_layer_norm"), ("ffn", None, "final_layer_norm")]
            if side == "decoder":
                blocks.append(("attention", "encoder_attn", "encoder_attn_layer_norm"))
            for block, hf_block, norm in blocks:
                sd[f"{dst}.{norm}.weight"] = t(f"{src}/{block}/layer_norm/gamma")
                sd[f"{dst}.{norm}.bias"] = t(f"{src}/{block}/layer_norm/beta")
                if block == "ffn":
                    for k, name in enumerate(("fc1", "fc2")):
                        sd[f"{dst}.{name}.weight"] = t(f"{src}/ffn/linear_{k}/weight")
                        sd[f"{dst}.{name}.bias"] = t(f"{src}/ffn/linear_{k}/bias")
                    continue
                if block == "attention":  # cross: linear_0 = q, linear_1 = k and v stacked, linear_2 = out
                    projections = [("q",), ("k", "v"), ("out",)]
                else:  # self: linear_0 = q, k and v stacked, linear_1 = out
                    projections = [("q", "k", "v"), ("out",)]
                for k, names in enumerate(projections):
                    weights = t(f"{src}/{block}/linear_{k}/weight").chunk(len(names))
                    biases = t(f"{src}/{block}/linear_{k}/bias").chunk(len(names))
                    for name, weight, bias in zip(names, weights, biases, strict=True):
                        sd[f"{dst}.{hf_block}.{name}_proj.weight"] = weight
                        if name != "k":
                            sd[f"{dst}.{hf_block}.{name}_proj.bias"] = bias
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    assert not unexpected and not missing
    return hf


@pytest.mark.real_model
def test_packaged_whisper_logits_and_greedy_tokens_equal_transformers(spoken):
    from inference import packaged

    model, vocab = speech.whisper()
    hf = _transformers_from_ctranslate2(packaged.whisper_base()[1])
    for language, (text, samples) in (("en", spoken["en"][0]), ("de", spoken["de"][1])):
        features = window_at(padded_log_mel(samples, 80), 0)[None]
        prefix = [vocab.sot, vocab.languages[language], vocab.transcribe, vocab.no_timestamps]
        expected_tokens, expected_logits = _transformers_greedy(hf, features, prefix, 12)
        tokens, logits = _our_greedy(model, features, prefix, 12)
        assert tokens == expected_tokens
        first = " ".join(text.split()[:3])
        assert speech.word_error_rate(first, " ".join(vocab.decode_text(tokens).split()[:3])) == 0
        torch.testing.assert_close(logits, expected_logits, atol=1e-3, rtol=0)


@pytest.mark.real_model
def test_speech_is_transcribed_in_its_detected_language_alone_or_batched(spoken):
    """Every sentence at once (up to 8 rows, 4 windows encoded per step), then each alone: the same text; on the
    model as ``make run`` serves it (int8 decode kernels, bf16 encoder)."""
    model, vocab = speech.served_whisper()
    clips = [(f"{lang}{i}", lang, text, samples) for lang in spoken for i, (text, samples) in enumerate(spoken[lang])]
    engine = SpeechEngine(model, vocab, max_rows=8, max_windows_per_step=4)
    for key, _, _, samples in clips:
        engine.add_request(key, speech.transcription(samples, vocab))
    batched = speech.finish_all(engine)
    rates: dict[str, list[float]] = {"en": [], "de": []}
    for key, language, text, _ in clips:
        assert batched[key].language == language, batched[key].text
        rates[language].append(speech.word_error_rate(text, batched[key].text))
    for language, values in rates.items():
        assert np.mean(values) <= MAX_WER[language], (language, values)
    for key, _, _, samples in clips[::3]:  # alone, some of them
        engine.add_request(key, speech.transcription(samples, vocab))
        assert speech.finish_all(engine)[key].text == batched[key].text


@pytest.mark.real_model
def test_translation_writes_english(spoken):
    model, vocab = speech.whisper()
    engine = SpeechEngine(model, vocab)
    # Greedy decoding of this clip averages a log-probability of -1.035, under Whisper's -1 threshold, so the window
    # is decoded again at temperature 0.2: seeded, or the draw (and which attempt wins) would follow whatever used
    # the global generator before in this process.
    engine.add_request("t", speech.transcription(spoken["de"][1][1], vocab, task="translate", language="de", seed=0))
    text = speech.finish_all(engine)["t"].text.lower()
    # Whisper base's own translation of espeak-ng's German (measured): "I'll be back tomorrow with the train, ..."
    assert "tomorrow" in text and "train" in text, text


@pytest.mark.real_model
def test_a_recording_longer_than_a_window_is_written_window_after_window(spoken):
    """Eleven sentences with a second of silence between them (about 40 s): several windows, segments in order
    within the recording, the text of every sentence; a short recording sent after it is not held behind it."""
    model, vocab = speech.whisper()
    pause = np.zeros(16000, np.float32)
    sentences = [clip for clip in spoken["en"]] * 3
    samples = np.concatenate([part for _, clip in sentences for part in (clip, pause)])
    engine = SpeechEngine(model, vocab, max_rows=1)  # one row: windows take turns, a whole file never blocks
    engine.add_request("long", speech.transcription(samples, vocab, language="en"))
    engine.add_request("short", speech.transcription(spoken["en"][1][1], vocab, language="en"))
    done = speech.finish_all(engine)
    assert list(done) == ["short", "long"]  # finished first
    assert speech.word_error_rate(spoken["en"][1][0], done["short"].text) <= 0.1
    result = done["long"]
    assert len({s.seek for s in result.segments}) >= 2  # more than one window
    ends = [(s.start, s.end) for s in result.segments]
    assert all(a < b for a, b in ends) and all(b1 <= a2 for (_, b1), (a2, _) in zip(ends, ends[1:], strict=False))
    assert ends[-1][1] <= len(samples) / 16000
    reference = " ".join(text for text, _ in sentences)
    assert speech.word_error_rate(reference, result.text) <= 0.15, result.text


class Broken(RuntimeError):
    pass


def _three_clips(spoken):
    """The served Whisper, an engine of 8 rows, three clips and the texts it writes for them (seeded), together."""
    model, vocab = speech.served_whisper()
    clips = {"a": spoken["en"][0][1], "b": spoken["en"][2][1], "c": spoken["de"][0][1]}
    engine = SpeechEngine(model, vocab, max_rows=8, max_windows_per_step=4)
    for key, samples in clips.items():
        engine.add_request(key, speech.transcription(samples, vocab, seed=0))
    return model, vocab, engine, clips, {key: job.text for key, job in speech.finish_all(engine).items()}


def _outcomes(engine: SpeechEngine) -> tuple[dict[str, str], dict[str, Exception]]:
    """Run the engine to the end: ({request: its text}, {request: its error})."""
    done, failed = {}, {}
    while engine.has_work:
        for out in engine.step():
            if isinstance(out, RequestFailed):
                failed[out.request_id] = out.error
            elif out.finish_reason:
                done[out.request_id] = out.transcription.text
    return done, failed


def _broken(*args, **kwargs):
    raise Broken("this request's own part failed")


@pytest.mark.real_model
def test_a_transcription_whose_own_part_fails_fails_alone(spoken):
    """A request's window, its prefix or its window's end raising fails that request (``RequestFailed``): the others
    in the batch get the texts they get without it. The prefix fails in the middle of the rows a step admits, so the
    last of them moves into its place (``_drop``) and must still decode its own audio."""
    model, vocab, engine, clips, expected = _three_clips(spoken)
    broken = {"bad-prefix": "prefix", "bad-window": "window", "bad-end": "finish_window"}
    # the first step admits a, bad-prefix, b (bad-window fails before it is encoded); then c and bad-end
    order = ["a", "bad-prefix", "b", "bad-window", "c", "bad-end"]
    for key in order:
        job = speech.transcription(clips.get(key, clips["a"]), vocab, seed=0)
        if key in broken:
            setattr(job, broken[key], _broken)
        engine.add_request(key, job)
    done, failed = _outcomes(engine)
    assert done == expected
    assert set(failed) == set(broken) and all(isinstance(e, Broken) for e in failed.values())
    assert not engine.rows and not engine.requests and not engine.waiting


@pytest.mark.real_model
def test_a_pass_that_fails_fails_only_the_request_that_fails_it_alone(spoken):
    """The encoder raises on a silent window, and the decoder's step raises on any pass holding the row of request
    "bad" once it has written 5 tokens: the step runs again request by request, only the silent request and "bad"
    fail, and the others get the very texts they get without them."""
    model, vocab, engine, clips, expected = _three_clips(spoken)

    real_encode, real_decode = model.encode, model.decode
    passes = {"encode": 0, "decode": 0}

    def encode(features):
        passes["encode"] += 1
        flat = features.flatten(1)
        if (flat.amax(dim=1) == flat.amin(dim=1)).any():  # a silent window: constant log-mel
            raise Broken("the encoder failed on a silent window")
        return real_encode(features)

    def decode(tokens, state, prompt=False):
        if tokens.shape[1] == 1:
            passes["decode"] += 1
            first = (state.lengths.data_ptr() - engine.state.lengths.data_ptr()) // engine.state.lengths.element_size()
            covered = {row.request_id: row for row in engine.rows[first : first + state.rows]}
            if "bad" in covered and len(covered["bad"].tokens) >= 5:
                raise Broken("the decoder failed on request bad's row")
        return real_decode(tokens, state, prompt=prompt)

    model.encode, model.decode = encode, decode
    try:
        for key in ["a", "silent", "b", "bad", "c"]:
            samples = np.zeros(16000, dtype=np.float32) if key == "silent" else clips.get(key, clips["b"])
            engine.add_request(key, speech.transcription(samples, vocab, seed=0))
        done, failed = _outcomes(engine)
    finally:
        model.encode, model.decode = real_encode, real_decode
    assert done == expected
    assert set(failed) == {"silent", "bad"} and all(isinstance(e, Broken) for e in failed.values())
    assert passes["encode"] >= 5 and passes["decode"] > 0  # each window alone
    assert not engine.rows and not engine.requests and not engine.waiting


def test_a_tiny_positive_temperature_samples_greedily():
    """A temperature of 1e-222 (OpenAI's range is [0, 1]) divided the logits to inf and the softmax to NaN, which
    failed the engine's whole step (every transcription in the batch); below ``GREEDY_BELOW`` it is the argmax."""
    from inference.speech.rules import sample

    logits = torch.tensor([[-float("inf"), 2.0, 5.0, 1.0], [3.0, -float("inf"), 0.5, 2.9]])
    generators = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    tokens, logprobs = sample(logits.clone(), [1.35e-222, 1e-6], generators)
    assert tokens == [2, 0]
    assert logprobs == pytest.approx(torch.log_softmax(logits, -1)[[0, 1], [2, 0]].tolist())
    tokens, _ = sample(logits.clone(), [1e-3, 0.0], generators)  # small, but sampled: the top token all the same
    assert tokens == [2, 0]


@pytest.mark.real_model
def test_each_token_carries_the_log_probability_it_was_sampled_with(spoken):
    """A window's tokens, split into segments, keep each its own log-probability: the first segment's equal those
    of the ruled distribution the same tokens get when the decoder reads them at once (teacher forcing), and the
    window's average log-probability (the fallback's test) is theirs too when it is one segment."""
    from inference.speech.rules import apply_rules

    model, vocab = speech.whisper()
    text, samples = spoken["en"][0]
    engine = SpeechEngine(model, vocab, max_rows=2)
    engine.add_request("a", speech.transcription(samples, vocab, language="en"))
    job = speech.finish_all(engine)["a"]
    first = job.segments[0]
    assert first.seek == 0 and len(first.logprobs) == len(first.tokens) > 3
    prefix, _ = Transcription(job.features, job.samples, vocab, SpeechOptions(language="en")).prefix()
    state = model.new_state(1)
    with torch.no_grad():
        model.set_audio(state, model.encode(window_at(job.features, 0)[None]))
        logits = model.decode(torch.tensor([prefix + first.tokens]), state)[0, len(prefix) - 1 : -1]  # [n, V]
    expected = [
        float(torch.log_softmax(apply_rules(logits[i : i + 1].clone(), [first.tokens[:i]], vocab), dim=-1)[0, t])
        for i, t in enumerate(first.tokens)
    ]  # fmt: skip
    assert first.logprobs == pytest.approx(expected, abs=1e-3)
    assert all(lp <= 0 for lp in first.logprobs)
    if len(job.segments) == 1:
        assert first.avg_logprob == pytest.approx(sum(first.logprobs) / (len(first.tokens) + 1), abs=1e-6)
