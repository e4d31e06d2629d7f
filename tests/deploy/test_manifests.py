"""The deployment files agree with the services: pure file checks, nothing is built or started.

Every folder under services/ (but common) has a compose entry and a Kubernetes manifest; the Deployments
are hardened and probed; the compose services wait for their dependencies; every image's MODULE is a real
package of its SERVICE. YAML is read with PyYAML, and the tests that need it skip when it is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES_DIR = ROOT / "services"
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
K8S_BASE = DEPLOY / "k8s" / "base"
K8S_DEV = DEPLOY / "k8s" / "overlays" / "dev"
UID = 10001

SERVICE_NAMES = sorted(
    p.name for p in SERVICES_DIR.iterdir() if (p / "pyproject.toml").is_file() and p.name != "common"
)


@pytest.fixture(scope="module")
def yaml() -> Any:
    return pytest.importorskip("yaml", reason="PyYAML is not installed in this environment")


@pytest.fixture(scope="module")
def compose(yaml: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def built_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Compose services built from our Dockerfile, by name."""
    return {
        name: svc
        for name, svc in compose["services"].items()
        if isinstance(svc.get("build"), dict) and svc["build"].get("dockerfile") == "deploy/docker/Dockerfile"
    }


def is_migrate(svc: dict[str, Any]) -> bool:
    return svc.get("command") == ["migrate"]


def env_of(svc: dict[str, Any]) -> dict[str, Any]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def env_prefix(service: str) -> str | None:
    """The env prefix declared in the service's settings module (None while it has none)."""
    for settings in (SERVICES_DIR / service / "src").glob("*/settings.py"):
        match = re.search(r"""env_prefix\s*=\s*["']([A-Z_]+)["']""", settings.read_text())
        if match:
            return match.group(1)
    return None


def k8s_documents(yaml: Any, path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def deployments(yaml: Any) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(K8S_BASE.glob("*.yaml")):
        for doc in k8s_documents(yaml, path):
            if doc["kind"] == "Deployment":
                found[doc["metadata"]["name"]] = doc
    return found


def seconds(value: str | int | float) -> float:
    text = str(value)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text)
    assert match, f"not a duration: {value!r}"
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60}[unit]


# --- services <-> deploy ----------------------------------------------------------------------------------


def test_there_are_services() -> None:
    assert "calls" in SERVICE_NAMES
    assert "common" not in SERVICE_NAMES


def test_every_service_has_a_compose_entry(compose: dict[str, Any]) -> None:
    built = built_services(compose)
    for service in SERVICE_NAMES:
        assert service in built, f"deploy/compose.yaml has no service {service!r}"
        assert built[service]["build"]["args"]["SERVICE"] == service


def test_every_service_has_one_k8s_manifest(yaml: Any) -> None:
    kustomization = yaml.safe_load((K8S_BASE / "kustomization.yaml").read_text())
    for service in SERVICE_NAMES:
        manifest = K8S_BASE / f"{service}.yaml"
        assert manifest.is_file(), f"no Kubernetes manifest {manifest.relative_to(ROOT)}"
        assert manifest.name in kustomization["resources"]
        kinds = {doc["kind"]: doc for doc in k8s_documents(yaml, manifest)}
        assert {"Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"} <= kinds.keys()
        pod = kinds["Deployment"]["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == kinds["ServiceAccount"]["metadata"]["name"]
        selector = kinds["Deployment"]["spec"]["selector"]["matchLabels"]
        assert kinds["Service"]["spec"]["selector"] == selector
        assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
        assert kinds["Deployment"]["spec"]["template"]["metadata"]["labels"].items() >= selector.items()


def test_kustomize_resources_and_generated_files_exist(yaml: Any) -> None:
    for directory in (K8S_BASE, K8S_DEV):
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        for resource in kustomization.get("resources", []):
            assert (directory / resource).exists(), f"{directory}: missing resource {resource}"
        for generator in kustomization.get("configMapGenerator", []):
            for file in generator.get("files", []):
                assert (directory / file.split("=")[-1]).is_file(), f"{directory}: missing {file}"
        assert "secretGenerator" not in kustomization, "secrets are referenced, never committed"


# --- Dockerfile -------------------------------------------------------------------------------------------


def test_dockerfile_is_parametrized_and_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG SERVICE$", text, re.M)
    assert re.search(r"^ARG MODULE$", text, re.M)
    assert re.search(rf"^USER {UID}:{UID}$", text, re.M), "the image runs as a numeric non-root user"
    assert "HEALTHCHECK" in text
    assert "/readyz" in (DEPLOY / "docker" / "healthcheck.py").read_text()
    assert "uv sync --frozen --no-dev" in text
    assert "tools/gen_proto.py" in text, "the image generates the protobuf code"
    assert re.search(r"^UV_VERSION\s*:=\s*\S+", (ROOT / "Makefile").read_text(), re.M), (
        "the Dockerfile takes uv's version from the Makefile"
    )


def test_dockerignore_keeps_the_context_small() -> None:
    entries = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}
    for excluded in (".git", ".venv", "services/common/src/telecrm", "var"):
        assert excluded in entries
    for needed in ("deploy/local", "deploy/docker", "proto", "uv.lock", "Makefile", "tools"):
        assert needed not in entries
        assert f"{needed}/" not in entries


