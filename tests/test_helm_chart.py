"""The Helm chart (deploy/helm/rotator) describes the workload of the kustomize overlays.

The chart is rendered by Helm's own Go SDK (helm-python-sdk, which scripts/check-deploy installs
into .venv-deploy) through scripts/helm_chart.py, as `helm template` would. Each test renders it
and compares what it must share with deploy/base and deploy/overlays (read as they are), or
checks what only the chart has: the values schema, the alert rules, the hook Secrets, the test.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from rotator.config import parse_settings

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "deploy" / "helm" / "rotator"
DEPLOY = REPO / "deploy"
HELM_PYTHON = REPO / ".venv-deploy" / "bin" / "python"
EVERYTHING = DEPLOY / "helm" / "ci" / "daemon-everything-values.yaml"


def _helm_available() -> bool:
    if not HELM_PYTHON.exists():
        return False
    probe = subprocess.run(
        [HELM_PYTHON, "-c", "import helm_python"], capture_output=True, check=False
    )
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _helm_available(),
    reason="helm is not installed: scripts/check-deploy installs helm-python-sdk (Helm's Go SDK) "
    "into .venv-deploy; run it once",
)


def helm_template(*args: str, release: str = "rotator", namespace: str = "rotator"):
    """`helm template` of the chart: (exit status, objects by (kind, name), stderr)."""
    done = subprocess.run(
        [
            HELM_PYTHON,
            REPO / "scripts" / "helm_chart.py",
            "template",
            CHART,
            *("--release", release, "--namespace", namespace),
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    objects = {}
    if done.returncode == 0:
        for doc in yaml.safe_load_all(done.stdout):
            if doc:
                objects[doc["kind"], doc["metadata"]["name"]] = doc
    return done.returncode, objects, done.stderr


def render(*args: str, **where: str) -> dict[tuple[str, str], Any]:
    status, objects, stderr = helm_template(*args, **where)
    assert status == 0, stderr
    return objects


def kustomize(path: str) -> Any:
    """A manifest of deploy/ as kustomize applies it (each already names namespace rotator)."""
    return yaml.safe_load((DEPLOY / path).read_text("utf-8"))


def mode(name: str) -> tuple[str, str]:
    return ("--set-json", f'mode="{name}"')


def assert_same_pod(chart_pod: dict[str, Any], kustomize_pod: dict[str, Any]) -> None:
    """The pod template's spec is the overlay's, and its labels include the overlay's."""
    labels = chart_pod["metadata"]["labels"]
    assert kustomize_pod["metadata"]["labels"].items() <= labels.items()
    chart_spec, kustomize_spec = chart_pod["spec"], kustomize_pod["spec"]
    assert chart_spec == kustomize_spec, "pod spec differs from the kustomize overlay"


def test_daemon_renders_the_deployment_of_the_daemon_overlay():
    """Image, args, env, ports, probes, resources, security contexts, volumes and service
    account of the Deployment are those of deploy/overlays/daemon; its selector includes the
    overlay's."""
    objects = render(*mode("daemon"))
    chart, theirs = objects["Deployment", "rotator"], kustomize("overlays/daemon/deployment.yaml")
    assert chart["metadata"]["namespace"] == theirs["metadata"]["namespace"] == "rotator"
    assert theirs["metadata"]["labels"].items() <= chart["metadata"]["labels"].items()
    for key in ("replicas", "revisionHistoryLimit", "strategy"):
        assert chart["spec"][key] == theirs["spec"][key], key
    selector = chart["spec"]["selector"]["matchLabels"]
    assert theirs["spec"]["selector"]["matchLabels"].items() <= selector.items()
    assert selector.items() <= chart["spec"]["template"]["metadata"]["labels"].items()
    assert_same_pod(chart["spec"]["template"], theirs["spec"]["template"])
    assert ("CronJob", "rotator-reconcile") not in objects


