"""Static checks of the deployment files (no Docker engine runs here): docker-compose.yml and its GPU override
validated by the Compose CLI itself, their structure (health, start order, loopback ports, profiles, no
hard-coded secret), the Dockerfiles linted by hadolint and their shared install script by ShellCheck, every
build input present in the build context, no torch in the API and dashboard images, and every command a real
`ecgk` command with real options. hadolint, ShellCheck and docker-compose are pip-installed binaries
(requirements/dev.txt); without them these tests skip, except under CI, where they fail."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from packaging.requirements import Requirement

from ecg_k.cli import app, load_plugins
from tests.build_context import REPO_ROOT, context_paths
from tests.ecg_k.db.conftest import in_ci

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
GPU_FILE = REPO_ROOT / "docker-compose.gpu.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
INSTALL_SCRIPT = REPO_ROOT / "docker" / "install.sh"
DOCKERFILES = sorted((REPO_ROOT / "docker").glob("*.Dockerfile"))
LONG_RUNNING = {"db", "api", "dashboard"}
ONE_SHOT = {"migrate", "retrain", "demo"}
AFTER_MIGRATION = {"db": "service_healthy", "migrate": "service_completed_successfully"}
# Requirement sets each image installs: the API and the dashboard never get torch (DESIGN.md).
IMAGE_REQUIREMENTS = {
    "api.Dockerfile": {"service"},
    "dashboard.Dockerfile": {"dashboard"},
    "trainer.Dockerfile": {"train", "service", "dashboard"},
}
# What each torch-free image must still hold (so that the closure below is the real one).
IMAGE_NEEDS = {
    "api.Dockerfile": {"onnxruntime", "fastapi", "uvicorn", "uvloop", "sqlalchemy", "psycopg-binary"},
    "dashboard.Dockerfile": {"streamlit", "sqlalchemy", "psycopg-binary"},
}
TORCH = {"torch", "torchsort"}


def _tool(name: str) -> str:
    """Path of a pip-installed checker (this venv first); skip without it, fail under CI."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found:
        return found
    message = f"{name} is not installed (pip install -r requirements/dev.txt)"
    if in_ci(os.environ):
        pytest.fail(f"{message}; CI is set, so the deployment checks must run")
    pytest.skip(message)


