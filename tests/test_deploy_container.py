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


def test_the_compose_deployment_sees_its_node_and_keeps_its_consoles_private() -> None:
    """Issue 72: Prometheus scrapes the node by its compose name and alerts an Alertmanager of the file (127.0.0.1
    inside a container is the container itself); the consoles listen on 127.0.0.1 only, Grafana's admin password is
    the operator's; the node is paid on a chain: chain, RPC, public URL and a keystore (with its password as a secret)
    are required, never defaulted to a free node with payments off."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert "alertmanager" in services and "alertmanager-data" in compose["volumes"]
    for console in ("prometheus", "alertmanager", "grafana"):
        assert all(str(p).startswith("127.0.0.1:") for p in services[console]["ports"]), console
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    env = services["node"]["environment"]
    for required in ("PROOFMARKET_CHAIN", "PROOFMARKET_RPC_URL", "PROOFMARKET_PUBLIC_URL"):
        assert env[required].startswith(f"${{{required}:?"), required
    assert env["PROOFMARKET_NODE_KEYSTORE"].startswith("/data/") and "keystore-password" in services["node"]["secrets"]
    config = services["prometheus"]["command"][0].split("=", 1)[1]
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / Path(config).name).read_text())
    targets = {job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
               for job in prometheus["scrape_configs"]}
    assert targets["proofmarket-node"] == ["node:8402"]  # the node service, on its port
    assert services["node"]["ports"] == ["8402:8402"]
    alerting = [t for a in prometheus["alerting"]["alertmanagers"] for c in a["static_configs"] for t in c["targets"]]
    assert alerting == ["alertmanager:9093"]
