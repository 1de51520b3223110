"""Vision requests against a live inference service serving the tiny LLaVA checkpoints, through the OpenAI SDK:
data: URLs of each format, http URLs from a local image server the allow-list permits, several images in system
and user messages, image tokens in ``usage``, and a 400 with a clear message for everything refused."""

from __future__ import annotations

import httpx
import pytest
from openai import BadRequestError, OpenAI

from tests.support.checkpoints import llava_checkpoint
from tests.support.images import ALLOW_LOCAL_IMAGES, data_url, image_server
from tests.support.inference import inference_service, model_flags

pytestmark = pytest.mark.live

NEXT, V15, TEXT = "llava-next-tiny", "llava-1.5-tiny", "llava-as-text"


@pytest.fixture(scope="module")
def images():
    with image_server() as server:
        yield server


@pytest.fixture(scope="module")
def client(tmp_path_factory, images):
    root = tmp_path_factory.mktemp("vision")
    next_dir, v15_dir = llava_checkpoint(root / "next", next_=True), llava_checkpoint(root / "v15")
    models = [f"{NEXT}={next_dir}:vision", f"{V15}={v15_dir}:vision", f"{TEXT}={next_dir}:chat"]
    with inference_service(*model_flags(*models), env=ALLOW_LOCAL_IMAGES) as url:
        yield OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def ask(client: OpenAI, model: str, *urls: str, system_image: str | None = None, **kwargs):
    messages = []
    if system_image:
        image = {"type": "image_url", "image_url": {"url": system_image}}
        messages.append({"role": "system", "content": [{"type": "text", "text": "You are LLava."}, image]})
    parts = [{"type": "text", "text": "What's in this image?"}]
    parts += [{"type": "image_url", "image_url": {"url": u, "detail": "auto"}} for u in urls]
    messages.append({"role": "user", "content": parts})
    return client.chat.completions.create(
        model=model, messages=messages, **{"max_tokens": 8, "temperature": 0.01, **kwargs}
    )


def test_vision_models_are_listed_as_vision(client):
    kinds = {m.id: m.model_extra["kind"] for m in client.models.list().data}
    assert kinds == {NEXT: "vision", V15: "vision", TEXT: "chat"}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
@pytest.mark.parametrize("model", [NEXT, V15])
def test_data_urls_of_each_format(client, model, fmt):
    one = ask(client, model, data_url(fmt))
    two = ask(client, model, data_url(fmt), data_url(fmt, seed=1))
    assert one.choices[0].finish_reason == "length" and one.usage.completion_tokens == 8
    # each image's tokens are counted, plus the newline the template writes after it: LLaVA-1.5 takes 16 for any
    # image here; NeXT 16 for the whole view + a 6 x 8 grid of tile features, each row closed by a newline (54)
    assert two.usage.prompt_tokens - one.usage.prompt_tokens == (16 if model == V15 else 70) + 1


def test_image_tokens_depend_on_the_image_size_for_next(client):
    """80 x 120 takes 70 tokens (above); 40 x 120 fills a 1 x 2 grid of tiles: 16 + 2 rows of 8 + 1 = 34."""
    large = ask(client, NEXT, data_url(height=80, width=120)).usage.prompt_tokens
    small = ask(client, NEXT, data_url(height=40, width=120)).usage.prompt_tokens
    assert large - small == 70 - 34
    assert (
        ask(client, V15, data_url(height=80, width=120)).usage.prompt_tokens
        == ask(client, V15, data_url(height=40, width=120)).usage.prompt_tokens
    )


def test_several_images_in_system_and_user_messages(client, images):
    one = ask(client, V15, data_url()).usage.prompt_tokens
    three = ask(client, V15, data_url(seed=1), f"{images.url}/photo.png", system_image=data_url(seed=2))
    assert three.usage.prompt_tokens >= one + 2 * 16


def test_http_url_from_an_allowed_host_streamed(client, images):
    stream = ask(client, NEXT, f"{images.url}/photo.jpg", stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "/photo.jpg" in images.requests
    assert chunks[-1].usage.prompt_tokens > 70 and chunks[-1].usage.completion_tokens == 8
    assert any(c.choices and c.choices[0].delta.content for c in chunks)


def test_streamed_equals_non_streamed(client):
    url = data_url(seed=5)
    whole = ask(client, NEXT, url, temperature=0).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in ask(client, NEXT, url, temperature=0, stream=True)
                       if c.choices)  # fmt: skip
    assert whole == streamed


