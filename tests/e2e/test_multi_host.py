"""Several hosts on one machine, for real: each a network namespace on one bridge (``deploy/multihost/hosts.sh``),
two hub hosts behind HAProxy (Debian's; ``deploy/multihost/haproxy.cfg``: round robin, readiness checks on
``/ready``), two inference hosts serving the same model (a tiny random-weight Llama on our engine), PostgreSQL and
Redis on the machine. Through the balancer, under a bounded load of streaming and plain requests: a key's requests
and tokens per minute and a tenant's token budget hold exactly across both hubs; every request that reached a
model is metered once; a hub host stopped mid-load (SIGTERM) ends its streams with an error event (metered) and
the balancer's check takes it out, with no request lost; an inference host killed mid-load, and its model keeps
being served by the other. Prints the figures (``docs/benchmarks.md``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest
from django.conf import settings

from accounts import services
from accounts.limits import Limits
from accounts.models import ModelKind, UsageRecord
from tests.support.buckets import most_admitted, timed
from tests.support.checkpoints import tiny_chat_checkpoint
from tests.support.forward import forward
from tests.support.hub import database_url_for_subprocess
from tests.support.live import settle
from tests.support.processes import ROOT, Process, free_port

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

BRIDGE = "10.77.0.1"
HOSTS = {"hub1": "10.77.0.11", "hub2": "10.77.0.12", "inf1": "10.77.0.21", "inf2": "10.77.0.22"}
SCRIPT = ROOT / "deploy/multihost/hosts.sh"
MODEL, KEY, HOST_HEADER = "tiny-chat", "sk-inference-multihost", "hub.test"
RPM, TPM = 30, 400


def _in(host: str, name: str, cmd: list[str], env: dict[str, str]) -> Process:
    return Process(name, ["ip", "netns", "exec", f"lh-{host}", *cmd], {**os.environ, **env})


def _on_bridge(url: str, port: int) -> str:
    """``url`` (a service on the machine's loopback) as the hosts reach it: the forwarder's address and port."""
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.netloc.rsplit('@', 1)[0]}@{BRIDGE}:{port}" if "@" in parts.netloc
                          else f"{BRIDGE}:{port}").geturl()  # fmt: skip


@pytest.fixture
def hosts():
    if os.geteuid() != 0:
        pytest.fail("the multi-host test builds network namespaces: run the suite as root, as CI does")
    names = list(HOSTS)
    subprocess.run([str(SCRIPT), "down", *names], capture_output=True)  # what a killed run left
    subprocess.run([str(SCRIPT), "up", *(f"{n}={a}" for n, a in HOSTS.items())], check=True)
    try:
        yield
    finally:
        subprocess.run([str(SCRIPT), "down", *names], check=True)


def _wait_for_both(url: str, timeout: float = 30) -> None:
    """Until the balancer's checks have found both hubs ready (each check passes twice, 0.5 s apart)."""
    deadline, seen = time.monotonic() + timeout, set()
    while seen != {"hub1", "hub2"} and time.monotonic() < deadline:
        response = httpx.get(f"{url}/ready", timeout=5)
        if response.status_code == 200:
            seen.add(response.headers["x-served-by"])
        time.sleep(0.1)
    assert seen == {"hub1", "hub2"}, f"HAProxy found only {seen} ready"


def _chat(client: httpx.Client, url: str, key: str, **extra) -> httpx.Response:
    body = {"model": MODEL, "prompt": "Hello there", "max_tokens": 4, **extra}  # the tiny model has no template
    return client.post(f"{url}/v1/completions", json=body, headers={"authorization": f"Bearer {key}"})


def _fresh(url: str, key: str) -> httpx.Response:
    with httpx.Client(timeout=60) as client:
        return _chat(client, url, key)


def _stream(url: str, key: str, tokens: int, flowing: threading.Semaphore) -> tuple[str, list[dict], bool]:
    """(request id, the data events, whether it ended with [DONE]); ``flowing`` released at the third event."""
    body = {"model": MODEL, "prompt": "Tell me everything.", "max_tokens": tokens, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}}  # fmt: skip
    events, done = [], False
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120,
                      headers={"authorization": f"Bearer {key}"}) as response:  # fmt: skip
        assert response.status_code == 200, response.read()
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if len(events) == 3:
                    flowing.release()
    return request_id, events, done


