"""The console's two streams on a live hub, signed in by a session cookie: the playground's chat (streamed
from the real model, metered as the tenant's usage with no key) and the usage dashboard's live updates
while requests made with the OpenAI SDK flow."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from accounts import services
from accounts.models import Deployment, ModelKind, Role, UsageRecord
from tests.support.live import CHAT, EMBED, barrier, rows
from tests.support.processes import free_port

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def session_for(user) -> dict[str, str]:
    """The cookie of a real session in the test database, which the live hub reads."""
    client = Client()
    client.force_login(user)
    return {"sessionid": client.cookies["sessionid"].value}


def member(tenant, name: str, role: Role):
    user = get_user_model().objects.create_user(name, password="pw")
    services.add_member(tenant, user, role)
    return user


def chat(hub, cookies, body=None, *, tenant="acme", headers=None) -> httpx.Response:
    body = body if body is not None else {
        "model": CHAT, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 6, "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip
    return httpx.post(
        f"{hub.url}/console/t/{tenant}/playground/chat/completions",
        content=json.dumps(body) if not isinstance(body, bytes) else body,
        headers={k: v for k, v in {"content-type": "application/json", "origin": hub.url, **(headers or {})}.items()
                 if v is not None},
        cookies=cookies, timeout=120,
    )  # fmt: skip


def events(text: str) -> list[dict]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:") and "[DONE]" not in line]


def test_playground_streams_from_the_model_and_is_metered_without_a_key(hub):
    cookies = session_for(member(hub.tenant, "dev", Role.MEMBER))
    response = chat(hub, cookies)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    chunks = events(response.text)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert text.strip() and response.text.rstrip().endswith("data: [DONE]")
    final = chunks[-1]
    assert final["choices"] == [] and final["usage"]["completion_tokens"] >= 1
    [row] = rows(1, route="playground")
    assert row.tenant_id == hub.tenant.pk and row.api_key_id is None and row.streamed
    assert (row.prompt_tokens, row.completion_tokens) == (
        final["usage"]["prompt_tokens"],
        final["usage"]["completion_tokens"],
    )
    assert row.request_id == response.headers["x-request-id"]


def test_playground_refuses_what_the_console_would(hub):
    other = services.create_tenant("other", "Other")
    dev = session_for(member(hub.tenant, "dev", Role.MEMBER))
    cases = [
        (chat(hub, {}), 401, "session_required"),
        (chat(hub, session_for(member(hub.tenant, "viewer", Role.VIEWER))), 403, "permission_denied"),
        (chat(hub, session_for(member(other, "stranger", Role.OWNER))), 404, "not_found"),
        (chat(hub, dev, headers={"origin": "https://evil.example"}), 403, "permission_denied"),
        (chat(hub, dev, headers={"content-type": "text/plain"}), 415, None),
        (chat(hub, dev, b"{not json"), 400, "invalid_json"),
        (chat(hub, dev, {"model": EMBED, "messages": [{"role": "user", "content": "x"}]}), 404, "model_not_found"),
        (chat(hub, dev, {"model": CHAT, "messages": "nope"}), 400, None),
    ]
    for response, status, code in cases:
        assert response.status_code == status, (status, response.text)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and set(error) == {"message", "type", "param", "code"}
        assert code is None or error["code"] == code, error
    barrier(hub)
    assert not UsageRecord.objects.filter(route="playground").exists()  # nothing reached a model


def test_playground_needs_a_same_origin_origin_or_the_pages_csrf_token(hub):
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    dev = session_for(member(hub.tenant, "dev", Role.MEMBER))
    body = {"model": CHAT, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    no_origin = {"origin": None}
    refused = chat(hub, dev, body, headers=no_origin)  # neither: a form post from anywhere, a script without CORS
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    secret = _get_new_csrf_string()
    forged = chat(hub, {**dev, "csrftoken": secret}, body, headers={**no_origin, "x-csrftoken": "x" * 64})
    assert forged.status_code == 403
    page_token = _mask_cipher_secret(secret)  # what the page renders for this cookie
    passed = chat(hub, {**dev, "csrftoken": secret}, body, headers={**no_origin, "x-csrftoken": page_token})
    assert passed.status_code == 200, passed.text
    assert chat(hub, dev, body).status_code == 200  # the browser's own Origin alone


def test_every_route_honours_the_allowed_hosts(hub):
    """Django refuses an unknown Host on its own routes; the gateway and the console streams refuse it too."""
    evil = {"host": "evil.example"}
    secret = hub.everything.secret
    answer = httpx.post(f"{hub.url}/v1/chat/completions", json={"model": CHAT, "messages": []}, timeout=30,
                        headers={**evil, "Authorization": f"Bearer {secret}"})  # fmt: skip
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_host"
    assert httpx.get(f"{hub.url}/console/t/acme/usage/live", headers=evil, timeout=30).status_code == 400
    assert httpx.get(f"{hub.url}/v1/models", headers=evil, timeout=30).status_code == 400
    assert httpx.get(f"{hub.url}/v1/models", headers={"Authorization": f"Bearer {secret}"}, timeout=30).is_success


def test_usage_stream_pushes_new_figures_while_requests_flow(hub):
    cookies = session_for(member(hub.tenant, "watcher", Role.VIEWER))
    url = f"{hub.url}/console/t/acme/usage/live"
    assert httpx.get(url, timeout=10).status_code == 401
    other = services.create_tenant("other", "Other")
    assert httpx.get(url, cookies=session_for(member(other, "stranger", Role.OWNER)), timeout=10).status_code == 404
    # yesterday to tomorrow (UTC days, as the dashboard's): the stream fixes its range as it opens, and the default
    # ends today, so a request sent just after midnight would count for a day the stream does not show
    today = timezone.now().date()
    days = f"?start={today - timedelta(days=1)}&end={today + timedelta(days=1)}"
    with httpx.stream("GET", url + days, cookies=cookies, timeout=120) as stream:  # a loaded CI machine is slow
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        first = next_event(lines)
        assert 'data-figure="requests">0<' in first
        hub().chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            html = next_event(lines)
            if 'data-figure="requests">1<' in html:
                break
        else:
            pytest.fail("the dashboard never showed the request")
    assert "all" in html and CHAT in html  # the key's name and the model, in the tables


def test_usage_stream_at_the_calendars_end_falls_back_to_the_default_range(hub):
    """end=9999-12-31 once killed the stream's task silently, leaving the connection open with nothing sent."""
    cookies = session_for(member(hub.tenant, "watcher", Role.VIEWER))
    url = f"{hub.url}/console/t/acme/usage/live?start=9999-12-25&end=9999-12-31"
    with httpx.stream("GET", url, cookies=cookies, timeout=60) as stream:
        assert stream.status_code == 200
        assert 'data-figure="requests">0<' in next_event(stream.iter_lines())