def _refused(client, model: str, url: str, *phrases: str, role: str = "user") -> None:
    with pytest.raises(BadRequestError) as info:
        if role == "user":
            ask(client, model, url)
        else:
            client.chat.completions.create(model=model, max_tokens=4, messages=[
                {"role": "user", "content": "hi"},
                {"role": role, "content": [{"type": "image_url", "image_url": {"url": url}}]},
            ])  # fmt: skip
    error = info.value.body
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error", error
    for phrase in phrases:
        assert phrase in error["message"], error


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("http://10.1.2.3/a.jpg", "private address"),
        ("http://192.168.0.7/a.jpg", "private address"),
        ("http://169.254.10.1/a.jpg", "link-local address"),
        ("http://169.254.169.254/latest/meta-data", "cloud metadata address"),
        ("http://[::1]:9/a.jpg", "loopback address"),
        ("http://224.0.0.1/a.jpg", "multicast address"),
        ("file:///etc/passwd", "http"),
    ],
)
def test_refused_addresses(client, url, phrase):
    _refused(client, NEXT, url, phrase, "messages[0].content[1].image_url")


def test_a_redirect_to_a_private_address_is_refused(client, images):
    _refused(client, NEXT, f"{images.url}/to-private", "private address", "10.0.0.1")
    _refused(client, NEXT, f"{images.url}/to-metadata", "cloud metadata address")
    assert "/to-private" in images.requests  # the first hop was allowed; the redirect was not followed


def test_bad_images(client, images):
    _refused(client, NEXT, "data:image/png;base64,bm90IGFuIGltYWdl", "not a JPEG, PNG, WEBP or GIF image")
    _refused(client, NEXT, "data:text/plain;base64,aGk=", "image/")
    _refused(client, NEXT, f"{images.url}/missing.jpg", "404")


def test_an_elongated_sliver_is_refused_before_it_pads_to_gigabytes(client):
    """A 16,000 x 2 PNG is 32 k pixels and a few hundred bytes, but LLaVA-1.5 pads it to a 16,000-pixel square (256 M
    pixels): 8 s and 2.8 GB of memory here, and a 50,000 x 1 one would have taken the service down. Preprocessing may
    make at most 4 x the decoded-image limit (50 M pixels); LLaVA-NeXT resizes into its grid and serves it."""
    sliver = data_url("PNG", height=2, width=16000)
    _refused(client, V15, sliver, "16000x2", "256000000-pixel image", "less elongated")
    assert ask(client, NEXT, sliver).usage.completion_tokens == 8
    assert ask(client, V15, data_url("PNG", height=40, width=4000)).usage.completion_tokens == 8  # pads to 16 M


def test_refused_requests(client):
    _refused(client, TEXT, data_url(), f"The model '{TEXT}' does not accept images", "vision model")
    _refused(client, NEXT, data_url(), "images are allowed in system and user messages only", role="assistant")
    with pytest.raises(BadRequestError, match="detail"):
        client.chat.completions.create(model=NEXT, max_tokens=4, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url(), "detail": "ultra"}}]}])  # fmt: skip
    with pytest.raises(BadRequestError, match="At most 8 images"):
        ask(client, NEXT, *[data_url(height=8, width=8)] * 9)


def test_raw_http_error_shape(client):
    """Not only through the SDK: the JSON body of a refusal, as a gateway relays it."""
    base = str(client.base_url).rstrip("/")
    body = {"model": NEXT, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://127.0.0.2/x.jpg"}}]}]}  # fmt: skip
    response = httpx.post(f"{base}/chat/completions", json=body, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages[0].content[0].image_url" and error["code"] == "invalid_image_url"
    assert "loopback" in error["message"]


def test_the_image_bytes_held_are_in_metrics_and_given_back(client, images):
    """Answered, refused at the fetch or refused at the header: each request's share of the fetched image bytes
    (``held_bytes.py``) is back by the time it is answered, and /metrics shows the bound."""
    assert ask(client, V15, f"{images.url}/photo.jpg", data_url()).usage.completion_tokens == 8
    with pytest.raises(BadRequestError, match="404"):  # one image fetched, the other not found
        ask(client, NEXT, f"{images.url}/photo.jpg", f"{images.url}/missing.jpg")
    _refused(client, NEXT, "data:image/png;base64,bm90IGFuIGltYWdl", "not a JPEG, PNG, WEBP or GIF image")
    text = httpx.get(f"{str(client.base_url).rstrip('/').removesuffix('/v1')}/metrics", timeout=30).text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("inference_im")}
    assert values["inference_image_bytes_held"] == 0 and values["inference_image_bytes_limit"] == 2**30, values
    assert "inference_image_waits_total" in values, values