def test_cronjob_renders_the_cronjob_of_the_cronjob_overlay():
    """Schedule, time zone, concurrency policy, deadlines, failure policy and the pod of the
    CronJob are those of deploy/overlays/cronjob; no Deployment, Service or PDB comes along."""
    objects = render(*mode("cronjob"))
    chart = objects["CronJob", "rotator-reconcile"]
    theirs = kustomize("overlays/cronjob/cronjob.yaml")
    assert theirs["metadata"]["labels"].items() <= chart["metadata"]["labels"].items()
    for key in (
        "schedule",
        "timeZone",
        "concurrencyPolicy",
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ):
        assert chart["spec"][key] == theirs["spec"][key], key
    assert chart["spec"]["suspend"] is False
    job, their_job = chart["spec"]["jobTemplate"], theirs["spec"]["jobTemplate"]
    assert their_job["metadata"]["labels"].items() <= job["metadata"]["labels"].items()
    for key in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        assert job["spec"][key] == their_job["spec"][key], key
    assert job["spec"]["podFailurePolicy"] == their_job["spec"]["podFailurePolicy"]
    assert_same_pod(job["spec"]["template"], their_job["spec"]["template"])
    kinds = {kind for kind, _ in objects}
    assert not kinds & {"Deployment", "Service", "PodDisruptionBudget", "Job"}


@pytest.mark.parametrize("name", ["daemon", "cronjob"])
def test_shared_objects_match_the_base(name):
    """ServiceAccount, ConfigMap (the very configuration of deploy/base/rotator.toml), the
    NetworkPolicy's rules and, for the daemon, the Service are those of the kustomize base."""
    objects = render(*mode(name))
    account = objects["ServiceAccount", "rotator"]
    assert account["automountServiceAccountToken"] is False
    config = objects["ConfigMap", "rotator-config"]["data"]["rotator.toml"]
    base = tomllib.loads((DEPLOY / "base" / "rotator.toml").read_text("utf-8"))
    assert tomllib.loads(config) == base
    chart, theirs = objects["NetworkPolicy", "rotator"], kustomize("base/networkpolicy.yaml")
    assert chart["spec"]["policyTypes"] == theirs["spec"]["policyTypes"]
    assert chart["spec"]["egress"] == theirs["spec"]["egress"]
    assert chart["spec"]["ingress"][0] == theirs["spec"]["ingress"][0]
    selector = chart["spec"]["podSelector"]["matchLabels"]
    assert theirs["spec"]["podSelector"]["matchLabels"].items() <= selector.items()
    if name == "daemon":
        service, their_service = (
            objects["Service", "rotator"],
            kustomize("overlays/daemon/service.yaml"),
        )
        for key in ("type", "ports"):
            assert service["spec"][key] == their_service["spec"][key], key
        assert service["metadata"]["annotations"] == their_service["metadata"]["annotations"]
        service_selector = service["spec"]["selector"]
        assert their_service["spec"]["selector"].items() <= service_selector.items()
        assert (
            service_selector == objects["Deployment", "rotator"]["spec"]["selector"]["matchLabels"]
        )


def test_rendered_configuration_is_one_rotator_accepts():
    """The ConfigMap of every option (hook credentials from Secrets) and one with numbers in
    its values (Helm turns them into floats) load as rotator's configuration."""
    objects = render("-f", str(EVERYTHING))
    settings = parse_settings(
        tomllib.loads(objects["ConfigMap", "rotator-config"]["data"]["rotator.toml"])
    )
    assert settings.server.hook_token_env == "ROTATOR_HOOK_TOKEN"
    assert settings.server.hook_token_vault is None
    assert settings.server.hook_hmac_key_env == "ROTATOR_HOOK_HMAC_KEY"
    numbers = '{"reconcile_interval": 30, "concurrency": 4, "lease_ttl": 90}'
    objects = render("--set-json", f"config.daemon={numbers}")
    raw = tomllib.loads(objects["ConfigMap", "rotator-config"]["data"]["rotator.toml"])
    daemon = parse_settings(raw).daemon
    assert (daemon.reconcile_interval, daemon.concurrency, daemon.lease_ttl) == (30, 4, 90)


