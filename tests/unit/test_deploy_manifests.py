"""The deployment manifests name the same groups, topics and ports as the code.

No Docker engine or cluster runs here, so this is what keeps them from drifting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from contracts import JOB_KINDS, request_topic
from workers.settings import WorkerSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _docs(name: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((DEPLOY / name).read_text()))


def test_keda_scales_every_kind_on_its_own_group_and_topic() -> None:
    settings = WorkerSettings()
    triggers = {
        doc["spec"]["scaleTargetRef"]["name"]: doc["spec"]["triggers"][0]["metadata"]
        for doc in _docs("kubernetes/keda.yaml")
    }
    assert set(triggers) == {f"fleet-{kind}" for kind in JOB_KINDS}
    for kind in JOB_KINDS:
        meta = triggers[f"fleet-{kind}"]
        assert meta["consumerGroup"] == settings.group_for(kind)
        assert meta["topic"] == request_topic(kind)


def test_every_kind_has_a_deployment_with_probes_and_a_grace_period() -> None:
    deployments = [d for d in _docs("kubernetes/workers.yaml") if d["kind"] == "Deployment"]
    assert {d["metadata"]["labels"]["kind"] for d in deployments} == set(JOB_KINDS)
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        kind = deployment["metadata"]["labels"]["kind"]
        assert container["args"][:2] == ["worker", kind]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert pod["terminationGracePeriodSeconds"] > WorkerSettings().shutdown_grace_s


def test_compose_runs_every_kind() -> None:
    services = _docs("compose.yaml")[0]["services"]
    for kind in JOB_KINDS:
        assert services[kind]["command"][:2] == ["worker", kind]