def test_compose_modules_are_packages_of_their_service(compose: dict[str, Any]) -> None:
    for name, svc in built_services(compose).items():
        args = svc["build"]["args"]
        service, module = args["SERVICE"], args["MODULE"]
        package = SERVICES_DIR / service / "src" / module
        assert (package / "__init__.py").is_file(), f"{name}: MODULE {module} is not a package of {service}"
        project = tomllib.loads((SERVICES_DIR / service / "pyproject.toml").read_text())["project"]
        assert project["name"] == f"telecrm-{service}", "the Dockerfile installs telecrm-<SERVICE>"
        assert svc["build"]["context"] == ".."


# --- compose ----------------------------------------------------------------------------------------------


def test_compose_services_are_hardened(compose: dict[str, Any]) -> None:
    for name, svc in built_services(compose).items():
        assert svc.get("read_only") is True, name
        assert any(str(t).split(":")[0] == "/tmp" for t in svc.get("tmpfs", [])), name
        user = str(svc.get("user", ""))
        assert user.split(":")[0] == str(UID), f"{name}: user {user!r}"
        assert "ALL" in svc.get("cap_drop", []), name


def test_compose_services_with_a_database_wait_for_it(compose: dict[str, Any]) -> None:
    services = compose["services"]
    databases = set(str(services["postgres"]["environment"]["TELECRM_DATABASES"]).split())
    for name, svc in built_services(compose).items():
        env = env_of(svc)
        urls = [v for k, v in env.items() if k.endswith("_DATABASE_URL")]
        if not urls:
            continue
        depends = svc["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert str(urls[0]).rsplit("/", 1)[-1] in databases, f"{name}: its database is not created"
        if is_migrate(svc):
            assert svc.get("restart") == "no", name
            continue
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert depends["nats"]["condition"] == "service_healthy", name
        migrate = f"{name}-migrate"
        assert depends[migrate]["condition"] == "service_completed_successfully", name
        assert is_migrate(services[migrate])
        assert str(env_of(svc).get(f"{env_prefix(name) or ''}MIGRATE_ON_START")).lower() == "false"


def test_compose_services_are_healthchecked_and_drain_in_time(compose: dict[str, Any]) -> None:
    for name, svc in built_services(compose).items():
        if is_migrate(svc):
            continue
        assert svc["healthcheck"]["test"], name
        assert svc["depends_on"]["nats"]["condition"] == "service_healthy", name
        grace = [v for k, v in env_of(svc).items() if k.endswith("_SHUTDOWN_GRACE")]
        assert grace, f"{name}: set its SHUTDOWN_GRACE"
        assert seconds(svc["stop_grace_period"]) > float(grace[0]), name
    assert "-js" in compose["services"]["nats"]["command"]
    assert compose["services"]["nats"]["healthcheck"]["test"]
    assert compose["services"]["postgres"]["healthcheck"]["test"]


# Settings every service shares (telecrm_common.auth.AuthSettings): the same token key everywhere.
SHARED_PREFIXES = ("TELECRM_AUTH_",)


def test_compose_env_uses_each_services_prefix(compose: dict[str, Any]) -> None:
    for name, svc in built_services(compose).items():
        prefix = env_prefix(svc["build"]["args"]["SERVICE"])
        if prefix is None:
            continue
        for key in env_of(svc):
            assert key.startswith((prefix, *SHARED_PREFIXES)), f"{name}: {key} does not start with {prefix}"
        assert env_of(svc)[f"{prefix}HTTP_HOST"] == "0.0.0.0"


def test_gateway_publishes_sip_and_rtp_and_mounts_routes(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["sip-gateway"]
    ports = [str(p) for p in gateway["ports"]]
    assert "5060:5060/udp" in ports
    assert "5060:5060/tcp" in ports
    env = env_of(gateway)
    first, count = int(env["GATEWAY_RTP_PORT"]), int(env["GATEWAY_RTP_PORT_RANGE"])
    assert f"{first}-{first + count - 1}:{first}-{first + count - 1}/udp" in ports
    routes = env["GATEWAY_ROUTES_FILE"]
    assert any(str(v).split(":")[1] == routes for v in gateway["volumes"] if str(v).startswith("./"))
    assert (DEPLOY / "compose" / "routes.toml").is_file()


@pytest.mark.parametrize("routes", [DEPLOY / "compose" / "routes.toml", K8S_DEV / "routes.toml"])
def test_sample_routes_parse(routes: Path) -> None:
    data = tomllib.loads(routes.read_text())
    for extension in data["extensions"].values():
        assert {"name", "employee_id", "contact", "ring_timeout"} <= extension.keys()
    for line in data["lines"].values():
        assert line["extension"] in data["extensions"]
    routing = pytest.importorskip("telecrm_gateway.routing")
    assert routing.load_routes(routes).extensions


# --- Kubernetes -------------------------------------------------------------------------------------------


def test_deployments_are_probed_limited_and_hardened(yaml: Any) -> None:
    found = deployments(yaml)
    assert set(found) == set(SERVICE_NAMES)
    for name, deployment in found.items():
        pod = deployment["spec"]["template"]["spec"]
        pod_security = pod.get("securityContext", {})
        assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert pod.get("hostNetwork", False) is False, name
        mounts_tmp = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            where = f"{name}/{container['name']}"
            security = container.get("securityContext", {})
            assert security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert "ALL" in security.get("capabilities", {}).get("drop", []), where
            limits = container.get("resources", {}).get("limits", {})
            assert {"cpu", "memory"} <= limits.keys(), f"{where} has no resource limits"
            assert {"cpu", "memory"} <= container["resources"].get("requests", {}).keys(), where
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert tmp, f"{where}: no /tmp"
            assert tmp[0]["name"] in mounts_tmp, f"{where}: /tmp is not an emptyDir"
        for container in pod["containers"]:
            where = f"{name}/{container['name']}"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", where
            assert "startupProbe" in container, where


def test_deployments_with_a_database_migrate_first_and_drain_in_time(yaml: Any) -> None:
    for name, deployment in deployments(yaml).items():
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {e["name"]: e for e in container.get("env", [])}
        database = [e for k, e in env.items() if k.endswith("_DATABASE_URL")]
        if database:
            assert "secretKeyRef" in database[0]["valueFrom"], f"{name}: the DSN comes from a Secret"
            init = {c["name"]: c for c in pod.get("initContainers", [])}
            assert init["migrate"]["args"] == ["migrate"], name
            assert init["migrate"]["image"] == container["image"], name
        for key, entry in env.items():
            assert "value" not in entry or not re.search(r"SECRET|PASSWORD|DATABASE_URL", key), key
        grace = [float(e["value"]) for k, e in env.items() if k.endswith("_SHUTDOWN_GRACE")]
        assert grace, f"{name}: set its SHUTDOWN_GRACE"
        assert pod["terminationGracePeriodSeconds"] > grace[0], name


def test_k8s_env_uses_each_services_prefix(yaml: Any) -> None:
    for name, deployment in deployments(yaml).items():
        prefix = env_prefix(name)
        if prefix is None:
            continue
        for container in [
            *deployment["spec"]["template"]["spec"].get("initContainers", []),
            *deployment["spec"]["template"]["spec"]["containers"],
        ]:
            for entry in container.get("env", []):
                assert entry["name"].startswith((prefix, *SHARED_PREFIXES)), f"{name}: {entry['name']}"
            assert [e["prefix"] for e in container.get("envFrom", [])] == [prefix], name


def test_pod_disruption_budgets_do_not_block_drains(yaml: Any) -> None:
    for service in SERVICE_NAMES:
        for doc in k8s_documents(yaml, K8S_BASE / f"{service}.yaml"):
            if doc["kind"] == "PodDisruptionBudget":
                assert doc["spec"].get("maxUnavailable") == 1, service


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_dev_overlay_builds() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S_DEV)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    kinds = re.findall(r"^kind: (\w+)$", result.stdout, re.M)
    assert kinds.count("Deployment") == len(SERVICE_NAMES)
    assert re.findall(r"^  replicas: (\d+)$", result.stdout, re.M) == ["1"] * len(SERVICE_NAMES)
    # generated ConfigMaps get a hash suffix and every reference follows it
    assert not re.search(r"name: (telecrm-shared|sip-gateway-routes)$", result.stdout, re.M)
