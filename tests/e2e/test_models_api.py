"""The public API against a live hub (a real server process), with the OpenAI SDK as the client."""

from __future__ import annotations

import gzip
import json

import httpx
import openai
import pytest
from openai import OpenAI

from accounts import services
from accounts.keys import generate_secret
from tests.support.hub import manage

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def acme_key(acme):
    return services.issue_key(acme.tenant, name="acme-all")


@pytest.fixture
def globex_key(globex):
    return services.issue_key(globex.tenant, name="globex-all")


def client(live_hub, secret: str, base: str = "v1") -> OpenAI:
    return OpenAI(base_url=live_hub.api(base), api_key=secret, max_retries=0)


def assert_openai_error(body: dict, code: str | None = None) -> dict:
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


# --- the catalog --------------------------------------------------------------------------------


def test_list_models_with_meta_data_like_the_reference(live_hub, acme_key):
    models = client(live_hub, acme_key.secret).models.list()
    ids = [m.id for m in models.data]
    assert ids == ["chat-small", "completion-small", "embed-small", "vision-small"]
    assert models.data[0].meta_data == {"max_sequence_length": 8192, "hidden_size": 0, "max_output_length": 4096}
    embed = next(m for m in models.data if m.id == "embed-small")
    assert embed.meta_data == {"max_sequence_length": 512, "hidden_size": 384, "max_output_length": 0}
    assert all(m.object == "model" and m.owned_by == "llm-hub" and m.created > 0 for m in models.data)
    # vLLM's max_model_len too, as clients written against vLLM read it
    assert [m.max_model_len for m in models.data] == [m.meta_data["max_sequence_length"] for m in models.data]


def test_retrieve_model(live_hub, acme_key):
    model = client(live_hub, acme_key.secret).models.retrieve("completion-small")
    assert model.id == "completion-small"
    assert model.meta_data["max_sequence_length"] == 32768


def test_v2_and_vision_base_urls(live_hub, acme_key):
    assert len(client(live_hub, acme_key.secret, "v2").models.list().data) == 4
    vision = client(live_hub, acme_key.secret, "vision")
    assert [m.id for m in vision.models.list().data] == ["vision-small"]
    assert vision.models.retrieve("vision-small").id == "vision-small"
    with pytest.raises(openai.NotFoundError):
        vision.models.retrieve("chat-small")  # not a vision model


def test_key_sees_only_its_own_models(live_hub, acme):
    issued = services.issue_key(acme.tenant, model_ids=["embed-small"])
    sdk = client(live_hub, issued.secret)
    assert [m.id for m in sdk.models.list().data] == ["embed-small"]
    with pytest.raises(openai.NotFoundError) as err:
        sdk.models.retrieve("chat-small")
    assert err.value.status_code == 404 and err.value.code == "model_not_found"


# --- tenant isolation: owner / member / outsider ----------------------------------------------


def test_one_tenant_never_sees_anothers_models(live_hub, acme_key, globex_key, acme):
    globex_sdk = client(live_hub, globex_key.secret)
    assert [m.id for m in globex_sdk.models.list().data] == ["completion-small"]
    # chat-small exists (acme has it) but globex gets the same 404 as for a model that never existed.
    with pytest.raises(openai.NotFoundError) as existing:
        globex_sdk.models.retrieve("chat-small")
    with pytest.raises(openai.NotFoundError) as missing:
        globex_sdk.models.retrieve("never-existed")
    assert existing.value.body["message"].replace("chat-small", "X") == missing.value.body["message"].replace(
        "never-existed", "X"
    )


def test_member_and_owner_keys_see_the_tenant_outsider_cannot_issue(live_hub, acme, outsider):
    from django.core.exceptions import PermissionDenied

    owner_key = services.issue_key(acme.tenant, actor=acme.owner)
    member_key = services.issue_key(acme.tenant, actor=acme.member)
    for issued in (owner_key, member_key):
        assert len(client(live_hub, issued.secret).models.list().data) == 4
    with pytest.raises(PermissionDenied):
        services.issue_key(acme.tenant, actor=outsider)


