"""deploy/: the image's Containerfile (Debian's own Python and Node, the wheel, a non-root user, a health check, the
CLI as entry point) and the compose file naming every service with the volumes that must persist."""

from __future__ import annotations

from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_the_containerfile_builds_a_non_root_image_from_debian_with_a_health_check() -> None:
    text = (DEPLOY / "container" / "Containerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert "ARG BASE=localhost/debian:bookworm-slim" in lines and "FROM ${BASE}" in lines
    assert any("apt-get install" in line and "python3" in line and "nodejs" in line for line in lines)
    users = [line for line in lines if line.startswith("USER ")]
    assert users and users[-1] != "USER root"
    assert any(line.startswith("HEALTHCHECK") for line in lines) and 'ENTRYPOINT ["proofmarket"]' in lines
    assert 'CMD ["node"]' in lines and 'VOLUME ["/data"]' in lines


def test_the_compose_file_names_every_service_and_the_volumes_that_persist() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"node", "worker", "postgres", "redis", "prometheus", "grafana", "migrate"} <= set(services)
    named = set(compose["volumes"])

    def volumes(service: str) -> set[str]:
        return {str(v).split(":")[0] for v in services[service].get("volumes", [])}

    assert volumes("node") & volumes("worker") & named == {"home"}  # one store for the node and its workers
    for service, needs in {"postgres": "pg-data", "redis": "redis-data", "prometheus": "prometheus-data",
                           "grafana": "grafana-data"}.items():
        assert needs in volumes(service) and needs in named, service
    env = services["node"]["environment"]
    assert env["PROOFMARKET_QUEUE"] == "celery" and env["PROOFMARKET_MIGRATE"] == "off"
    assert env["PROOFMARKET_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["node"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