def next_event(lines) -> str:
    """The html of the next ``usage`` event (comments and blank lines skipped)."""
    kind = None
    for line in lines:
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:") and kind == "usage":
            return json.loads(line[5:])["html"]
    raise AssertionError("the stream ended")


def test_operator_sees_each_deployments_live_health(hub, client, django_user_model):
    """Probed for real: the live inference service (up, with its queue), a model it does not serve, a closed port."""
    services.register_model("ghost", ModelKind.CHAT)
    ghost = Deployment.objects.create(model_id="ghost", base_url=hub.inference_health().removesuffix("/health") + "/v1")
    closed = Deployment.objects.create(model_id=CHAT, base_url=f"http://127.0.0.1:{free_port()}/v1")
    client.force_login(django_user_model.objects.create_superuser("root", "", "pw"))
    states = client.get("/console/health.json").json()["deployments"]
    served = Deployment.objects.exclude(pk__in=[ghost.pk, closed.pk])
    assert served.count() == 6  # the six models of the session's service
    for d in served:
        state = states[str(d.pk)]
        assert state["state"] == "up" and state["running"] == 0 and state["latency_ms"] >= 0, state
    assert states[str(ghost.pk)]["state"] == "missing"
    assert states[str(closed.pk)]["state"] == "down" and "unreachable" in states[str(closed.pk)]["detail"]
    page = client.get("/console/").content.decode()
    assert page.count('class="badge health up"') == 6 and 'class="badge health down"' in page
    client.force_login(get_user_model().objects.create_user("plain", password="pw"))
    assert client.get("/console/health.json").status_code == 403
