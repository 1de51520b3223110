"""VITS text to speech (``inference/models/vits.py``) against transformers' ``VitsModel`` on random-weight
checkpoints: the same waveform (fp32, within 1e-3; the same length, so the same durations) with the noise drawn
from the same seed, with either duration predictor, several speakers and another speaking rate; weight norm
loaded under either of its names; the tokenizer's ids as ``VitsTokenizer``'s; the text's pieces; and the engine,
whose answers do not depend on the other requests it speaks beside."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from inference.engine.synthesis_engine import PAUSE_SECONDS, SynthesisEngine, Utterance
from inference.env import ConfigError
from inference.loader.safetensors import load_model
from inference.synthesis.characters import CharacterTokenizer
from inference.synthesis.pieces import pieces
from tests.support.vits import vits_checkpoint

IDS = [0, 8, 0, 5, 0, 12, 0, 12, 0, 15, 0, 27, 0, 23, 0, 15, 0, 18, 0, 12, 0, 4, 0]  # "hello world", blanks between


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("vits")
    return {
        "stochastic": vits_checkpoint(root / "stochastic"),
        "regression": vits_checkpoint(root / "regression", stochastic=False, seed=1),
        "speakers": vits_checkpoint(root / "speakers", speakers=3, seed=2),
    }


def reference(directory, ids, seed, speaker=None, rate=None):
    from transformers import VitsModel

    hf = VitsModel.from_pretrained(directory).eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        return hf(torch.tensor([ids]), speaker_id=speaker, speaking_rate=rate).waveform[0]


@pytest.mark.parametrize("name", ["stochastic", "regression", "speakers"])
def test_waveforms_equal_transformers_with_the_same_noise(checkpoints, name):
    ours = load_model(checkpoints[name])
    first = 0 if name == "speakers" else None  # transformers leaves a speaker out where none is named; we never do
    cases = [(0, first, None), (7, first, 1.7)] + ([(3, 2, None), (4, 1, 0.6)] if name == "speakers" else [])
    for seed, speaker, rate in cases:
        expected = reference(checkpoints[name], IDS, seed, speaker, rate)
        got = ours.synthesize(IDS, speaker or 0, rate, torch.Generator().manual_seed(seed))
        assert got.shape == expected.shape, (name, seed)  # the same durations, frame for frame
        assert got.dtype == torch.float32 and got.abs().max() > 0.01
        assert (got - expected).abs().max().item() < 1e-3, (name, seed)


def test_weight_norm_loads_under_its_older_names(checkpoints, tmp_path):
    """Checkpoints saved before PyTorch's parametrizations (MMS-TTS on the Hub) name the halves weight_g/weight_v."""
    source = checkpoints["stochastic"]
    tensors = load_file(source / "model.safetensors")
    renamed = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                                 "weight_v"): v
               for k, v in tensors.items()}  # fmt: skip
    assert any(k.endswith("weight_g") for k in renamed)
    for name in ("config.json", "vocab.json", "tokenizer_config.json"):
        (tmp_path / name).write_text((source / name).read_text())
    save_file(renamed, tmp_path / "model.safetensors")
    a = load_model(source).synthesize(IDS, generator=torch.Generator().manual_seed(1))
    b = load_model(tmp_path).synthesize(IDS, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    del renamed[next(k for k in renamed if k.endswith("weight_v"))]
    save_file(renamed, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="weight norm without both halves"):
        load_model(tmp_path)


TEXTS = ["Hello, World!", "It's a dog-eat-dog world...", "  spaces   and\ttabs ", "Ünïcode café", "?!"]
# numbers, and what transformers' tokenizer reads where they are said in words (it drops digits the vocabulary lacks)
NUMBERS = {
    "Meet at 3 pm on May 5th, room 101.": "Meet at three pm on May fifth, room one hundred and one.",
    "Pi is 3.14; it costs 1,200 dollars.": "Pi is three point one four; it costs one thousand, two hundred dollars.",
    "Call 1234567890123456": "Call one two three four five six seven eight nine zero one two three four five six",
}


@pytest.mark.parametrize("blank", [True, False])
def test_ids_equal_vits_tokenizer_s(checkpoints, tmp_path, blank):
    from transformers import VitsTokenizer

    directory = vits_checkpoint(tmp_path / "t", tokenizer={"add_blank": blank})
    theirs = VitsTokenizer.from_pretrained(directory)
    ours = CharacterTokenizer.from_dir(directory)
    for text in TEXTS:
        assert ours.encode(text) == theirs(text)["input_ids"], text
    for text, said in NUMBERS.items():  # numbers said in words first (the checkpoint's language: English)
        assert ours.encode(text) == theirs(said)["input_ids"], text
        assert theirs(text)["input_ids"] != theirs(said)["input_ids"]  # transformers' own drops the digits


def test_a_uroman_voice_reads_other_scripts_romanized_as_transformers_does(tmp_path):
    """``is_uroman`` (MMS-TTS's voices for Hindi, Korean, Arabic, Russian, ...): the text romanized by uroman, then
    stripped to the characters; transformers' ``VitsTokenizer`` romanizes the same way when uroman is installed."""
    from transformers import VitsTokenizer

    directory = vits_checkpoint(tmp_path / "r", tokenizer={"is_uroman": True, "language": "hin"})
    ours, theirs = CharacterTokenizer.from_dir(directory), VitsTokenizer.from_pretrained(directory)
    for text in ("Привет, мир", "नमस्ते दुनिया", "안녕하세요", "مرحبا بالعالم", "Ελλάδα", "Straße café", "plain latin"):
        assert ours.encode(text) == theirs(text)["input_ids"], text
    assert ours.characters("Привет, мир") == "privet mir" and ours.characters("नमस्ते") == "namaste"
    plain = CharacterTokenizer.from_dir(vits_checkpoint(tmp_path / "p", tokenizer={"language": "hin"}))
    assert plain.characters("नमस्ते") == ""  # a voice that is not uroman's reads its own characters only


def test_a_phonemizing_voice_is_refused(tmp_path):
    phonemes = vits_checkpoint(tmp_path / "p", tokenizer={"phonemize": True})
    with pytest.raises(ConfigError, match="phonemize"):
        CharacterTokenizer.from_dir(phonemes)
    (tmp_path / "p" / "vocab.json").unlink()
    with pytest.raises(ConfigError, match="vocab.json"):
        CharacterTokenizer.from_dir(tmp_path / "p")


def test_text_is_cut_at_sentences_and_long_ones_at_a_space():
    assert pieces("Hello there.  How are you?\n\nFine; thanks") == ["Hello there.", "How are you?", "Fine; thanks"]
    assert pieces("Wait... what?! Yes. 3.5 apples") == ["Wait...", "what?!", "Yes.", "3.5 apples"]
    # periods that end no sentence: a day's number, a title, one before a word in lower case
    assert pieces("Wir sehen uns am 3. Mai. Gut.") == ["Wir sehen uns am 3. Mai.", "Gut."]
    assert pieces("Dr. Smith came at 5 p.m. today. Born in 1999. OK") == [
        "Dr. Smith came at 5 p.m. today.", "Born in 1999.", "OK"
    ]  # fmt: skip
    long = " ".join(f"w{i:03d}" for i in range(100))  # 499 characters, no sentence end
    cut = pieces(long, most=50)
    assert all(len(p) <= 50 for p in cut) and " ".join(cut) == long
    assert pieces("x" * 120, most=50) == ["x" * 50, "x" * 50, "x" * 20]  # one word longer than a piece
    assert pieces(" \n\n ") == []


def test_a_spectrogram_vocoded_a_stretch_at_a_time_is_the_whole_waveform(checkpoints):
    """Each stretch with ``decoder.reach`` frames of context each side, as the engine vocodes: the same samples as
    one pass over the whole (to float rounding; without the context, stretches are audibly apart at their joins)."""
    model = load_model(checkpoints["speakers"])
    latents, voice = model.spectrogram(IDS * 4, 2, None, torch.Generator().manual_seed(0))
    frames = latents.shape[-1]
    assert frames > 100
    whole = model.vocode(latents, voice)
    assert torch.equal(whole, model.synthesize(IDS * 4, 2, None, torch.Generator().manual_seed(0)))
    for size in (7, 33, 64):
        stretches = torch.cat([model.vocode(latents, voice, s, s + size) for s in range(0, frames, size)])
        assert stretches.shape == whole.shape and (stretches - whole).abs().max().item() < 1e-4, size
    reach, model.decoder.reach = model.decoder.reach, 1
    cut = torch.cat([model.vocode(latents, voice, s, s + 33) for s in range(0, frames, 33)])
    assert (cut - whole).abs().max().item() > 1e-3 and reach > 1


def _speak(engine: SynthesisEngine, requests: dict[str, Utterance]) -> tuple[dict[str, torch.Tensor], list[str]]:
    for request_id, utterance in requests.items():
        engine.add_request(request_id, utterance)
    audio, order = {r: [] for r in requests}, []
    while engine.has_work:
        for out in engine.step():
            audio[out.request_id].append(torch.from_numpy(out.samples))
            order.append(out.request_id)
    return {r: torch.cat(parts) for r, parts in audio.items()}, order


def test_a_request_sounds_the_same_alone_or_beside_others_and_requests_take_turns(checkpoints):
    model = load_model(checkpoints["speakers"])
    tokenizer = CharacterTokenizer.from_dir(checkpoints["speakers"])
    texts = {"a": "A first sentence. And a second one.", "b": "Short.", "c": "One. Two. Three."}

    def utterance(request_id: str, seed: int) -> Utterance:
        ids = [tokenizer.encode(p) for p in pieces(texts[request_id])]
        return Utterance(ids, speaker=seed % 3, speaking_rate=1.0, generator=torch.Generator().manual_seed(seed))

    alone = {r: _speak(SynthesisEngine(model), {r: utterance(r, i)})[0][r] for i, r in enumerate(texts)}
    together, order = _speak(SynthesisEngine(model), {r: utterance(r, i) for i, r in enumerate(texts)})
    for r in texts:
        assert torch.equal(alone[r], together[r]), r
    # a stretch each in turn: nobody takes two steps running while another waits
    assert order[:3] == ["a", "b", "c"] and len(order) > 6
    alone_steps = {r: len(_speak(SynthesisEngine(model), {r: utterance(r, i)})[1]) for i, r in enumerate(texts)}
    assert {r: order.count(r) for r in texts} == alone_steps
    for i, request in enumerate(order[:-1]):
        still = {r for r in texts if r in order[i + 1 :]}
        assert request != order[i + 1] or still == {request}, order
    # a pause after each piece but the last
    first_piece = model.synthesize(tokenizer.encode("A first sentence."), 0, 1.0, torch.Generator().manual_seed(0))
    pause = together["a"][len(first_piece) : len(first_piece) + round(PAUSE_SECONDS * 16000)]
    assert len(pause) == round(PAUSE_SECONDS * 16000) and not pause.any()
    assert together["a"][len(first_piece) - 1] != 0  # the piece's own last sample comes before it


def test_a_failing_piece_fails_its_request_alone(checkpoints):
    model = load_model(checkpoints["stochastic"])
    engine = SynthesisEngine(model)
    engine.add_request("bad", Utterance([[0, 999, 0]]))  # an id past the vocabulary: the embedding raises
    engine.add_request("good", Utterance([IDS], generator=torch.Generator().manual_seed(0)))
    outputs = []
    while engine.has_work:
        outputs += engine.step()
    assert outputs[0].request_id == "bad" and outputs[0].finish_reason == "error"
    assert {o.request_id for o in outputs[1:]} == {"good"} and outputs[-1].finish_reason == "stop"
    assert not engine.requests
    with pytest.raises(ValueError):
        engine.add_request("empty", Utterance([[]]))


def test_the_config_refuses_what_it_cannot_run(checkpoints, tmp_path):
    from inference.models.config import ConfigError
    from inference.models.vits_config import VitsConfig

    hf = json.loads((checkpoints["stochastic"] / "config.json").read_text())
    VitsConfig.from_hf(hf)
    with pytest.raises(ConfigError, match="flow_size"):
        VitsConfig.from_hf({**hf, "flow_size": 7})
    with pytest.raises(ConfigError, match="speaker_embedding_size"):
        VitsConfig.from_hf({**hf, "num_speakers": 4, "speaker_embedding_size": 0})
    with pytest.raises(ConfigError, match="vocab_size"):
        VitsConfig.from_hf({k: v for k, v in hf.items() if k != "vocab_size"})


def test_numbers_are_said_in_the_voices_language_where_it_reads_no_digits(tmp_path):
    from inference.synthesis.numbers import LANGUAGES, spoken_numbers

    assert spoken_numbers("es kostet 1.200,50 Euro", "deu") == "es kostet eintausendzweihundert Komma fünf Euro"
    assert spoken_numbers("il y a 21 ans", "fra") == "il y a vingt et un ans"
    assert spoken_numbers("v2 and 7", "eng") == "v2 and seven"  # a number inside a word stays as written
    assert spoken_numbers("room 5", "xyz") == "room 5" and spoken_numbers("room 5", None) == "room 5"
    # money, before or after its amount; English years, decades and days
    assert spoken_numbers("$5.50 or $1,200 or 3 €", "eng") == (
        "five dollars, fifty cents or one thousand, two hundred dollars or three euro"
    )
    assert (
        spoken_numbers("kostet 1.200,50 € oder 1€", "deu")
        == "kostet eintausendzweihundert Euro und fünfzig Cent oder ein Euro"
    )
    assert spoken_numbers("costs $5", "swe") == "costs $ fem"  # no dollars in num2words' Swedish: the number alone
    assert spoken_numbers("a 5s wait; may 5 people", "eng") == "a 5s wait; may five people"  # no decade, no date
    assert spoken_numbers("In 1999, the 1990s, May 5, 2024; 1999 apples", "eng") == (
        "In nineteen ninety-nine, the nineteen nineties, May fifth, twenty twenty-four; "
        "one thousand, nine hundred and ninety-nine apples"
    )
    assert spoken_numbers("im Jahr 1999, am 3. Mai 1999, der 21. Juni; 1999 Äpfel", "deu") == (
        "im Jahr neunzehnhundertneunundneunzig, am dritten Mai neunzehnhundertneunundneunzig, "
        "der einundzwanzigste Juni; eintausendneunhundertneunundneunzig Äpfel"
    )
    assert spoken_numbers("sinds 1999", "nld") == "sinds negentien honderd negenennegentig"
    # other scripts, with their own marks; Korean's counters follow the number unspaced
    assert spoken_numbers("стоит 1 200,5 рублей", "rus") == "стоит одна тысяча двести целых пять десятых рублей"
    assert spoken_numbers("사과 3.5개와 1,200원", "kor") == "사과 삼 점 오개와 천이백원"
    odd = ["999999999999999", "$999999999999999.99", "999 999 999 999 999", "1,999.5", "€0", "1990s", "am 3. Mai"]
    for language in LANGUAGES:  # what num2words cannot say in a language is said another way, never an error
        assert all(isinstance(spoken_numbers(text, language), str) for text in odd), language
    russian = vits_checkpoint(tmp_path / "ru", tokenizer={"language": "rus", "is_uroman": True})
    assert CharacterTokenizer.from_dir(russian).characters("Мне 25 лет") == "mne dvadtsat pyat let"
    digits = vits_checkpoint(tmp_path / "d", tokenizer={"language": "eng"})
    vocab = json.loads((digits / "vocab.json").read_text())
    (digits / "vocab.json").write_text(json.dumps({**vocab, "5": len(vocab)}))  # a voice that reads digits
    assert CharacterTokenizer.from_dir(digits).characters("room 5") == "room 5"
