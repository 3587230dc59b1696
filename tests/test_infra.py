"""Deployment files in infra/: Kubernetes manifests, the image definition, systemd units and cron."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
import yaml

INFRA = Path(__file__).resolve().parents[1] / "infra"
K8S = INFRA / "k8s"
IMAGE = "registry.example.com/ponder:0.1.0"

# Allowed values of each cron field: minute, hour, day of month, month, day of week.
CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
CRON_NAMES = [
    {},
    {},
    {},
    {name: i for i, name in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)},
    {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
]
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|PRIVATE)", re.IGNORECASE)


def is_valid_cron(expression: str) -> bool:
    """Check a standard 5-field cron expression (numbers, names, ranges, steps, lists)."""
    fields = expression.split()
    if len(fields) != 5:
        return False
    for text, (low, high), names in zip(fields, CRON_RANGES, CRON_NAMES, strict=True):
        for item in text.lower().split(","):
            base, _, step = item.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                return False
            if base == "*":
                continue
            bounds = base.split("-")
            if len(bounds) > 2:
                return False
            values = [names.get(bound, int(bound) if bound.isdigit() else None) for bound in bounds]
            if any(value is None or not low <= value <= high for value in values):
                return False
            if len(values) == 2 and values[0] > values[1]:
                return False
    return True


def manifests() -> list[tuple[Path, dict]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document is not None:
                documents.append((path, document))
    return documents


def of_kind(kind: str) -> list[dict]:
    return [document for _, document in manifests() if document["kind"] == kind]


def named(kind: str, name: str) -> dict:
    matches = [document for document in of_kind(kind) if document["metadata"].get("name") == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_specs() -> list[dict]:
    """Every pod template in the manifests, the RayJob's head and worker groups included."""
    specs = []
    for _, document in manifests():
        spec = document.get("spec", {})
        kind = document["kind"]
        if kind == "Deployment":
            specs.append(spec["template"]["spec"])
        elif kind == "CronJob":
            specs.append(spec["jobTemplate"]["spec"]["template"]["spec"])
        elif kind == "RayJob":
            cluster = spec["rayClusterSpec"]
            specs.append(cluster["headGroupSpec"]["template"]["spec"])
            specs.extend(group["template"]["spec"] for group in cluster["workerGroupSpecs"])
    return specs


def containers() -> list[dict]:
    return [container for spec in pod_specs() for container in spec["containers"]]


# -- every manifest -------------------------------------------------------------------


def test_manifests_parse_with_kinds():
    kinds = [document["kind"] for _, document in manifests()]

    assert {"ConfigMap", "CronJob", "RayJob", "Deployment", "Service", "ServiceAccount", "Role", "RoleBinding"} <= set(kinds)
    for path, document in manifests():
        assert document.get("apiVersion"), path
        assert document.get("kind"), path
        if document["kind"] != "Kustomization":
            assert document["metadata"].get("name") or document["metadata"].get("generateName"), path


@pytest.mark.parametrize(
    ("kind", "api_version"),
    [
        ("CronJob", "batch/v1"),
        ("Deployment", "apps/v1"),
        ("Service", "v1"),
        ("ConfigMap", "v1"),
        ("RayJob", "ray.io/v1"),
        ("Role", "rbac.authorization.k8s.io/v1"),
    ],
)
def test_api_versions(kind, api_version):
    for document in of_kind(kind):
        assert document["apiVersion"] == api_version, document["metadata"]


def test_no_secret_values():
    assert of_kind("Secret") == []
    for container in containers():
        for variable in container.get("env", []):
            if SECRET_NAME.search(variable["name"]):
                assert "value" not in variable, variable["name"]
    for config_map in of_kind("ConfigMap"):
        for key, value in config_map.get("data", {}).items():
            assert not SECRET_NAME.search(key), key
            assert not re.search(r"aws_secret_access_key|aws_access_key_id", value, re.IGNORECASE), key