def test_hook_secrets_come_from_existing_secrets():
    """hookSecrets names existing Secrets: their keys reach the container as the variables the
    rendered configuration reads, and a new configuration changes the pod's checksum."""
    objects = render("-f", str(EVERYTHING))
    container = objects["Deployment", "rotator"]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in container["env"]}
    assert env["ROTATOR_HOOK_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "rotator-hook",
        "key": "token",
        "optional": False,
    }
    assert env["ROTATOR_HOOK_HMAC_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "hmac_key"
    assert "secretKeyRef" not in str(render()["Deployment", "rotator"])
    checksums = {
        render(*args)["Deployment", "rotator"]["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"
        ]
        for args in ((), ("--set-json", 'config.daemon={"reconcile_interval": "30s"}'))
    }
    assert len(checksums) == 2


def test_existing_configmap_replaces_the_rendered_one():
    """existingConfigMap: no ConfigMap is rendered and the pods mount the one named."""
    objects = render("--set-json", 'existingConfigMap="my-rotator-config"')
    assert not [name for kind, name in objects if kind == "ConfigMap"]
    volumes = objects["Deployment", "rotator"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": "my-rotator-config"}} in volumes


def test_prometheus_rule_carries_the_alerts_file_itself():
    """The PrometheusRule's groups are deploy/prometheus/alerts.yaml's (the chart's file is a
    link to it); in another namespace and release, the CronJob alert follows them."""
    link = CHART / "files" / "alerts.yaml"
    assert link.is_symlink()
    assert link.resolve() == (DEPLOY / "prometheus" / "alerts.yaml").resolve()
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text("utf-8"))
    rule = render("--set-json", 'prometheusRule={"enabled": true}')["PrometheusRule", "rotator"]
    assert rule["spec"]["groups"] == alerts["groups"]
    elsewhere = render(
        "--set-json", 'prometheusRule={"enabled": true}', release="ops", namespace="security"
    )
    exprs = [
        r["expr"] for r in elsewhere["PrometheusRule", "ops-rotator"]["spec"]["groups"][0]["rules"]
    ]
    assert 'kube_job_status_failed{namespace="security", job_name=~"ops-rotator-.*"} > 0' in exprs


def test_service_monitor_scrapes_the_daemon_as_job_rotator():
    """The ServiceMonitor selects the daemon's Service, port http, /metrics, and takes its job
    label from the Service's name label (`rotator`, which RotatorDown expects); the CronJob,
    serving no /metrics, gets none."""
    objects = render("-f", str(EVERYTHING))
    monitor = objects["ServiceMonitor", "rotator"]
    service = objects["Service", "rotator"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "rotator"
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    cron = render("-f", str(EVERYTHING), *mode("cronjob"))
    assert ("ServiceMonitor", "rotator") not in cron
    assert ("PrometheusRule", "rotator") in cron


def test_disruption_budget_and_chart_test_in_daemon_mode():
    """The PDB covers the daemon's pods without blocking a drain of its one replica; the helm
    test Job asks the Service's /healthz, as hardened as the daemon, and its own NetworkPolicy
    lets it reach the daemon only."""
    objects = render()
    deployment = objects["Deployment", "rotator"]
    budget = objects["PodDisruptionBudget", "rotator"]
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert budget["spec"]["maxUnavailable"] == 1
    test = objects["Job", "rotator-test-healthz"]
    assert test["metadata"]["annotations"]["helm.sh/hook"] == "test"
    pod = test["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"][-1] == "http://rotator.rotator.svc:8080/healthz"
    assert (
        pod["containers"][0]["image"]
        == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    daemon_pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == daemon_pod["securityContext"]
    assert pod["containers"][0]["securityContext"] == daemon_pod["containers"][0]["securityContext"]
    test_labels = test["spec"]["template"]["metadata"]["labels"]
    policy = objects["NetworkPolicy", "rotator"]["spec"]
    assert not policy["podSelector"]["matchLabels"].items() <= test_labels.items()
    assert policy["ingress"][1]["from"][0]["podSelector"]["matchLabels"] == test_labels
    own = objects["NetworkPolicy", "rotator-test"]["spec"]
    assert own["podSelector"]["matchLabels"] == test_labels
    reach = own["egress"][0]["to"][0]["podSelector"]["matchLabels"]
    assert reach == deployment["spec"]["selector"]["matchLabels"]


def test_the_operator_guides_values_install(tmp_path):
    """The values file of the operator guide's chart install (its digest placeholder filled in)
    passes the schema and renders a configuration rotator accepts, with the image it names."""
    guide = (REPO / "docs" / "operator-guide.md").read_text("utf-8")
    blocks = [b for b in guide.split("```yaml\n")[1:] if b.startswith("# rotator-values.yaml")]
    assert len(blocks) == 1, "the guide shows no rotator-values.yaml"
    digest = "sha256:" + "ab" * 32
    values = tmp_path / "rotator-values.yaml"
    values.write_text(blocks[0].split("```")[0].replace("sha256:DIGEST", digest), "utf-8")
    objects = render("-f", str(values))
    container = objects["Deployment", "rotator"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"REGISTRY/rotator:0.1.0@{digest}"
    toml = objects["ConfigMap", "rotator-config"]["data"]["rotator.toml"]
    assert [t.name for t in parse_settings(tomllib.loads(toml)).targets] == ["web"]


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()
    server.server_close()


def test_chart_test_command_passes_on_200_and_fails_otherwise(health_server):
    """The helm test Job's command, run as the image would run it, exits 0 when /healthz
    answers 200 and non-zero on any other answer or none."""
    command = render()["Job", "rotator-test-healthz"]["spec"]["template"]["spec"]["containers"][0][
        "command"
    ]
    assert command[0] == "python"

    def run(url: str) -> int:
        return subprocess.run(
            [sys.executable, *command[1:-1], url], capture_output=True, check=False, timeout=30
        ).returncode

    assert run(f"{health_server}/healthz") == 0
    assert run(f"{health_server}/readyz") != 0
    assert run("http://127.0.0.1:9/healthz") != 0


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ('mode="sidecar"', "at '/mode': value must be one of 'daemon', 'cronjob'"),
        ('image={"digest": "latest"}', "at '/image/digest'"),
        ('daemon={"replicas": 0}', "at '/daemon/replicas'"),
        ('vaultAuth={"expirationSeconds": 60}', "at '/vaultAuth/expirationSeconds'"),
        ('securityContext={"allowPrivilegeEscalation": true}', "allowPrivilegeEscalation"),
        ('podSecurityContext={"runAsNonRoot": false}', "at '/podSecurityContext/runAsNonRoot'"),
        ('hookSecrets={"token": {"secretName": "Not_A_Name"}}', "secretName"),
        ("replicas=3", "additional properties 'replicas' not allowed"),
        ('config={"targets": []}', "at '/config/targets'"),
        (
            'config={"vault": {"auth": {"jwt_path": "/token"}}}',
            "config.vault.auth.jwt_path must be",
        ),
        (
            'service={"port": 9090}',
            "config.server.listen (0.0.0.0:8080) must listen on service.port",
        ),
    ],
)
def test_bad_values_are_refused_with_their_name(setting, says):
    """A value the schema (or the chart's own checks) refuses fails `helm template` with exit
    1 and a message naming the value, never a traceback."""
    status, _, stderr = helm_template("--set-json", setting)
    assert status == 1
    assert says in stderr
    assert "Traceback" not in stderr
