"""The Docker deployment, checked offline: compose files, Dockerfiles, Kubernetes manifest.

Compose files are validated against the Compose JSON schema (tests/data/compose-spec.json,
docker/compose 1.29.2's compose_spec.json, Apache-2.0) and, where a compose binary is installed,
by `docker compose config -q`. scripts/compose-smoke runs the stack for real.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="pyyaml is in the dev extra")

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILES = [
    "docker-compose.yml",
    "docker-compose.producers.yml",
    "docker-compose.curve.yml",
    "docker-compose.ranks.yml",
]
# The variables docker-compose.producers.yml requires.
COMPOSE_ENV = {"ZEROFEED_CONNECT": "tcp://trainer-host:5555", "ZEROFEED_DATA": "/srv/data"}


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


def dockerfile(role: str) -> str:
    return (ROOT / "docker" / f"{role}.Dockerfile").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def main() -> dict[str, Any]:
    return load("docker-compose.yml")


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_matches_the_compose_schema(name: str) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the dev extra")
    schema = json.loads((ROOT / "tests/data/compose-spec.json").read_text(encoding="utf-8"))
    jsonschema.Draft201909Validator(schema).validate(load(name))


def compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.parametrize(
    "files",
    [
        ["docker-compose.yml"],
        ["docker-compose.producers.yml"],
        COMPOSE_FILES[:3:2],
        ["docker-compose.yml", "docker-compose.ranks.yml"],
    ],
)
def test_compose_accepts_the_files(files: list[str]) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    args = [*command, "--project-directory", str(ROOT)]
    for name in files:
        args += ["-f", str(ROOT / name)]
    result = subprocess.run(
        [*args, "config", "-q"],
        env={**os.environ, **COMPOSE_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_data_service_writes_the_sample_set_once(main: dict[str, Any]) -> None:
    data = main["services"]["data"]
    assert data["command"][:2] == ["sample-data", "/data/sample"]
    assert "data:/data" in data["volumes"]
    assert "data" in main["volumes"]
    for name in ("trainer", "producer"):
        depends = main["services"][name]["depends_on"]
        assert depends["data"] == {"condition": "service_completed_successfully"}


def test_trainer_binds_tcp_and_starts_no_producer(main: dict[str, Any]) -> None:
    trainer = main["services"]["trainer"]
    assert trainer["environment"]["ZEROFEED_BIND"] == "tcp://0.0.0.0:5555"
    assert "data:/data:ro" in trainer["volumes"]
    assert 'CMD ["python3", "examples/compose_train.py"]' in dockerfile("trainer")
    example = (ROOT / "examples/compose_train.py").read_text(encoding="utf-8")
    assert "local_producers=0" in example
    for variable in ("ZEROFEED_SERVER_SECRET_KEY", "ZEROFEED_AUTHORIZED_KEYS"):
        assert variable in example


@pytest.mark.parametrize(
    ("name", "mount"),
    [("docker-compose.yml", "data:/data:ro"), ("docker-compose.producers.yml", ":/data:ro")],
)
def test_producer_service_scales(name: str, mount: str) -> None:
    producer = load(name)["services"]["producer"]
    assert "container_name" not in producer and "ports" not in producer
    assert any(volume.endswith(mount) for volume in producer["volumes"]), "data read-only"
    env = producer["environment"]
    env = env if isinstance(env, dict) else dict(item.partition("=")[::2] for item in env)
    assert env["ZEROFEED_CONNECT"].startswith(("tcp://trainer:5555", "${ZEROFEED_CONNECT"))
    assert all(key.startswith("ZEROFEED_") for key in env)


@pytest.mark.parametrize("name", COMPOSE_FILES[:2])
def test_long_running_services_stop_gracefully(name: str) -> None:
    for service_name, service in load(name)["services"].items():
        assert service.get("init") is True, service_name
        if service_name != "data":
            assert service["stop_grace_period"] == "20s", service_name


def test_curve_keys_are_mounted_secrets_never_in_images() -> None:
    curve = load("docker-compose.curve.yml")
    assert all(s["file"].startswith("./keys/") for s in curve["secrets"].values())
    services = curve["services"]
    for name, variables in {
        "trainer": ("ZEROFEED_SERVER_SECRET_KEY", "ZEROFEED_AUTHORIZED_KEYS"),
        "producer": ("ZEROFEED_SERVER_KEY", "ZEROFEED_SECRET_KEY"),
    }.items():
        env = services[name]["environment"]
        mounted = {f"/run/secrets/{secret}" for secret in services[name]["secrets"]}
        assert {env[variable] for variable in variables} == mounted
    assert services["keys"]["profiles"] == ["keys"], "made on demand, not by every `up`"
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", "an allow-list: nothing reaches a build unless listed"
    assert not any("key" in rule for rule in rules if rule.startswith("!"))


@pytest.mark.parametrize("role", ["producer", "trainer"])
def test_dockerfile_basics(role: str) -> None:
    text = dockerfile(role)
    before_first_from = text.split("\nFROM ", 1)[0]
    assert "ARG BASE_IMAGE=python:3.11-slim" in before_first_from
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE_IMAGE}"] * 2
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0"), "runs as a non-root user"
    assert "\nHEALTHCHECK " in text
    assert "--find-links /wheels" in text, "installs from docker/wheels/ when it has wheels"
    copied = " ".join(re.findall(r"^(?:COPY|ADD) (.+)$", text, re.M))
    assert not re.search(r"key|secret|\.env", copied, re.I), copied


def test_producer_image_installs_no_tensorflow() -> None:
    text = dockerfile("producer")
    installs = re.findall(r"pip install[^\n]*", text)
    assert installs and not any("consumer" in i or "tensorflow" in i for i in installs)
    core = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not any(re.match(r"(tensorflow|keras)", dep) for dep in core["dependencies"])


def test_kubernetes_producers_stop_gracefully_with_read_only_data() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy/kubernetes/producers.yaml").read_text()))
    kinds = {doc["kind"]: doc for doc in docs}
    assert set(kinds) == {"ConfigMap", "Deployment"}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 20
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": "zerofeed-producer"}}]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["data"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "secret" in volumes["keys"]
    config = kinds["ConfigMap"]["data"]
    assert config["ZEROFEED_CONNECT"].startswith("tcp://")
    assert config["ZEROFEED_SECRET_KEY"].startswith(mounts["keys"]["mountPath"])


def load_healthcheck() -> Any:
    spec = importlib.util.spec_from_file_location("healthcheck", ROOT / "docker/healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_trainer_healthcheck_sees_a_listening_port(monkeypatch: pytest.MonkeyPatch) -> None:
    health = load_healthcheck()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        monkeypatch.setenv("ZEROFEED_BIND", f"tcp://0.0.0.0:{port}")
        assert health.main("trainer") is None
    assert health.main("trainer") == f"nothing listens on port {port} yet"
    assert health.tcp_port("ipc:///tmp/feed") is None


def test_ranks_override_gives_every_rank_an_address_the_producers_connect_to(
    main: dict[str, Any],
) -> None:
    ranks = load("docker-compose.ranks.yml")["services"]
    trainers = {
        name: {**main["services"].get(name, {}).get("environment", {}), **spec["environment"]}
        for name, spec in ranks.items()
        if name.startswith("trainer")
    }
    world = {int(env["ZEROFEED_WORLD_SIZE"]) for env in trainers.values()}
    assert world == {len(trainers)}
    assert sorted(int(env["ZEROFEED_RANK"]) for env in trainers.values()) == list(
        range(len(trainers))
    )
    connect = ranks["producer"]["environment"]["ZEROFEED_CONNECT"].split(",")
    ports = {name: env["ZEROFEED_BIND"].rsplit(":", 1)[1] for name, env in trainers.items()}
    assert sorted(connect) == sorted(f"tcp://{name}:{port}" for name, port in ports.items())


def test_kubernetes_data_parallel_layout_ranks_from_the_pod_index() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy/kubernetes/data-parallel.yaml").read_text()))
    kinds = {doc["kind"]: doc for doc in docs}
    assert set(kinds) == {"Service", "Job", "Deployment"}
    service, job = kinds["Service"], kinds["Job"]
    assert service["spec"]["clusterIP"] == "None"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"]
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["selector"] == spec["template"]["metadata"]["labels"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    index = env["ZEROFEED_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert "job-completion-index" in index
    world_size = int(env["ZEROFEED_WORLD_SIZE"]["value"])
    assert world_size == spec["completions"]
    port = env["ZEROFEED_BIND"]["value"].rsplit(":", 1)[1]
    producer = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = producer["containers"]
    connect = {e["name"]: e.get("value") for e in container["env"]}["ZEROFEED_CONNECT"]
    name, domain = job["metadata"]["name"], service["metadata"]["name"]
    assert connect.split(",") == [
        f"tcp://{name}-{rank}.{domain}:{port}" for rank in range(world_size)
    ]
    assert producer["terminationGracePeriodSeconds"] >= 20


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_service_that_names_a_zerofeed_image_builds_it(name: str) -> None:
    """No `docker compose up` tries to pull an image that only exists once built here."""
    services = load(name)["services"]
    naming = {k: s for k, s in services.items() if str(s.get("image", "")).startswith("zerofeed-")}
    for key, service in naming.items():
        assert "build" in service, f"{name}: {key} names {service['image']} but cannot build it"
        assert service.get("pull_policy") == "build", f"{name}: {key} would try to pull first"