def test_credentials_from_secret_reference():
    with_settings = [
        container
        for container in containers()
        if {"configMapRef": {"name": "ponder-config"}} in container.get("envFrom", [])
    ]

    assert {container["name"] for container in with_settings} == {"ray-head", "check", "serve"}
    for container in with_settings:
        assert {"secretRef": {"name": "ponder-s3-credentials", "optional": True}} in container["envFrom"], container["name"]


def test_ray_workers_get_no_credentials():
    rayjob = of_kind("RayJob")[0]
    for group in rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        for container in group["template"]["spec"]["containers"]:
            assert "envFrom" not in container
            assert not any(SECRET_NAME.search(variable["name"]) for variable in container.get("env", []))


def test_containers_run_as_non_root():
    for spec in pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True


# -- the nightly run ------------------------------------------------------------------


def test_cron_expression_checker():
    assert is_valid_cron("30 1 * * *")
    assert is_valid_cron("*/15 0-6,22 1 jan-mar mon-fri")
    assert not is_valid_cron("30 1 * *")
    assert not is_valid_cron("60 1 * * *")
    assert not is_valid_cron("0 24 * * *")
    assert not is_valid_cron("0 1 * * 8")
    assert not is_valid_cron("*/0 1 * * *")
    assert not is_valid_cron("5-1 1 * * *")
    assert not is_valid_cron("@daily")


def test_cronjobs_schedule_and_forbid():
    cronjobs = of_kind("CronJob")

    assert {cronjob["metadata"]["name"] for cronjob in cronjobs} == {"ponder-index-nightly", "ponder-index-check"}
    for cronjob in cronjobs:
        spec = cronjob["spec"]
        assert is_valid_cron(spec["schedule"]), spec["schedule"]
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["jobTemplate"]["spec"]["backoffLimit"] == 0


def test_rayjob_runs_ponder_index():
    rayjob = of_kind("RayJob")[0]
    spec = rayjob["spec"]

    assert rayjob["metadata"]["generateName"] == "ponder-index-"
    assert spec["entrypoint"].startswith("ponder index ")
    assert "--ray-address auto" in spec["entrypoint"]
    assert '--db "$PONDER_DB"' in spec["entrypoint"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["rayClusterSpec"]["rayVersion"] == "2.60.0"


def test_rayjob_deadline_before_trigger_deadline():
    rayjob = of_kind("RayJob")[0]
    trigger = named("CronJob", "ponder-index-nightly")

    assert rayjob["spec"]["activeDeadlineSeconds"] < trigger["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"]


def test_trigger_creates_rayjob_from_template():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    trigger = named("CronJob", "ponder-index-nightly")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    generated = kustomization["configMapGenerator"][0]
    script = trigger["containers"][0]["args"][0]

    assert generated == {"name": "ponder-rayjob", "files": ["rayjob.yaml=rayjob-index.yaml"]}
    assert "rayjob-index.yaml" not in kustomization["resources"]
    assert sorted(kustomization["resources"]) == sorted(
        path.name for path in K8S.glob("*.yaml") if path.name not in {"kustomization.yaml", "rayjob-index.yaml"}
    )
    assert trigger["volumes"][0]["configMap"]["name"] == "ponder-rayjob"
    assert trigger["containers"][0]["volumeMounts"][0]["mountPath"] == "/etc/ponder-rayjob"
    assert "kubectl create -f /etc/ponder-rayjob/rayjob.yaml" in script
    assert "exit 1" in script
    assert trigger["serviceAccountName"] == "ponder-index-trigger"


def test_trigger_role_allows_rayjobs():
    rules = named("Role", "ponder-index-trigger")["rules"]

    assert rules[0]["apiGroups"] == ["ray.io"]
    assert rules[0]["resources"] == ["rayjobs"]
    assert {"create", "get", "delete"} <= set(rules[0]["verbs"])


def test_check_cronjob_runs_runs_check():
    pod = named("CronJob", "ponder-index-check")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]

    assert args[:2] == ["runs", "--check"]
    assert "--max-age-hours" in args