def _compose(*args: str, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("POSTGRES_", "ECGK_", "COMPOSE_"))}
    command = [_tool("docker-compose"), "--project-directory", str(REPO_ROOT), "--env-file", str(env_file), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as YAML sees it (anchors and merge keys resolved, variables not interpolated)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


# ---- the Compose CLI --------------------------------------------------------------------------------------


@pytest.mark.parametrize("files", [["docker-compose.yml"], ["docker-compose.yml", "docker-compose.gpu.yml"]],
                         ids=["cpu", "gpu"])
def test_compose_cli_validates_and_resolves_the_files(files: list[str]) -> None:
    args = [arg for name in files for arg in ("-f", str(REPO_ROOT / name))]
    result = _compose(*args, "--profile", "retrain", "--profile", "demo", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    assert set(resolved) == LONG_RUNNING | ONE_SHOT
    published = [port for service in resolved.values() for port in service.get("ports", [])]
    assert {(port["host_ip"], port["target"]) for port in published} == {("127.0.0.1", 8000), ("127.0.0.1", 8501)}
    url = resolved["api"]["environment"]["ECGK_DATABASE_URL"]
    assert url == "postgresql+psycopg://ecgk:change-me@db:5432/ecgk"  # the .env.example values
    variant = "cuda" if "docker-compose.gpu.yml" in files else "cpu"
    for name in ("migrate", "api", "retrain", "demo"):
        assert resolved[name]["build"]["args"] == {"VARIANT": variant}
        assert resolved[name]["image"].endswith(f":{variant}")
    gpu_services = {name for name, service in resolved.items() if "deploy" in service}
    assert gpu_services == ({"api", "retrain", "demo"} if variant == "cuda" else set())


def test_compose_refuses_to_start_without_a_database_password(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = _compose("-f", str(COMPOSE_FILE), "config", "--quiet", env_file=empty)
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in result.stderr


# ---- structure --------------------------------------------------------------------------------------------


def test_services_profiles_and_restart_policies(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == LONG_RUNNING | ONE_SHOT
    assert {name: services[name].get("profiles") for name in services} == {
        "db": None, "migrate": None, "api": None, "dashboard": None, "retrain": ["retrain"], "demo": ["demo"]}
    for name in LONG_RUNNING:
        assert services[name]["restart"] == "unless-stopped"
    for name in ONE_SHOT:
        assert services[name]["restart"] == "no"
    assert {name for name, service in services.items() if service.get("init")} == set(services) - {"db"}


def test_healthchecks_and_start_order(services: dict[str, dict[str, Any]]) -> None:
    for name in LONG_RUNNING:
        assert services[name]["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}
    assert "pg_isready" in services["db"]["healthcheck"]["test"][1]
    assert services["api"]["healthcheck"]["test"][-1] == "http://127.0.0.1:8000/health/ready"
    assert services["dashboard"]["healthcheck"]["test"][-1] == "http://127.0.0.1:8501/_stcore/health"

    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert conditions("migrate") == {"db": "service_healthy"}
    for name in ("api", "dashboard", "retrain"):
        assert conditions(name) == AFTER_MIGRATION
    assert services["migrate"]["command"] == ["db", "upgrade"]


def test_only_api_and_dashboard_are_reachable_and_only_on_loopback(compose: dict[str, Any],
                                                                   services: dict[str, dict[str, Any]]) -> None:
    published = {name: service["ports"] for name, service in services.items() if "ports" in service}
    assert set(published) == {"api", "dashboard"}
    for ports in published.values():
        assert all(port.startswith("127.0.0.1:") for port in ports)
    assert compose["networks"]["backend"] == {"internal": True}
    for name in ("db", "migrate", "retrain"):
        assert services[name]["networks"] == ["backend"]
    assert services["demo"]["network_mode"] == "none"


def test_volumes_for_database_models_data_and_ecg_store(compose: dict[str, Any],
                                                        services: dict[str, dict[str, Any]]) -> None:
    assert set(compose["volumes"]) == {"pgdata", "data", "models", "ecg-store"}
    assert services["db"]["volumes"] == ["pgdata:/var/lib/postgresql/data"]
    assert set(services["api"]["volumes"]) == {"models:/models:ro", "ecg-store:/ecg-store"}
    assert set(services["dashboard"]["volumes"]) == {"models:/models:ro", "ecg-store:/ecg-store:ro"}
    assert set(services["retrain"]["volumes"]) == {"data:/data", "models:/models", "ecg-store:/ecg-store:ro"}
    out = services["retrain"]["command"][services["retrain"]["command"].index("--out") + 1]
    assert out.startswith("/models/"), "challengers must land where the API can load them"


def test_no_password_is_written_in_the_compose_files(services: dict[str, dict[str, Any]]) -> None:
    required = "${POSTGRES_PASSWORD:?"
    assert services["db"]["environment"]["POSTGRES_PASSWORD"].startswith(required)
    for name in ("migrate", "api", "dashboard", "retrain"):
        assert f":{required}" in services[name]["environment"]["ECGK_DATABASE_URL"]
    for path in (COMPOSE_FILE, GPU_FILE):
        for service in yaml.safe_load(path.read_text())["services"].values():
            for key, value in (service.get("environment") or {}).items():
                assert "PASSWORD" not in key or value.startswith(required), f"{path.name}: {key} is written out"
        assert not re.search(r"://[^:/@\s]+:(?!\$\{)[^@\s]*@", path.read_text()), "credentials in a URL"
    assert ".env" in (REPO_ROOT / ".gitignore").read_text().splitlines()
    assert "POSTGRES_PASSWORD=" in ENV_EXAMPLE.read_text()


class _Status(BaseHTTPRequestHandler):
    """Answers every GET with the status code in the path (``/200``, ``/503``)."""

    def do_GET(self) -> None:
        self.send_response(int(self.path.strip("/")))
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def status_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_healthcheck_probe_fails_unless_the_answer_is_2xx(services: dict[str, dict[str, Any]],
                                                                status_server: str) -> None:
    command = services["api"]["healthcheck"]["test"]
    assert command[:3] == ["CMD", "python", "-c"]
    assert services["dashboard"]["healthcheck"]["test"][:4] == command[:4]  # one probe for both

    def probe(url: str) -> int:
        return subprocess.run([sys.executable, "-c", command[3], url], capture_output=True, timeout=30).returncode

    assert probe(f"{status_server}/200") == 0
    assert probe(f"{status_server}/503") != 0
    with HTTPServer(("127.0.0.1", 0), _Status) as closed:
        port = closed.server_address[1]
    assert probe(f"http://127.0.0.1:{port}/health/ready") != 0


# ---- reading a Dockerfile ---------------------------------------------------------------------------------


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: continuation lines joined, comment lines dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, rest = pending.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


# ---- commands ---------------------------------------------------------------------------------------------


def _ecgk_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every ecgk command line: compose services (all but db) and each image's CMD."""
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    lines = [(f"compose:{name}", service["command"]) for name, service in services.items() if name != "db"]
    for dockerfile in DOCKERFILES:
        lines += [(f"image:{dockerfile.name}", yaml.safe_load(rest))
                  for keyword, rest in _instructions(dockerfile) if keyword == "CMD"]
    return lines


COMMAND_LINES = _ecgk_commands()


@pytest.mark.parametrize(("where", "argv"), COMMAND_LINES, ids=[where for where, _ in COMMAND_LINES])
def test_every_command_is_a_real_ecgk_command(where: str, argv: list[str]) -> None:
    load_plugins()
    command = typer.main.get_command(app)
    words = list(argv)
    while hasattr(command, "commands") and words and not words[0].startswith("-"):
        name = words.pop(0)
        assert name in command.commands, f"{where}: `ecgk {' '.join(argv)}`: no command {name!r}"
        command = command.commands[name]
    assert not hasattr(command, "commands"), f"{where}: `ecgk {' '.join(argv)}` names a group, not a command"
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    unknown = [word for word in words if word.startswith("-") and word not in known]
    assert not unknown, f"{where}: `ecgk {' '.join(argv)}`: no option {unknown}"


# ---- Dockerfiles ------------------------------------------------------------------------------------------


def _build_inputs(dockerfile: Path) -> list[str]:
    """Paths of the build context the Dockerfile reads: COPY/ADD sources and RUN bind-mount sources."""
    inputs: list[str] = []
    for keyword, rest in _instructions(dockerfile):
        words = shlex.split(rest)
        if keyword in {"COPY", "ADD"}:
            inputs += [word for word in words if not word.startswith("--")][:-1]
        elif keyword == "RUN":
            for word in words:
                if word.startswith("--mount="):
                    options = dict(item.partition("=")[::2] for item in word.removeprefix("--mount=").split(","))
                    if options.get("type") == "bind":
                        inputs.append(options.get("source", "."))
    return inputs


def _requirement_sets(dockerfile: Path) -> set[str]:
    """The requirement sets a Dockerfile installs through `install.sh requirements VARIANT SET...`."""
    sets: set[str] = set()
    for keyword, rest in _instructions(dockerfile):
        words = shlex.split(rest)
        if keyword == "RUN" and "requirements" in words:
            sets |= set(words[words.index("requirements") + 2:])
    return sets


def test_dockerfiles_pass_hadolint() -> None:
    assert {path.name for path in DOCKERFILES} == set(IMAGE_REQUIREMENTS)
    result = subprocess.run([_tool("hadolint"), *map(str, DOCKERFILES)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_install_script_passes_shellcheck_and_refuses_a_bad_variant() -> None:
    lint = subprocess.run([_tool("shellcheck"), str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    bad = subprocess.run(["sh", str(INSTALL_SCRIPT), "requirements", "gpu", "service"], capture_output=True,
                         text=True, timeout=30)
    assert (bad.returncode, bad.stderr.strip()) == (2, "install.sh: VARIANT must be cpu or cuda, not 'gpu'")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_build_inputs_exist_inside_the_build_context(dockerfile: Path) -> None:
    allowed = context_paths()
    inputs = _build_inputs(dockerfile)
    assert inputs, f"{dockerfile.name} reads nothing from the build context"
    for source in (item.strip("/") for item in inputs):
        if source in {"", "."}:
            continue
        assert (REPO_ROOT / source).exists(), f"{dockerfile.name}: {source} does not exist"
        assert any(source == entry or source.startswith(f"{entry}/") for entry in allowed), (
            f"{dockerfile.name}: {source} is excluded by .dockerignore")
    for entry in allowed:
        assert (REPO_ROOT / entry).exists(), f".dockerignore lets in {entry}, which does not exist"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_images_run_as_an_unprivileged_user_on_a_pinned_base(dockerfile: Path) -> None:
    instructions = _instructions(dockerfile)
    (base,) = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert re.fullmatch(r"python:3\.11-slim-\w+", base), base
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users == ["10001"]
    assert [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"] == ['["ecgk"]']
    assert len([keyword for keyword, _ in instructions if keyword == "CMD"]) == 1
    assert _requirement_sets(dockerfile) == IMAGE_REQUIREMENTS[dockerfile.name]


def _requirement_files(name: str) -> list[Path]:
    """requirements/NAME.txt and every file it includes with -r, recursively."""
    path = REPO_ROOT / "requirements" / f"{name}.txt"
    files = [path]
    for line in path.read_text().splitlines():
        if line.startswith("-r "):
            files += _requirement_files(line.split()[1].removesuffix(".txt"))
    return files


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(name: str) -> set[Requirement]:
    """The requirements pinned by requirements/NAME.txt and the files it includes."""
    lines = [line.split("#")[0].strip() for path in _requirement_files(name) for line in path.read_text().splitlines()]
    return {Requirement(line) for line in lines if line and not line.startswith("-")}


def _closure(pins: set[Requirement]) -> set[str]:
    """Every distribution the pinned requirements pull in, as installed here (extras and markers honoured)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(_normalised(pin.name), frozenset(pin.extras)) for pin in pins]
    while todo:
        item = todo.pop()
        if item in seen:
            continue
        seen.add(item)
        name, extras = item
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            pytest.fail(f"{name} is not installed here: run scripts/setup.sh")
        for line in requires:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras or {""}):
                todo.append((_normalised(requirement.name), frozenset(requirement.extras)))
    return {name for name, _ in seen}


@pytest.mark.parametrize("image", sorted(IMAGE_NEEDS))
def test_api_and_dashboard_images_install_no_torch(image: str) -> None:
    sets = _requirement_sets(REPO_ROOT / "docker" / image)
    files = {path.name for name in sets for path in _requirement_files(name)}
    assert "train.txt" not in files
    pins: set[Requirement] = set().union(*map(_pins, sets))
    assert not {_normalised(pin.name) for pin in pins} & TORCH
    closure = _closure(pins)
    assert IMAGE_NEEDS[image] <= closure
    assert not closure & TORCH, "a dependency of the API or dashboard pulls in torch"


def test_gpu_requirements_replace_onnxruntime_and_stay_out_of_the_dev_venv() -> None:
    gpu = {_normalised(pin.name) for pin in _pins("gpu")}
    assert "onnxruntime-gpu" in gpu and "onnxruntime" not in gpu
    assert "gpu.txt" not in {path.name for path in _requirement_files("dev")}
    assert "uninstall -y onnxruntime" in INSTALL_SCRIPT.read_text()
