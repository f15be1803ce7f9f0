"""The deployment manifests are valid and name the same groups, topics and ports as the code.

No Docker engine or cluster runs here, so this is what keeps them from drifting:
`kustomize build deploy/kubernetes` is checked by kubeconform against Kubernetes' own schemas
and KEDA's CRDs, deploy/compose.yaml against the compose-spec schema, and the objects against
each other and the code. deploy/local/manifest-tools.sh installs the tools and schemas
(pinned) into .fleet/ the first time, under a minute; after that it takes milliseconds.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from contracts import JOB_KINDS, LANES, lane_topic
from contracts.names import WORKER_KINDS, parked_topic
from workers.settings import WorkerSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
SECRET = "fleet-kafka"
GATEWAY = "fleet-gateway"
GATEWAY_KEYS = "fleet-gateway-keys"  # the Secret of the gateway's tenant keys
EXAMPLES = ("kafka-secret.yaml", "gateway-keys-secret.yaml")  # Secrets not in the base

# The workers' Kafka security settings (transport/connection.py), all from the ConfigMap.
SECURITY_CONFIG = {"FLEET_SECURITY_PROTOCOL", "FLEET_SASL_MECHANISM", "FLEET_SSL_CAFILE"}
CONFIG = {"FLEET_BOOTSTRAP_SERVERS", "FLEET_REDIS_URL", "FLEET_NAMESPACE", *SECURITY_CONFIG}
SECURITY_PROTOCOLS = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
# KEDA's Kafka scaler reads these authentication parameters (pkg/scalers/kafka_scaler.go).
KEDA_AUTH_PARAMETERS = {"sasl", "username", "password", "tls", "ca"}
# FLEET_SASL_MECHANISM in the words of KEDA's `sasl`.
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}

# The first run builds kubeconform and kustomize with Go (under a minute on 2 cores).
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def built(manifest_tools: dict[str, str]) -> str:
    """`kustomize build deploy/kubernetes`: what `kubectl apply -k` would send."""
    return subprocess.run(
        [manifest_tools["KUSTOMIZE"], "build", str(KUBERNETES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


@pytest.fixture(scope="module")
def objects(built: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(built) if doc]


def _of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _fleet_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The ConfigMap every worker and the gateway read their environment from."""
    return _of_kind(objects, "ConfigMap")["fleet-config"]