# -- images and the server ------------------------------------------------------------


def test_ponder_containers_share_image():
    images = {container["name"]: container["image"] for container in containers() if container["name"] != "trigger"}

    assert set(images) == {"ray-head", "ray-worker", "check", "serve"}
    assert set(images.values()) == {IMAGE}


def test_serve_probes_health():
    deployment = named("Deployment", "ponder-serve")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    port = container["ports"][0]

    assert container["args"] == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    assert port == {"name": "http", "containerPort": 8000}
    assert container["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_serve_keys_from_secret():
    container = named("Deployment", "ponder-serve")["spec"]["template"]["spec"]["containers"][0]
    keys = [variable for variable in container["env"] if variable["name"] == "PONDER_API_KEYS"]

    assert len(keys) == 1
    assert "value" not in keys[0]
    assert keys[0]["valueFrom"]["secretKeyRef"]["name"] == "ponder-api-keys"


def test_service_targets_serve_pods():
    service = named("Service", "ponder-serve")
    pod_labels = named("Deployment", "ponder-serve")["spec"]["template"]["metadata"]["labels"]

    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_config_maps_mounted_where_expected():
    settings = named("ConfigMap", "ponder-settings")["data"]["ponder.toml"]
    config = named("ConfigMap", "ponder-config")["data"]

    assert "[index]" in settings
    assert "[storage]" in settings
    assert "[serve]" in settings
    assert config["PONDER_CONFIG"] == "/etc/ponder/ponder.toml"
    assert config["PONDER_DB"].startswith("s3://")


# -- image definition -----------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (INFRA / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_dockerfile_base_user_entrypoint():
    instructions = dockerfile_instructions()
    bases = [argument.split()[0] for name, argument in instructions if name == "FROM"]
    final_stage = instructions[max(i for i, (name, _) in enumerate(instructions) if name == "FROM") :]

    assert bases == ["python:3.11-slim", "python:3.11-slim"]
    assert ("USER", "ponder") in final_stage
    assert ("ENTRYPOINT", '["ponder"]') in final_stage
    assert any(name == "RUN" and "pip install ." in argument for name, argument in instructions)


def test_dockerignore_keeps_sources():
    lines = (INFRA / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]

    assert patterns[0] == "**"
    assert {"!pyproject.toml", "!indexer/**", "!solver/**", "!controller/**", "!jobs/**"} <= set(patterns)


# -- single machines ------------------------------------------------------------------


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string((INFRA / "systemd" / name).read_text(encoding="utf-8"))
    return parser


def test_index_service_unit():
    service = unit("ponder-index.service")

    assert {"Unit", "Service"} <= set(service.sections())
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["User"] == "ponder"
    assert " index ${PONDER_CORPUS} --db ${PONDER_DB}" in service["Service"]["ExecStart"]
    assert service["Service"]["ExecStart"].startswith("/opt/ponder/.venv/bin/ponder ")


def test_index_timer_unit():
    timer = unit("ponder-index.timer")

    assert {"Unit", "Timer", "Install"} <= set(timer.sections())
    assert timer["Timer"]["OnCalendar"] == "*-*-* 01:30:00"
    assert timer["Timer"]["Unit"] == "ponder-index.service"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_serve_service_unit():
    service = unit("ponder-serve.service")

    assert {"Unit", "Service", "Install"} <= set(service.sections())
    assert service["Service"]["User"] == "ponder"
    assert "ponder serve --host 127.0.0.1 --port 8000" in service["Service"]["ExecStart"]
    assert service["Service"]["Restart"] == "on-failure"


def test_crontab_lines():
    lines = [
        line
        for line in (INFRA / "cron" / "ponder.crontab").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]
    commands = [" ".join(line.split()[5:]) for line in lines]

    assert len(lines) == 3
    for line in lines:
        assert is_valid_cron(" ".join(line.split()[:5])), line
    assert any(" index " in command for command in commands)
    assert any(" prune " in command for command in commands)
    assert any(" runs --check " in command for command in commands)
