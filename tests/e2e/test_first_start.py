"""The README's run command (`make run`) on the embedded default, started as a user starts it, twice on one
data directory: the first start converts the models, syncs the catalog, sets up a demo and prints the key once
(and a transcription example, which transcribes speech through the hub);
Ctrl-C stops the hub and its inference service and leaves nothing listening; the second start keeps every
tenant, key, limit and usage row, prints no key, and the old key chats again. A port already taken gets one
line naming it and the variable that moves it."""

import io
import os
import re
import signal
import socket
import subprocess
import time
from contextlib import redirect_stdout

import httpx
import pytest
from openai import OpenAI

from tests.support import ROOT, speech
from tests.support.hub import start_hub, stop_hub
from tests.support.processes import free_port
from tests.support.webhooks import receiver

pytestmark = [pytest.mark.real_model, pytest.mark.live]

MAKE_RUN = ["make", "--no-print-directory", "run"]
CHAT = "smollm2-135m-instruct"
WHISPER = "whisper-base"
EMBED = "all-minilm-l6-v2"


def test_make_run_twice_on_one_data_directory(tmp_path):
    # The embedded default: no database or Redis URL, a fresh data directory.
    inference_url = f"http://127.0.0.1:{free_port()}/v1"
    env = {
        "HUB_DATA_DIR": str(tmp_path), "HUB_DATABASE_URL": "", "HUB_REDIS_URL": "", "HUB_ADMIN_PASSWORD": "",
        "HUB_INFERENCE_URL": inference_url, "HUB_INFERENCE_ARGS": "",
    }  # fmt: skip
    port = free_port()
    process, url = start_hub(env, command=MAKE_RUN, port=port, timeout=900)
    try:
        first_output = process.output()
        secret = client_check(url, first_output, inference_url)
        client = OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
        assert chat(client)
        assert in_background(client)
        transcribe(client, first_output, tmp_path)
        assert vector_store(client) == "eiffel.txt"
        prefix = secret[: len("sk-hub-") + 8]
        manage(env, "set_limits", prefix, "--rpm", "1000")  # an operator's change, kept across the restart
    finally:
        first_output = ctrl_c(process)
    assert nothing_listens(port) and nothing_listens(inference_port(inference_url)), first_output

    # The operator restarts with the chat model only: the others are disabled, not deleted.
    second_env = {**env, "HUB_INFERENCE_ARGS": f"--model {CHAT}=packaged:smollm2:chat"}
    process, url = start_hub(second_env, command=MAKE_RUN, port=port, timeout=600)
    try:
        client = OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)  # the old key
        answer = client.chat.completions.with_raw_response.create(
            model=CHAT, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4, temperature=0
        )
        assert answer.parse().choices[0].message.content
        assert len(stored_ids(client, {"run": "first"})) == 1  # the stored completion, kept across the restart
        assert answer.headers["x-ratelimit-limit-requests"] == "1000"
        assert [m.id for m in client.models.list().data] == [CHAT]
        usage = httpx.get(f"{url}/v1/usage", params={"group_by": "model"}, headers=bearer(secret)).json()
        requests = {r["model"]: r["num_model_requests"] for b in usage["data"] for r in b["results"]}
        # the first run's calls are still metered, beside this one (the vector store's indexing and search)
        assert requests == {CHAT: 4, WHISPER: 1, EMBED: 3}  # a chat, two background responses, this chat

        # A second hub on the same port, and one whose inference port is taken: one line each, no traceback.
        taken = run_to_exit(env, port)
        assert f"port {port}" in taken and "HUB_PORT" in taken and "Traceback" not in taken, taken
        taken = run_to_exit(env, free_port())
        assert f"port {inference_port(inference_url)}" in taken and "HUB_INFERENCE_URL" in taken, taken
        assert "Traceback" not in taken
    finally:
        second_output = ctrl_c(process)
    assert nothing_listens(port) and nothing_listens(inference_port(inference_url)), second_output

    assert "sk-hub-" not in second_output  # shown once, never again
    # the banner names each model with its load time; the restart memory-maps the prepared weights
    assert re.search(r"inference service ready in [\d.]+ s: .*smollm2-135m-instruct \([\d.]+ s\)", second_output)
    assert "Traceback" not in first_output + second_output, first_output + second_output
    assert " succeeded in " not in first_output  # the beat's tasks do not fill the log (webhooks every 5 s)
    assert (tmp_path / "db.sqlite3").exists()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def chat(client: OpenAI) -> str:
    """A stored chat completion, found again by its metadata as the OpenAI SDK filters (``metadata[key]=value``,
    a JSON lookup: on SQLite it was a 503, 'malformed JSON')."""
    answer = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4, temperature=0, store=True,
        metadata={"run": "first", "a__b": "c"},
    )  # fmt: skip
    assert stored_ids(client, {"run": "first", "a__b": "c"}) == [answer.id]
    assert stored_ids(client, {"run": "second"}) == stored_ids(client, {"a": "c"}) == []
    return answer.choices[0].message.content