def _workers(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The workers' Deployments (the gateway's is the other one)."""
    deployments = _of_kind(objects, "Deployment")
    return {n: d for n, d in deployments.items() if d["metadata"]["labels"]["app"] == "fleet"}


def _kubeconform(manifest_tools: dict[str, str], manifests: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [
            manifest_tools["KUBECONFORM"],
            "-strict",
            "-summary",
            "-verbose",
            "-output",
            "json",
            "-schema-location",
            manifest_tools["KUBERNETES_SCHEMA_LOCATION"],
            "-schema-location",
            manifest_tools["KEDA_SCHEMA_LOCATION"],
            "-",
        ],
        input=manifests,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


def _statuses(report: dict[str, Any]) -> dict[str, str]:
    return {f"{r['kind']}/{r['name']}": r["status"] for r in report["resources"]}


def test_kubeconform_validates_every_resource_and_skips_none(
    manifest_tools: dict[str, str], built: str, objects: list[dict[str, Any]]
) -> None:
    examples = [(KUBERNETES / "examples" / name).read_text() for name in EXAMPLES]
    returncode, report = _kubeconform(manifest_tools, "\n---\n".join([built, *examples]))
    failures = [r for r in report["resources"] if r["status"] != "statusValid"]
    assert returncode == 0, failures
    count = len(objects) + len(EXAMPLES)
    assert report["summary"] == {"valid": count, "invalid": 0, "errors": 0, "skipped": 0}
    statuses = _statuses(report)
    assert len(statuses) == count
    assert set(statuses.values()) == {"statusValid"}
    kinds = {key.split("/")[0] for key in statuses}
    expected = {"ConfigMap", "Deployment", "PodDisruptionBudget", "ScaledObject", "Service"}
    assert kinds == {*expected, "TriggerAuthentication", "Secret", "HorizontalPodAutoscaler"}


def test_kubeconform_rejects_a_misspelled_field(
    manifest_tools: dict[str, str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        """
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken, labels: {app: broken}}
spec:
  selector: {matchLabels: {app: broken}}
  template:
    metadata: {labels: {app: broken}}
    spec:
      terminationGracePeriodSecond: 45
      containers: [{name: worker, image: ai-job-fleet:latest}]
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: broken}
spec:
  scaleTargetRef: {name: broken}
  minReplicaCont: 1
  triggers: [{type: kafka, metadata: {topic: t}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: fine}
spec:
  selector: {matchLabels: {app: fine}}
  template:
    metadata: {labels: {app: fine}}
    spec:
      containers: [{name: worker, image: ai-job-fleet:latest}]
"""
    )
    returncode, report = _kubeconform(manifest_tools, broken.read_text())
    assert returncode != 0
    assert report["summary"] == {"valid": 1, "invalid": 2, "errors": 0, "skipped": 0}
    invalid = {r["kind"]: r["msg"] for r in report["resources"] if r["status"] == "statusInvalid"}
    assert "terminationGracePeriodSecond" in invalid["Deployment"]
    assert "minReplicaCont" in invalid["ScaledObject"]


def test_kubeconform_reports_an_unknown_kind_as_an_error(manifest_tools: dict[str, str]) -> None:
    returncode, report = _kubeconform(
        manifest_tools, "apiVersion: example.com/v1\nkind: Unheard\nmetadata: {name: x}\n"
    )
    assert returncode != 0
    assert report["summary"]["errors"] == 1


def _compose_validator(manifest_tools: dict[str, str]) -> jsonschema.Draft7Validator:
    schema = json.loads(Path(manifest_tools["COMPOSE_SCHEMA"]).read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_compose_file_follows_the_compose_spec(manifest_tools: dict[str, str]) -> None:
    validator = _compose_validator(manifest_tools)
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert [e.message for e in validator.iter_errors(compose)] == []
    compose["services"]["generate"]["stop_grace_periods"] = "40s"
    assert not validator.is_valid(compose)


def test_compose_runs_every_kind() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    for kind in WORKER_KINDS:
        assert services[kind]["command"][:2] == ["worker", kind]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"]) | {p["path"] for p in kustomization["patches"]}
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_every_kind_has_a_deployment_with_probes_and_a_grace_period(
    objects: list[dict[str, Any]],
) -> None:
    deployments = _workers(objects)
    assert set(deployments) == {f"fleet-{kind}" for kind in WORKER_KINDS}
    assert set(_of_kind(objects, "Deployment")) == {*deployments, GATEWAY}
    for name, deployment in deployments.items():
        kind = name.removeprefix("fleet-")
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == ["worker", kind, "--health-port", "9400"]
        assert container["ports"] == [{"name": "health", "containerPort": 9400}]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        # Loading the models comes before the health port opens: liveness waits for it.
        startup = container["startupProbe"]
        assert startup["httpGet"] == {"path": "/healthz", "port": "health"}
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
        assert pod["terminationGracePeriodSeconds"] > WorkerSettings().shutdown_grace_s


def test_workers_take_config_from_the_configmap_and_credentials_from_the_secret(
    objects: list[dict[str, Any]],
) -> None:
    config = _fleet_config(objects)
    data = config["data"]
    assert set(data) == CONFIG
    assert data["FLEET_SECURITY_PROTOCOL"] in SECURITY_PROTOCOLS
    assert data["FLEET_SASL_MECHANISM"] in KEDA_SASL
    assert data["FLEET_NAMESPACE"] == WorkerSettings().namespace
    # The gateway's too: it reaches Kafka as the workers do.
    for deployment in _of_kind(objects, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
        secrets = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in container["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert secrets == {
            "FLEET_SASL_USERNAME": {"name": SECRET, "key": "username"},
            "FLEET_SASL_PASSWORD": {"name": SECRET, "key": "password"},
        }
        # The CA file FLEET_SSL_CAFILE names is the Secret's `ca`, mounted read-only.
        cafile = Path(data["FLEET_SSL_CAFILE"])
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(cafile.parent)]
        assert mount["readOnly"] is True
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"] == {
            "secretName": SECRET,
            "items": [{"key": "ca", "path": cafile.name}],
        }


def test_every_deployment_has_a_disruption_budget_selecting_it(
    objects: list[dict[str, Any]],
) -> None:
    budgets = list(_of_kind(objects, "PodDisruptionBudget").values())
    for name, deployment in _of_kind(objects, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selecting = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(selecting) == 1, f"{name}: {len(selecting)} PodDisruptionBudgets select it"
        assert selecting[0]["spec"] == {
            "maxUnavailable": 1,
            "selector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]},
        }
    assert len(budgets) == len(WORKER_KINDS) + 1  # and the gateway's


def test_keda_scales_every_kind_on_its_own_group_and_topic(
    objects: list[dict[str, Any]],
) -> None:
    settings = WorkerSettings()
    config = _fleet_config(objects)
    scaled = {
        so["spec"]["scaleTargetRef"]["name"]: so
        for so in _of_kind(objects, "ScaledObject").values()
    }
    # The batch coordinator holds no model: a fixed two replicas, not scaled on lag.
    assert set(scaled) == {f"fleet-{kind}" for kind in JOB_KINDS}
    for kind in JOB_KINDS:
        # One trigger per lane: a batch waiting on the batch lane scales the kind too.
        triggers = scaled[f"fleet-{kind}"]["spec"]["triggers"]
        by_topic = {t["metadata"]["topic"]: t for t in triggers}
        # And one on the park topic: a flood's excess waits there (decision 0045).
        parked = by_topic.pop(parked_topic(kind))
        assert parked["metadata"]["consumerGroup"] == settings.topology.parked_group(kind)
        assert set(by_topic) == {lane_topic(kind, lane) for lane in LANES}
        for lane in LANES:
            trigger = by_topic[lane_topic(kind, lane)]
            meta = trigger["metadata"]
            assert trigger["type"] == "kafka"
            assert meta["consumerGroup"] == settings.lane_group(kind, lane)
            assert meta["bootstrapServers"] == config["data"]["FLEET_BOOTSTRAP_SERVERS"]


def test_every_scaledobject_reads_lag_with_the_sasl_trigger_authentication(
    objects: list[dict[str, Any]],
) -> None:
    (auth,) = _of_kind(objects, "TriggerAuthentication").values()
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert set(refs) == KEDA_AUTH_PARAMETERS
    assert {(r["name"], r["key"]) for r in refs.values()} == {
        (SECRET, parameter) for parameter in KEDA_AUTH_PARAMETERS
    }
    for so in _of_kind(objects, "ScaledObject").values():
        for trigger in so["spec"]["triggers"]:
            assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}


def test_the_example_secret_has_every_key_and_agrees_with_the_configmap(
    objects: list[dict[str, Any]],
) -> None:
    (secret,) = yaml.safe_load_all((KUBERNETES / "examples" / "kafka-secret.yaml").read_text())
    config = _fleet_config(objects)
    assert secret["metadata"]["name"] == SECRET
    values = secret["stringData"]
    assert set(values) == KEDA_AUTH_PARAMETERS
    assert values["sasl"] == KEDA_SASL[config["data"]["FLEET_SASL_MECHANISM"]]
    uses_tls = config["data"]["FLEET_SECURITY_PROTOCOL"] in ("SSL", "SASL_SSL")
    assert values["tls"] == ("enable" if uses_tls else "disable")


def _gateway_settings(toml: str, keys_dir: str, keys: dict[str, str], tmp_path: Path) -> Any:
    """``toml`` loaded as `fleet gateway` loads it, with the keys its ``file:`` references
    name under ``keys_dir`` written to ``tmp_path`` instead: its [gateway] table."""
    for tenant, key in keys.items():
        (tmp_path / tenant).write_text(key + "\n")
    config = tmp_path / "gateway.toml"
    config.write_text(toml.replace(f"file:{keys_dir}/", f"file:{tmp_path}/"))
    return load_settings(config).gateway


def test_the_gateway_has_its_settings_keys_service_budget_and_autoscaler(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    deployment = _of_kind(objects, "Deployment")[GATEWAY]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert "replicas" not in deployment["spec"]  # the autoscaler's to set
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"
    # Its settings file and the tenants' keys, each from the volume that holds it.
    command, flag, path = container["args"]
    assert (command, flag) == ("gateway", "--config")
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    settings_mount = mounts[str(Path(path).parent)]
    configmap = _of_kind(objects, "ConfigMap")[volumes[settings_mount["name"]]["configMap"]["name"]]
    toml = configmap["data"][Path(path).name]
    (keys_mount,) = [
        m
        for m in container["volumeMounts"]
        if volumes[m["name"]].get("secret", {}).get("secretName") == GATEWAY_KEYS
    ]
    (example,) = yaml.safe_load_all((KUBERNETES / "examples" / EXAMPLES[1]).read_text())
    assert example["metadata"]["name"] == GATEWAY_KEYS
    keys = example["stringData"]
    gateway = _gateway_settings(toml, keys_mount["mountPath"], keys, tmp_path)
    assert {t: k.reveal() for t, k in gateway.api_keys.items()} == keys
    (port,) = container["ports"]
    assert (port["name"], port["containerPort"]) == ("http", gateway.port)
    assert gateway.host == "0.0.0.0"
    # The Service reaches every replica's port; the budget and the autoscaler name them.
    service = _of_kind(objects, "Service")[GATEWAY]["spec"]
    assert service["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["ports"]] == ["http"]
    autoscaler = _of_kind(objects, "HorizontalPodAutoscaler")[GATEWAY]["spec"]
    assert autoscaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": GATEWAY,
    }
    assert autoscaler["minReplicas"] >= 2  # one replica's drain leaves one answering
    (metric,) = autoscaler["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in container["resources"]["requests"]  # what its utilization is of


def test_compose_runs_the_gateway_with_its_settings_and_key(tmp_path: Path) -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    service = compose["services"]["gateway"]
    command, flag, path = service["command"]
    assert (command, flag) == ("gateway", "--config")
    (config,) = service["configs"]
    assert config["target"] == path
    (secret,) = service["secrets"]
    assert compose["secrets"][secret] == {"environment": "FLEET_GATEWAY_KEY"}
    toml = compose["configs"][config["source"]]["content"]
    tenants = tomllib.loads(toml)["gateway"]["api_keys"]
    assert tenants == {"demo": f"file:/run/secrets/{secret}"}
    gateway = _gateway_settings(toml, "/run/secrets", {secret: "sk-demo"}, tmp_path)
    (ports,) = service["ports"]
    assert ports.endswith(f":{gateway.port}")  # a range of host ports: it scales
    assert "-" in ports.split(":")[0]
    probe = service["healthcheck"]["test"]
    assert f"http://127.0.0.1:{gateway.port}/readyz" in probe[-1]


def test_the_image_holds_every_package() -> None:
    """What `uv sync` installs from the image's copy of the source: every package the
    project ships, and the gateway's extra."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")}
    assert {name.removesuffix("*") for name in shipped} <= copied
    assert "--extra gateway" in dockerfile