def test_two_hubs_behind_haproxy_and_two_inference_hosts(live_hub, hosts, tmp_path):
    db_port, redis_port = free_port(), free_port()
    db_url = database_url_for_subprocess()
    redis_url = settings.REDIS_URL
    assert db_url.startswith("postgres://") and redis_url, "the multi-host test runs on PostgreSQL and Redis"
    db, redis = urlsplit(db_url), urlsplit(redis_url)
    processes: list[Process] = []
    with (
        forward((BRIDGE, db_port), (db.hostname, db.port or 5432)),
        forward((BRIDGE, redis_port), (redis.hostname, redis.port or 6379)),
    ):
        try:
            checkpoint = tiny_chat_checkpoint(tmp_path / "tiny")
            inference = {}
            for host in ("inf1", "inf2"):
                cmd = [sys.executable, "-m", "inference", "serve", "--model", f"{MODEL}={checkpoint}:chat",
                       "--host", HOSTS[host], "--port", "8100", "--threads", "1"]  # fmt: skip
                inference[host] = _in(host, host, cmd, {"INFERENCE_API_KEY": KEY})
                processes.append(inference[host])
            for host in ("inf1", "inf2"):
                inference[host].wait_healthy(f"http://{HOSTS[host]}:8100/health", 120)
                deployment = f"http://{HOSTS[host]}:8100/v1"
                services.register_model(MODEL, ModelKind.CHAT, max_sequence_length=2048, max_output_length=512,
                                        deployment_url=deployment, upstream_api_key=KEY)  # fmt: skip
            hub_env = {
                "HUB_DATABASE_URL": _on_bridge(db_url, db_port), "HUB_REDIS_URL": _on_bridge(redis_url, redis_port),
                "HUB_ALLOWED_HOSTS": ",".join([HOST_HEADER, "127.0.0.1", HOSTS["hub1"], HOSTS["hub2"]]),
                "HUB_SHUTDOWN_GRACE_SECONDS": "0",  # streams end at once: a host going away
                "HUB_PORT": "8000",
            }  # fmt: skip
            hubs = {}
            for host in ("hub1", "hub2"):
                cmd = [sys.executable, "manage.py", "serve", "--no-bootstrap"]
                hubs[host] = _in(host, host, cmd, {**hub_env, "HUB_HOST": HOSTS[host]})
                processes.append(hubs[host])
            for host in ("hub1", "hub2"):
                hubs[host].wait_healthy(f"http://{HOSTS[host]}:8000/health", 60)
            listen = f"127.0.0.1:{free_port()}"
            balancer = Process("haproxy", ["haproxy", "-db", "-f", str(ROOT / "deploy/multihost/haproxy.cfg")],
                               {**os.environ, "LISTEN": listen, "HUB1": f"{HOSTS['hub1']}:8000",
                                "HUB2": f"{HOSTS['hub2']}:8000", "HUB_HOST_HEADER": HOST_HEADER})  # fmt: skip
            processes.append(balancer)
            url = f"http://{listen}"
            balancer.wait_healthy(f"{url}/ready", 30)
            _wait_for_both(url)
            try:
                _scenario(url, hubs, inference)
            except AssertionError:
                print("hub1's log:", hubs["hub1"].output()[-4000:])
                print("the balancer's log:", balancer.output()[-4000:])  # its servers' state changes, with reasons
                raise
        finally:
            outputs = {p.name: p.stop(timeout=20) for p in processes}
    for name, output in outputs.items():
        assert "Traceback" not in output, f"{name}:\n{output[-3000:]}"