def stored_ids(client: OpenAI, metadata: dict[str, str]) -> list[str]:
    return [c.id for c in client.chat.completions.list(metadata=metadata)]


def in_background(client: OpenAI) -> str:
    """A background response answered by the hub's own process (no broker, no worker), polled as OpenAI's docs do,
    its end told to a webhook on localhost (the embedded default allows a loopback receiver)."""
    with receiver() as hooks:
        ends = ["response.completed", "response.incomplete"]
        endpoint = client.webhooks.create(name="local", url=hooks.url, event_types=ends)
        response = client.responses.create(model=CHAT, input="Say hi.", background=True, max_output_tokens=4,
                                           temperature=0)  # fmt: skip
        deadline = time.monotonic() + 120
        while response.status in ("queued", "in_progress"):
            assert time.monotonic() < deadline, response
            time.sleep(0.2)
            response = client.responses.retrieve(response.id)
        [told] = hooks.wait(1)
    event = client.webhooks.unwrap(told.body, told.headers, secret=endpoint.signing_secret)
    assert (event.type, event.data.id) == (f"response.{response.status}", response.id)
    assert response.status in ("completed", "incomplete") and response.background, response
    # streamed: the run's events as the hub's own loop writes them, read back by the creating request
    events = list(client.responses.create(model=CHAT, input="Say hi.", background=True, stream=True,
                                          max_output_tokens=4, temperature=0))  # fmt: skip
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.queued"] and kinds[-1] in (
        "response.completed", "response.incomplete"), kinds  # fmt: skip
    assert [event.sequence_number for event in events] == list(range(len(events)))
    return response.output_text


def vector_store(client: OpenAI) -> str:
    """A vector store indexed by the hub's own process (no broker, no worker) and searched: the best hit's file."""
    store = client.vector_stores.create(name="notes")
    for name, text in [("eiffel.txt", b"The Eiffel Tower is in Paris."), ("cats.txt", b"Cats sleep most of the day.")]:
        row = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=(name, text))
        assert row.status == "completed", row
    return client.vector_stores.search(store.id, query="a famous tower in France").data[0].filename


def transcribe(client: OpenAI, output: str, tmp_path) -> None:
    """The banner's transcription example, run as printed on a sentence espeak-ng speaks."""
    snippet = output[output.index('with open("speech.mp3"') :].split("\n\n", 1)[0]
    assert f'model="{WHISPER}"' in snippet, output
    sentence = speech.ENGLISH[0]
    speech.encode(speech.samples(speech.speak(sentence, "en", tmp_path / "speech.wav")), "mp3", tmp_path / "speech.mp3")
    printed = io.StringIO()
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        with redirect_stdout(printed):
            exec(snippet, {"client": client})  # noqa: S102 - the banner's own example
    finally:
        os.chdir(cwd)
    # two words of nine at most: espeak-ng through a 16 kHz mp3 (measured: one, "send" heard as "end")
    assert speech.word_error_rate(sentence, printed.getvalue()) <= 0.25, printed.getvalue()


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "manage.py", *args], cwd=ROOT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def run_to_exit(env: dict[str, str], port: int) -> str:
    result = subprocess.run(
        MAKE_RUN, cwd=ROOT, env={**os.environ, **env, "HUB_PORT": str(port), "HUB_HOST": "127.0.0.1"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    return result.stdout + result.stderr


def ctrl_c(process: subprocess.Popen, within: float = 60) -> str:
    """What a terminal does on Ctrl-C: SIGINT to the whole foreground process group (make, the hub, the
    inference service), then wait for all of it to end."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        output = stop_hub(process)
        raise AssertionError(f"make run did not stop within {within}s of Ctrl-C:\n{output}") from None
    return stop_hub(process)


def inference_port(inference_url: str) -> int:
    return int(re.search(r":(\d+)/", inference_url).group(1))


def nothing_listens(port: int, within: float = 30) -> bool:
    """Nothing accepts on the port any more (the inference service may take a moment after the hub)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.25)
    return False


def client_check(url: str, output: str, inference_url: str) -> str:
    secret = re.search(r"api_key\s+(sk-hub-\S+)", output).group(1)
    assert f'api_key="{secret}"' in output  # the snippet carries the key
    assert "base_url     http://127.0.0.1:" in output and "password" in output
    base_url = re.search(r"base_url\s+(\S+)", output).group(1)
    assert base_url == f"{url}/v1"
    client = OpenAI(base_url=base_url, api_key=secret, max_retries=0)
    hub_models = {m.id: m.meta_data for m in client.models.list().data}
    assert sorted(hub_models) == ["all-minilm-l6-v2", "gemma-3-270m", CHAT, WHISPER]
    # the catalog's limits are the ones the inference service measured on the loaded models
    served = {m["id"]: m["meta_data"] for m in httpx.get(f"{inference_url}/models").json()["data"]}
    assert hub_models == served
    assert served["all-minilm-l6-v2"]["hidden_size"] == 384
    return secret