# --- authentication errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization, code",
    [
        (None, "missing_api_key"),
        ("Basic dXNlcjpwYXNz", "missing_api_key"),
        ("Bearer", "missing_api_key"),
        ("Bearer not-a-hub-key", "invalid_api_key"),
        pytest.param("Bearer " + generate_secret(), "invalid_api_key", id="unknown-key"),  # an id every worker shares
    ],
)
def test_401_for_missing_malformed_and_unknown_keys(live_hub, db, authorization, code):
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.get(f"{live_hub.api()}/models", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert_openai_error(response.json(), code)
    if authorization and " " in authorization:
        secret = authorization.split(" ", 1)[1]
        assert not secret or secret not in response.text  # never echoed


def test_sdk_raises_authentication_error(live_hub, db):
    with pytest.raises(openai.AuthenticationError) as err:
        client(live_hub, generate_secret()).models.list()
    assert err.value.status_code == 401


def test_revocation_from_another_process_takes_effect_on_the_next_request(live_hub, acme_key):
    sdk = client(live_hub, acme_key.secret)
    assert sdk.models.list().data  # the hub has now cached this key
    result = manage("revoke_api_key", acme_key.key.prefix)
    assert result.returncode == 0, result.stderr
    with pytest.raises(openai.AuthenticationError) as err:
        sdk.models.list()
    assert err.value.code == "api_key_revoked"
    assert acme_key.secret not in str(err.value.body)


def test_expired_key(live_hub, acme_key):
    from datetime import timedelta

    from django.utils import timezone

    sdk = client(live_hub, acme_key.secret)
    assert sdk.models.list().data
    services.set_key_expiry(acme_key.key, timezone.now() - timedelta(seconds=1))
    with pytest.raises(openai.AuthenticationError) as err:
        sdk.models.list()
    assert err.value.code == "api_key_expired"


def test_rotated_key_old_secret_works_in_grace(live_hub, acme_key):
    rotated = services.rotate_key(acme_key.key, grace_seconds=3600)
    assert client(live_hub, acme_key.secret).models.list().data
    assert client(live_hub, rotated.secret).models.list().data
    services.revoke_key(rotated.key)
    for secret in (acme_key.secret, rotated.secret):
        with pytest.raises(openai.AuthenticationError):
            client(live_hub, secret).models.list()


def test_last_used_is_recorded(live_hub, acme_key):
    client(live_hub, acme_key.secret).models.list()
    acme_key.key.refresh_from_db()
    assert acme_key.key.last_used_at is not None


# --- request errors: always OpenAI-shaped JSON, never HTML, never 500 ------------------------


def _post(live_hub, secret, path="chat/completions", **kwargs):
    return httpx.post(f"{live_hub.api()}/{path}", headers={"Authorization": f"Bearer {secret}"}, **kwargs)


def test_400_malformed_json(live_hub, acme_key):
    response = httpx.post(
        f"{live_hub.api()}/chat/completions",
        headers={"Authorization": f"Bearer {acme_key.secret}", "Content-Type": "application/json"},
        content=b'{"model": "chat-small",',
    )
    assert response.status_code == 400
    assert_openai_error(response.json(), "invalid_json")


def test_400_json_that_is_not_an_object(live_hub, acme_key):
    response = _post(live_hub, acme_key.secret, json=["a", "list"])
    assert response.status_code == 400
    assert_openai_error(response.json())


def test_405_wrong_method(live_hub, acme_key):
    response = _post(live_hub, acme_key.secret, path="models", json={})
    assert response.status_code == 405
    assert "GET" in response.headers["allow"]
    assert_openai_error(response.json(), "method_not_allowed")
    with pytest.raises(openai.APIStatusError) as err:
        client(live_hub, acme_key.secret).models.delete("chat-small")
    assert err.value.status_code == 405


def test_413_body_too_large(live_hub, acme_key):
    from django.conf import settings

    big = b'{"model": "' + b"x" * (settings.HUB_MAX_BODY_BYTES + 1) + b'"}'
    response = httpx.post(
        f"{live_hub.api()}/chat/completions",
        headers={"Authorization": f"Bearer {acme_key.secret}", "Content-Type": "application/json"},
        content=big,
    )
    assert response.status_code == 413
    assert_openai_error(response.json(), "request_too_large")

    def chunked():  # no Content-Length: counted as it arrives
        for _ in range(settings.HUB_MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    response = httpx.post(
        f"{live_hub.api()}/chat/completions",
        headers={"Authorization": f"Bearer {acme_key.secret}", "Content-Type": "application/json"},
        content=chunked(),
    )
    assert response.status_code == 413


def test_413_comes_before_auth(live_hub, db):
    from django.conf import settings

    response = httpx.post(
        f"{live_hub.api()}/chat/completions",
        headers={"Content-Length": str(settings.HUB_MAX_BODY_BYTES + 1), "Content-Type": "application/json"},
        content=b"{}" + b" " * (settings.HUB_MAX_BODY_BYTES - 1),
    )
    assert response.status_code == 413


def test_415_unsupported_media_type(live_hub, acme_key):
    response = httpx.post(
        f"{live_hub.api()}/chat/completions",
        headers={"Authorization": f"Bearer {acme_key.secret}", "Content-Type": "application/x-www-form-urlencoded"},
        content=b"model=chat-small",
    )
    assert response.status_code == 415
    assert_openai_error(response.json(), "unsupported_media_type")


def test_a_compressed_body_is_refused_naming_its_encoding(live_hub, acme_key):
    """Found under make run: a gzip body was a 400 'could not parse the JSON', and one marked 'br' but sent plain
    was served; OpenAI's SDK sends bodies uncompressed."""
    body = json.dumps({"model": "chat-small", "messages": [{"role": "user", "content": "hi"}]}).encode()
    for coding, content in [("gzip", gzip.compress(body)), ("br", body)]:
        response = httpx.post(f"{live_hub.api()}/chat/completions", content=content, headers={
            "Authorization": f"Bearer {acme_key.secret}", "Content-Type": "application/json",
            "Content-Encoding": coding})  # fmt: skip
        assert response.status_code == 415 and f"'{coding}'" in response.json()["error"]["message"]
        assert_openai_error(response.json(), "unsupported_media_type")


def test_an_api_route_without_its_base_is_a_json_404_naming_it(live_hub, acme_key):
    """Found under make run: a client whose base_url lacked /v1 got Django's HTML page, which OpenAI's SDK showed
    whole; the console's own 404 stays a page."""
    for method, path in [("POST", "chat/completions"), ("GET", "models"), ("POST", "audio/speech"),
                         ("GET", "vector_stores/vs_x")]:  # fmt: skip
        response = httpx.request(method, f"{live_hub.url}/{path}", json={},
                                 headers={"Authorization": f"Bearer {acme_key.secret}"})  # fmt: skip
        assert response.status_code == 404, path
        assert_openai_error(response.json(), "unknown_url")
        assert "under /v1" in response.json()["error"]["message"]
    page = httpx.get(f"{live_hub.url}/console/no-such-page/")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")


def test_unknown_url_is_json_404(live_hub, acme_key):
    for method, path in [("GET", "v1/nothing-here"), ("POST", "v2/nothing/here"), ("GET", "vision/models/")]:
        response = httpx.request(
            method, f"{live_hub.url}/{path}", headers={"Authorization": f"Bearer {acme_key.secret}"}, json={}
        )
        assert response.status_code == 404, path
        assert_openai_error(response.json(), "unknown_url")


def test_every_api_response_has_a_request_id(live_hub, acme_key):
    ok = httpx.get(f"{live_hub.api()}/models", headers={"Authorization": f"Bearer {acme_key.secret}"})
    bad = httpx.get(f"{live_hub.api()}/models")
    assert ok.headers["x-request-id"].startswith("req_") and bad.headers["x-request-id"].startswith("req_")
    assert ok.headers["x-request-id"] != bad.headers["x-request-id"]
    echoed = httpx.get(f"{live_hub.api()}/models", headers={"x-request-id": "client-trace-0001"})
    assert echoed.headers["x-request-id"] == "client-trace-0001"


def test_health_and_readiness(live_hub, db):
    assert httpx.get(f"{live_hub.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{live_hub.url}/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert {k: body[k] for k in ("status", "database", "redis", "cache", "catalog")} == {
        "status": "ok", "database": "ok", "redis": "ok", "cache": "ok", "catalog": "ok",
    }  # fmt: skip
    assert body["models"] >= 0 and body["deployments"] >= 0
