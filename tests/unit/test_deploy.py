"""The deployment files stay in step with the settings the code reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from digest.config import ConfigError, get_settings
from tests.support.env import ROOT

DEPLOY = ROOT / "deploy"
CONFIG_SOURCE = ROOT / "digest" / "config.py"
ENV_EXAMPLE = DEPLOY / "env.example"
COMPOSE = DEPLOY / "compose.yaml"
APP_SERVICES = ("migrate", "web", "worker", "beat")

_NAME = re.compile(r"\bDIGEST_[A-Z0-9_]*[A-Z0-9]\b")


def names_read_by_config() -> set[str]:
    """The quoted DIGEST_* names in digest/config.py: the variables get_settings() looks up."""
    names = set(re.findall(r"""["'](DIGEST_[A-Z0-9_]+)["']""", CONFIG_SOURCE.read_text(encoding="utf-8")))
    assert "DIGEST_DATA_DIR" in names, "the pattern no longer finds the settings in config.py"
    return names


def names_in(path: Path) -> set[str]:
    return set(_NAME.findall(path.read_text(encoding="utf-8")))


def deploy_files() -> list[Path]:
    files = [ENV_EXAMPLE, COMPOSE, *sorted((DEPLOY / "systemd").iterdir())]
    assert all(f.is_file() for f in files)
    return files


@pytest.mark.parametrize("path", deploy_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_deploy_files_only_name_settings_the_code_reads(path: Path) -> None:
    unknown = names_in(path) - names_read_by_config()
    assert not unknown, f"{path.name} names variables digest/config.py never reads: {sorted(unknown)}"


def test_env_example_documents_every_setting() -> None:
    missing = names_read_by_config() - names_in(ENV_EXAMPLE)
    assert not missing, f"deploy/env.example does not mention {sorted(missing)}"


def test_env_example_gives_each_variable_a_comment() -> None:
    assignment = re.compile(r"#?\s*(DIGEST_[A-Z0-9_]+)=")
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        match = assignment.match(line)
        if match:
            above = lines[number - 1] if number else ""
            assert above.startswith("#") and not assignment.match(above), (
                f"{match.group(1)} in deploy/env.example has no comment line right above it"
            )


def test_env_example_values_survive_a_shell_source() -> None:
    """`set -a; . /etc/digest/env` must not choke: a value with spaces or <> needs quotes."""
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("DIGEST_"):
            value = line.split("=", 1)[1]
            if re.search(r"[\s<>;&|]", value):
                assert value[0] == value[-1] == '"', f"quote the value of {line}"


def _compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_compose_has_the_whole_stack() -> None:
    services = _compose()["services"]
    for name in ("postgres", "redis", "mailpit", *APP_SERVICES):
        assert name in services, f"compose.yaml has no {name} service"


def test_compose_runs_exactly_one_beat() -> None:
    beat = _compose()["services"]["beat"]
    assert int(beat.get("deploy", {}).get("replicas", 1)) <= 1
    assert "beat" in beat["command"]


def test_compose_app_services_share_data_and_wait_for_their_dependencies() -> None:
    services = _compose()["services"]
    mounts = set()
    for name in APP_SERVICES:
        service = services[name]
        assert service["env_file"] == [".env"] or service["env_file"] == ".env"
        environment = service["environment"]
        assert environment["DIGEST_DATABASE_URL"] == "postgresql+psycopg://digest:digest@postgres:5432/digest"
        assert environment["DIGEST_BROKER_URL"] == "redis://redis:6379/0"
        assert environment["DIGEST_SMTP_URL"] == "smtp://mailpit:1025"
        data_dir = environment["DIGEST_DATA_DIR"]
        mounts.update(v for v in service["volumes"] if v.endswith(":" + data_dir))
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert len(mounts) == 1, f"the app services do not share one data volume: {mounts}"
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["digest", "init-db"]


def test_compose_web_serves_on_the_published_port_and_checks_healthz() -> None:
    web = _compose()["services"]["web"]
    command = web["command"]
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert any(str(p).endswith(f":{port}:{port}") or str(p) == f"{port}:{port}" for p in web["ports"])
    assert any(f"127.0.0.1:{port}/healthz" in part for part in web["healthcheck"]["test"])


def test_compose_web_believes_forwarded_headers_only_from_the_bridge_gateway() -> None:
    web = _compose()["services"]["web"]
    assert "*" not in web["command"] and "--forwarded-allow-ips" not in web["command"]
    trusted = web["environment"]["DIGEST_TRUSTED_PROXIES"]
    settings = get_settings({"DIGEST_TRUSTED_PROXIES": trusted, "DIGEST_SECRET_KEY": "k" * 32})
    assert settings.trusted_proxies == "172.16.0.0/12"
    with pytest.raises(ConfigError, match=r"cannot be '\*'"):
        get_settings({"DIGEST_TRUSTED_PROXIES": "*", "DIGEST_SECRET_KEY": "k" * 32})
    with pytest.raises(ConfigError, match=r"'proxy\.local' is not an IP address or network"):
        get_settings({"DIGEST_TRUSTED_PROXIES": "10.0.0.1, proxy.local", "DIGEST_SECRET_KEY": "k" * 32})