def _scenario(url: str, hubs: dict[str, Process], inference: dict[str, Process]) -> None:
    acme = services.create_tenant("acme", "Acme")
    services.grant_models(acme, [MODEL])
    limited = services.issue_key(acme, name="rpm")
    services.set_limits(limited.key, Limits(rpm=RPM))
    free = services.issue_key(acme, name="free")
    tokens = services.issue_key(acme, name="tpm")
    services.set_limits(tokens.key, Limits(tpm=TPM))
    globex = services.create_tenant("globex", "Globex")
    services.grant_models(globex, [MODEL])
    services.set_limits(globex, Limits(budget=600, budget_period="day"))
    budgeted = services.issue_key(globex, name="budget")
    started, answered, refused = time.monotonic(), [], 0
    served_by: set[str] = set()

    # 1. a key's requests per minute, across both hubs: RPM through, and no more than the bucket refilled meanwhile
    with ThreadPoolExecutor(8) as pool, httpx.Client(timeout=60) as client:
        first, elapsed = timed(lambda: list(pool.map(lambda _: _chat(client, url, limited.secret), range(RPM + 15))))
    codes = [r.status_code for r in first]
    assert set(codes) == {200, 429} and RPM <= codes.count(200) <= most_admitted(RPM, elapsed), (elapsed, codes)
    served_by |= {r.headers["x-served-by"] for r in first}
    assert served_by == {"hub1", "hub2"}, served_by
    answered += [r.headers["x-request-id"] for r in first if r.status_code == 200]
    refused += codes.count(429)

    # 2. a tenant's token budget, across both hubs: never overspent
    with ThreadPoolExecutor(8) as pool, httpx.Client(timeout=60) as client:
        second = list(pool.map(lambda _: _chat(client, url, budgeted.secret, max_tokens=16), range(40)))
    codes = [r.status_code for r in second]
    assert 200 in codes and 429 in codes and set(codes) == {200, 429}
    assert {r.json()["error"]["code"] for r in second if r.status_code == 429} == {"insufficient_quota"}
    answered += [r.headers["x-request-id"] for r in second if r.status_code == 200]
    refused += codes.count(429)
    spent = sum(r.total_tokens for r in UsageRecord.objects.filter(tenant=globex))
    assert 0 < spent <= 600

    # 3. a key's tokens per minute, across both hubs: never more counted than the bucket held and refilled
    with ThreadPoolExecutor(8) as pool, httpx.Client(timeout=60) as client:
        third, elapsed = timed(lambda: list(pool.map(lambda _: _chat(client, url, tokens.secret, max_tokens=16),
                                                     range(30))))  # fmt: skip
    codes = [r.status_code for r in third]
    assert 200 in codes and 429 in codes and set(codes) == {200, 429}
    assert {r.headers["x-ratelimit-limit-tokens"] for r in third if r.status_code == 200} == {str(TPM)}
    answered += [r.headers["x-request-id"] for r in third if r.status_code == 200]
    refused += codes.count(429)
    counted = sum(r.total_tokens for r in UsageRecord.objects.filter(api_key=tokens.key))
    assert 0 < counted <= most_admitted(TPM, elapsed), (counted, elapsed)

    # 4. hub1 stopped mid-load: its streams end with an error event (metered), the balancer takes it out
    with ThreadPoolExecutor(14) as pool:
        flowing = threading.Semaphore(0)
        streams = [pool.submit(_stream, url, free.secret, 200, flowing) for _ in range(6)]
        for _ in streams:  # every stream under way, on both hubs
            assert flowing.acquire(timeout=60)
        hubs["hub1"].send_signal(signal.SIGTERM)
        # each on its own connection: a request that a stopping hub closes unanswered on a reused keep-alive
        # connection is closed to the client the same way (HAProxy lets the client retry, as HTTP clients do)
        plain = [pool.submit(_fresh, url, free.secret) for _ in range(24)]
        ended = [s.result() for s in streams]
        during = [p.result() for p in plain]
    assert [r.status_code for r in during] == [200] * len(during), [r.text for r in during if r.status_code != 200]
    answered += [r.headers["x-request-id"] for r in during]
    cut = [s for s in ended if not s[2]]
    whole = [s for s in ended if s[2]]
    assert cut and whole, "the streams were spread over both hubs"
    for _, events, _ in cut:
        assert events[-1]["error"]["code"] == "service_unavailable"
    answered += [s[0] for s in ended]
    hubs["hub1"].wait(30)
    with httpx.Client(timeout=60) as client:
        after = [_chat(client, url, free.secret) for _ in range(6)]
    assert {r.headers["x-served-by"] for r in after} == {"hub2"} and all(r.status_code == 200 for r in after)
    answered += [r.headers["x-request-id"] for r in after]

    # 5. an inference host killed: its model keeps being served by the other
    inference["inf1"].kill()
    inference["inf1"].wait(30)
    with ThreadPoolExecutor(4) as pool, httpx.Client(timeout=60) as client:
        last = list(pool.map(lambda _: _chat(client, url, free.secret), range(12)))
    assert [r.status_code for r in last] == [200] * 12
    answered += [r.headers["x-request-id"] for r in last]

    # every request that reached a model metered exactly once; nothing refused was
    settle()  # a row is written just after its answer
    rows = list(UsageRecord.objects.values_list("request_id", flat=True))
    mismatches = len(set(answered) ^ set(rows)) + (len(rows) - len(set(rows)))
    unmetered, unanswered = set(answered) - set(rows), set(rows) - set(answered)
    shown = list(UsageRecord.objects.filter(request_id__in=unanswered).values("request_id", "status_code", "route"))
    cut_rows = UsageRecord.objects.filter(request_id__in=[s[0] for s in cut])
    assert all(r.status_code == 503 and r.completion_tokens > 0 for r in cut_rows) and len(cut_rows) == len(cut)
    print(f"\nmulti-host: {len(answered) + refused} requests through HAProxy to 2 hubs and 2 inference hosts in "
          f"{time.monotonic() - started:.1f} s: {len(answered)} answered ({len(cut)} streams cut by the stopped "
          f"hub with an error event), {refused} refused by limits (429), 0 lost, metering mismatches "
          f"{mismatches}")  # fmt: skip
    assert mismatches == 0, (unmetered, shown)
