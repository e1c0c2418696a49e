"""The Helm chart (helm/ucloud-operator) and the plain-YAML install rendered from it.

Renders the chart with the helm binary of hack/build-control-plane.sh (cached: about a second)
and checks what a reviewer would: the CRD is the generated one, manifests/install.yaml is fresh,
the RBAC is exactly what the operator calls, the pod is hardened, every ci/*-values.yaml renders
and lints.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
import yaml

from ucloud_operator import settings

from .charts import (
    CHART,
    NAMESPACE,
    NO_RBAC,
    RELEASE,
    ROOT,
    Render,
    helm_template,
    kinds,
    named,
    one,
    sets,
    template_text,
)

# Exactly the API calls the operator makes (docs/architecture.md): (group, resource) -> verbs.
EXPECTED_RULES = {
    ("ucloud.dk", "ucloudjobs"): {"list", "watch"},
    ("ucloud.dk", "ucloudjobs/status"): {"patch"},
    ("ucloud.dk", "ucloudjobs/finalizers"): {"update"},
    ("", "pods"): {"list", "watch", "create", "delete"},
    ("", "services"): {"create", "delete"},
    ("", "events"): {"create"},
    ("scheduling.k8s.io", "podgroups"): {"get", "list", "watch", "create", "delete"},
}
# Gang admission (operator.gangAdmission): a PodGroup per job of more than one replica, watched,
# read, deleted when the job ends; rendered unless gangAdmission is off. Never its status (the
# scheduler writes it), never a Workload.
PODGROUPS = ("scheduling.k8s.io", "podgroups")
WITHOUT_GANGS = {key: verbs for key, verbs in EXPECTED_RULES.items() if key != PODGROUPS}
# The gangAdmission values the chart takes (YAML's unquoted on and off are booleans) -> the
# operator's --gang-admission.
GANG_VALUES = {"auto": "auto", "on": "on", "off": "off", "true": "on", "false": "off"}
# The node informer, granted apart by a ClusterRole (rbac.nodes): nodes are cluster-scoped.
EXPECTED_NODE_RULES = {("", "nodes"): {"list", "watch"}}
# Users' ClusterRoles, aggregated into view/edit/admin and bound to nobody
# (rbac.aggregateToDefaultRoles; tests/unit/test_chart_conventions.py checks them).
USERS_ROLES = {f"{RELEASE}-view", f"{RELEASE}-edit"}


def rules_of(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    rules: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no resourceNames, no URLs
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource)
                assert key not in rules, f"{key} granted by two rules"
                rules[key] = set(rule["verbs"])
    return rules


def assert_least_privilege(
    role: dict[str, Any], expected: dict[tuple[str, str], set[str]] = EXPECTED_RULES
) -> None:
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert not any("*" in item for item in rule[field]), f"wildcard in {rule}"
        # status and finalizers are subresources with their own rules, never mixed with the parent
        subresources = [r for r in rule["resources"] if "/" in r]
        assert not subresources or len(rule["resources"]) == 1, rule
    assert rules_of(role) == expected


def assert_nodes_readable(docs: list[dict[str, Any]]) -> None:
    """The ClusterRole <release>-nodes, bound to the operator's ServiceAccount, reads nodes."""
    role = named(docs, "ClusterRole", f"{RELEASE}-nodes")
    assert_least_privilege(role, EXPECTED_NODE_RULES)
    binding = named(docs, "ClusterRoleBinding", f"{RELEASE}-nodes")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": f"{RELEASE}-nodes",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
    ]


# ---------------------------------------------------------------- chart metadata


def test_chart_versions_follow_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"$', pyproject, re.MULTILINE)
    assert version
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == version.group(1)
    assert chart["kubeVersion"] == ">=1.30.0-0"


def test_image_user_matches_the_chart_uid() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users == ["65532:65532"], "the final image runs as numeric 65532:65532"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 65532
    assert values["podSecurityContext"]["runAsGroup"] == 65532


def _assert_closed(schema: dict[str, Any], path: str = "") -> None:
    """Every object in the schema whose properties are listed refuses unknown keys."""
    if "properties" in schema:
        assert schema.get("additionalProperties") is False, f"{path or '/'} accepts unknown keys"
        for name, sub in schema["properties"].items():
            _assert_closed(sub, f"{path}/{name}")
    if isinstance(schema.get("items"), dict):
        _assert_closed(schema["items"], f"{path}[]")


def test_values_schema_refuses_unknown_keys(helm: str) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    _assert_closed(schema)
    for typo in (
        "watchNamespace={a}",
        "crds.instal=false",
        "securityContext.readOnlyRootFileSystem=true",
        "operator.logFormat=xml",
    ):
        result = helm_template(helm, "--set", typo)
        assert result.returncode != 0, f"--set {typo} was accepted"


# ---------------------------------------------------------------- CRD


def test_chart_crd_file_is_a_copy_of_manifests_crd() -> None:
    copy = (CHART / "files" / "crd.yaml").read_text()
    assert copy == (ROOT / "manifests" / "crd.yaml").read_text(), (
        "helm/ucloud-operator/files/crd.yaml differs from manifests/crd.yaml: run `make manifests`"
    )


def test_rendered_crd_equals_manifests_crd(render: Render) -> None:
    crd = one(render(), "CustomResourceDefinition")
    expected = yaml.safe_load((ROOT / "manifests" / "crd.yaml").read_text())
    labels = crd["metadata"].pop("labels")
    annotations = crd["metadata"].pop("annotations")
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert annotations == {"helm.sh/resource-policy": "keep"}
    assert crd == expected


def test_crd_keep_annotation_and_switches(render: Render) -> None:
    kept = one(render(), "CustomResourceDefinition")
    assert kept["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    not_kept = one(render("--set", "crds.keep=false"), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in (not_kept["metadata"].get("annotations") or {})
    assert kinds(render("--set", "crds.install=false"), "CustomResourceDefinition") == []


# ---------------------------------------------------------------- install.yaml


def test_install_yaml_is_a_fresh_render(helm: str) -> None:
    installed = (ROOT / "manifests" / "install.yaml").read_text()
    fresh = template_text(helm)
    header, found, _ = installed.partition(fresh)
    assert found and installed.endswith(fresh), (
        "manifests/install.yaml is not the chart's default render: run `make manifests`"
    )
    assert all(line.startswith("#") for line in header.splitlines()), header


# ---------------------------------------------------------------- RBAC


def operators_cluster_roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in kinds(docs, "ClusterRole") if r["metadata"]["name"] not in USERS_ROLES]


def test_cluster_rbac_is_exactly_what_the_operator_calls(render: Render) -> None:
    docs = render()
    assert len(operators_cluster_roles(docs)) == len(kinds(docs, "ClusterRoleBinding")) == 2
    assert_nodes_readable(docs)
    role = named(docs, "ClusterRole", RELEASE)
    assert_least_privilege(role)
    binding = named(docs, "ClusterRoleBinding", RELEASE)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    sa = one(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert kinds(docs, "Role") == kinds(docs, "RoleBinding") == []


def test_namespaced_rbac_has_a_role_per_namespace_and_nothing_cluster_wide(
    render: Render,
) -> None:
    docs = render("-f", str(CHART / "ci" / "namespaced-values.yaml"))
    assert operators_cluster_roles(docs) == kinds(docs, "ClusterRoleBinding") == []
    roles = kinds(docs, "Role")
    bindings = kinds(docs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["a", "b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["a", "b"]
    for role in roles:
        assert_least_privilege(role)
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
        ]
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=a", "--namespace=b"]


def test_reading_nodes_can_be_granted_to_a_namespaced_install_or_left_out(
    render: Render,
) -> None:
    namespaced = render(
        "-f", str(CHART / "ci" / "namespaced-values.yaml"), "--set", "rbac.nodes=true"
    )
    assert len(operators_cluster_roles(namespaced)) == 1
    assert len(kinds(namespaced, "ClusterRoleBinding")) == 1
    assert_nodes_readable(namespaced)
    cluster = render("--set", "rbac.nodes=false")
    assert [r["metadata"]["name"] for r in operators_cluster_roles(cluster)] == [RELEASE]
    assert_least_privilege(named(cluster, "ClusterRole", RELEASE))


def test_values_of_a_release_older_than_node_lost_grace_still_render(render: Render) -> None:
    # `helm upgrade --reuse-values` keeps the old release's values, without the newer keys.
    docs = render("--set", "operator.nodeLostGrace=null", "--set", "rbac.nodes=null")
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if a.startswith("--node-lost-grace")]  # the operator's default
    assert_nodes_readable(docs)


def test_a_negative_node_lost_grace_is_refused(helm: str) -> None:
    result = helm_template(helm, "--set", "operator.nodeLostGrace=-1")
    assert result.returncode != 0 and "nodeLostGrace" in result.stderr


def test_rbac_and_service_account_can_be_left_out(render: Render) -> None:
    docs = render(*NO_RBAC)
    assert not [
        d
        for d in docs
        if d["kind"]
        in {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "ServiceAccount"}
    ]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "mine"


# ---------------------------------------------------------------- Deployment


def test_deployment_is_hardened(render: Render) -> None:
    deployment = one(render(), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["runAsGroup"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["terminationGracePeriodSeconds"] > 0
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security.get("privileged", False) is False
    # the read-only root filesystem gets a writable /tmp
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts == {"tmp": "/tmp"}
    assert "emptyDir" in volumes["tmp"]
    assert set(container["resources"]) == {"requests", "limits"}
    assert (
        set(container["resources"]["requests"])
        == set(container["resources"]["limits"])
        == {"cpu", "memory"}
    )


def test_deployment_probes_ports_args_and_env(render: Render) -> None:
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["args"] == [
        "--image-pull-grace=120",
        "--node-lost-grace=60",
        "--pod-policy=enforce",
        "--gang-admission=auto",
        "--log-level=INFO",
        "--log-format=json",
        "--workers=16",
        "--api-concurrency=32",
        "--metrics-address=:8080",
        "--health-address=:8081",
    ]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in (
        container["env"]
    )
    assert container["image"] == "ucloud-operator:0.1.0"  # the tag defaults to appVersion


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_leader_election_is_off_by_default(render: Render) -> None:
    docs = render()
    assert env_of(one(docs, "Deployment"))["UCLOUD_LEADER_ELECT"] == "false"
    assert not [d for d in docs if "coordination.k8s.io" in json.dumps(d.get("rules", []))]


def test_leader_election_adds_one_lease_and_standby_replicas(helm: str, render: Render) -> None:
    docs = render("--set", "leaderElection.enabled=true", "--set", "replicaCount=2")
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    env = env_of(deployment)
    assert env["UCLOUD_LEADER_ELECT"] == "true"
    assert env["UCLOUD_LEASE_NAMESPACE"] == NAMESPACE
    assert env["UCLOUD_LEASE_NAME"] == RELEASE
    (role,) = kinds(docs, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [RELEASE],
            "verbs": ["get", "update"],
        },
    ]
    assert_least_privilege(named(docs, "ClusterRole", RELEASE))  # the job rules are unchanged
    refused = helm_template(helm, "--set", "replicaCount=2")
    assert refused.returncode != 0
    assert "leaderElection.enabled" in refused.stderr


def test_values_reach_the_operator_flags(render: Render) -> None:
    docs = render(
        "--set",
        "operator.imagePullGrace=30",
        "--set",
        "operator.nodeLostGrace=0",
        "--set",
        "operator.podPolicy=off",
        "--set",
        "operator.gangAdmission=on",
        "--set",
        "operator.logLevel=DEBUG",
        "--set",
        "operator.logFormat=text",
        "--set",
        "operator.apiConcurrency=8",
        "--set",
        "metrics.port=9090",
        "--set",
        "health.port=9091",
        "--set",
        "image.digest=sha256:" + "a" * 64,
    )
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for flag in (
        "--image-pull-grace=30",
        "--node-lost-grace=0",
        "--pod-policy=off",
        "--gang-admission=on",
        "--log-level=DEBUG",
        "--log-format=text",
        "--api-concurrency=8",
        "--metrics-address=:9090",
        "--health-address=:9091",
    ):
        assert flag in container["args"]
    assert container["image"] == "ucloud-operator@sha256:" + "a" * 64
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_metrics_service_selects_the_operator_pod(render: Render) -> None:
    docs = render()
    service = one(docs, "Service")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert kinds(docs, "ServiceMonitor") == []
    monitor = one(render("--set", "metrics.serviceMonitor.enabled=true"), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()


# ---------------------------------------------------------------- ci values


@pytest.mark.parametrize("values", sorted(p.name for p in (CHART / "ci").glob("*-values.yaml")))
def test_ci_values_render_and_lint(helm: str, render: Render, values: str) -> None:
    path = CHART / "ci" / values
    docs = render("-f", str(path))
    assert one(docs, "Deployment")
    lint = subprocess.run(
        [helm, "lint", "--strict", str(CHART), "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_ci_values_cover_the_three_modes() -> None:
    names = {p.name for p in (CHART / "ci").glob("*-values.yaml")}
    assert {"default-values.yaml", "namespaced-values.yaml", "no-crds-values.yaml"} <= names


def test_admission_policy_refuses_what_the_pod_policy_refuses(render: Render) -> None:
    docs = render()
    policy = one(docs, "ValidatingAdmissionPolicy")
    binding = one(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rules[0]["resources"] == ["ucloudjobs"] and rules[0]["apiGroups"] == ["ucloud.dk"]
    messages = " ".join(v["message"] for v in policy["spec"]["validations"])
    for refused in ("privileged", "hostPath", "hostNetwork", "hostPID", "hostIPC"):
        assert refused in messages
    off = render("--set", "admissionPolicy.enabled=false")
    assert not kinds(off, "ValidatingAdmissionPolicy")
    assert not kinds(off, "ValidatingAdmissionPolicyBinding")


# ---------------------------------------------------------------- the operator's own parser

# The value behind each setting the chart passes (OperatorSettings field -> values.yaml key).
SETTING_VALUES = {
    "image_pull_grace": "operator.imagePullGrace",
    "node_lost_grace": "operator.nodeLostGrace",
    "pod_policy": "operator.podPolicy",
    "gang_admission": "operator.gangAdmission",
    "log_level": "operator.logLevel",
    "log_format": "operator.logFormat",
    "workers": "operator.workers",
    "api_concurrency": "operator.apiConcurrency",
    "namespaces": "watchNamespaces",
    "metrics_address": "metrics.port",
    "health_address": "health.port",
    "leader_elect": "leaderElection.enabled",
}
# The chart's defaults that differ from the operator's; values.yaml says why, next to the key.
DIFFERS = {"log_format"}
SAYS_WHY = "Differs from the operator's default"


def values_comment(key: str) -> str:
    """The comment block above a key of values.yaml ("operator.logFormat")."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    *parents, leaf = key.split(".")
    at = 0
    for depth, name in enumerate([*parents, leaf]):
        pattern = re.compile(rf"^{'  ' * depth}{re.escape(name)}:")
        at = next(i for i in range(at, len(lines)) if pattern.match(lines[i]))
    comment = []
    for line in reversed(lines[:at]):
        if not line.strip().startswith("#"):
            break
        comment.append(line.strip().lstrip("#").strip())
    return " ".join(reversed(comment))


def operator_settings(
    deployment: dict[str, Any],
) -> tuple[settings.OperatorSettings, settings.OperatorSettings]:
    """What the operator makes of the container's arguments and environment, with the
    downward API's values filled in; and its defaults in that same pod (no arguments, only
    the downward API's variables)."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    downward = {"metadata.name": "ucloud-operator-6c9d-x2x4q", "metadata.namespace": NAMESPACE}
    pod_env = {
        e["name"]: downward[e["valueFrom"]["fieldRef"]["fieldPath"]]
        for e in container["env"]
        if "fieldRef" in e.get("valueFrom", {})
    }
    env = {**pod_env, **{e["name"]: e["value"] for e in container["env"] if "value" in e}}
    try:
        ours = settings.parse(container["args"], env)
    except SystemExit as refused:  # argparse exits on an argument it does not know
        pytest.fail(f"the operator refuses {container['args']} (exit {refused.code})")
    return ours, settings.parse([], pod_env)


def differences(chart: settings.OperatorSettings, default: settings.OperatorSettings) -> set[str]:
    ignored = {"instance"}  # random per process
    return {
        name
        for name in SETTING_VALUES.keys() | vars(chart).keys() - ignored
        if getattr(chart, name) != getattr(default, name)
    }


@pytest.mark.parametrize(
    "values",
    [
        (),
        ("-f", str(CHART / "ci" / "namespaced-values.yaml")),
        ("--set", "leaderElection.enabled=true", "--set", "replicaCount=2"),
        ("--set", "operator.apiConcurrency=null", "--set", "operator.apiThreads=16"),
        sets(
            "operator.apiConcurrency=null",
            "operator.nodeLostGrace=null",
            "operator.gangAdmission=null",
        ),
        sets(
            "operator.imagePullGrace=30",
            "operator.podPolicy=off",
            "operator.gangAdmission=off",
            "operator.logLevel=DEBUG",
            "operator.logFormat=text",
            "operator.workers=4",
            "operator.apiConcurrency=64",
            "metrics.port=9090",
            "health.port=9091",
        ),
    ],
    ids=["defaults", "namespaced", "leader", "reused-apiThreads", "reused-older", "set"],
)
def test_every_argument_and_variable_is_one_the_operator_documents(
    render: Render, values: tuple[str, ...]
) -> None:
    deployment = one(render(*values), "Deployment")
    operator_settings(deployment)  # parses
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    actions = {
        option: action
        for action in settings.parser({})._actions
        for option in action.option_strings
    }
    readme = (ROOT / "README.md").read_text()
    documented = readme[readme.index("## Settings") : readme.index("## Metrics")]
    for arg in container["args"]:
        flag = arg.split("=", 1)[0]
        assert flag in actions, f"{arg}: not a flag of the operator"
        names = [o for o in actions[flag].option_strings if o.startswith("--")]
        assert flag == names[0], f"{arg}: an old name of {names[0]}"
        assert f"`{flag}`" in documented, f"{flag}: not in README's Settings"
    help_text = settings.parser({}).format_help()
    for env in container["env"]:
        if env["name"].startswith("UCLOUD_"):
            assert env["name"] in help_text and env["name"] in documented, env["name"]


def test_the_charts_defaults_are_the_operators_unless_values_yaml_says_why(
    render: Render,
) -> None:
    chart, default = operator_settings(one(render(), "Deployment"))
    assert chart.api_concurrency == default.api_concurrency == 32  # as every benchmark ran
    assert differences(chart, default) == DIFFERS
    for name, key in SETTING_VALUES.items():
        said = SAYS_WHY in values_comment(key)
        assert said == (name in DIFFERS), f"{key}: says why {said}"


def test_a_release_upgraded_with_reuse_values_keeps_its_api_threads(render: Render) -> None:
    # `helm upgrade --reuse-values` from a release rendered with `apiThreads` carries that key
    # and lacks `apiConcurrency`: its value is passed by the documented flag.
    docs = render("--set", "operator.apiConcurrency=null", "--set", "operator.apiThreads=16")
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--api-")] == ["--api-concurrency=16"]
    newer = render("--set", "operator.apiThreads=16")  # apiConcurrency set: it wins
    args = one(newer, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--api-")] == ["--api-concurrency=32"]
    neither = render("--set", "operator.apiConcurrency=null")
    args = one(neither, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if a.startswith("--api-")]  # the operator's default


def test_values_comment_reads_the_block_above_a_key() -> None:
    assert values_comment("operator.workers") == "-- Jobs reconciled at once (--workers)."
    assert "Differs from the operator's default" in values_comment("operator.logFormat")


# ---------------------------------------------------------------- gang admission

NAMESPACED = ("-f", str(CHART / "ci" / "namespaced-values.yaml"))  # watches a and b
RBAC_MODES = {"cluster": (), "namespaced": NAMESPACED}


def args_of(docs: list[dict[str, Any]]) -> list[str]:
    args: list[str] = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def gang_flags(docs: list[dict[str, Any]]) -> list[str]:
    return [a for a in args_of(docs) if a.startswith("--gang-admission")]


def job_roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The operator's job rules ("ucloud-operator.rules"): its ClusterRole, or its Role in each
    watched namespace."""
    roles = [*kinds(docs, "ClusterRole"), *kinds(docs, "Role")]
    return [r for r in roles if r["metadata"]["name"] == RELEASE]


@pytest.mark.parametrize("value", sorted(GANG_VALUES))
def test_gang_admission_is_passed_as_the_operators_flag(render: Render, value: str) -> None:
    docs = render("--set", f"operator.gangAdmission={value}")
    assert gang_flags(docs) == [f"--gang-admission={GANG_VALUES[value]}"]
    chart, default = operator_settings(one(docs, "Deployment"))
    assert chart.gang_admission == GANG_VALUES[value]
    assert default.gang_admission == "auto"


@pytest.mark.parametrize(
    ("written", "flag"), [("on", "on"), ("off", "off"), ('"on"', "on"), ("'off'", "off")]
)
def test_gang_admission_on_or_off_unquoted_in_a_values_file(
    render: Render, tmp_path: Any, written: str, flag: str
) -> None:
    # YAML reads an unquoted on or off as a boolean: the chart takes it as the word.
    values = tmp_path / "values.yaml"
    values.write_text(f"operator:\n  gangAdmission: {written}\n")
    docs = render("-f", str(values))
    assert gang_flags(docs) == [f"--gang-admission={flag}"]
    assert (PODGROUPS in rules_of(named(docs, "ClusterRole", RELEASE))) == (flag != "off")


@pytest.mark.parametrize("bad", ["bogus", "On", "enabled", "0", ""])
def test_the_schema_refuses_a_gang_admission_the_operator_does_not_take(
    helm: str, bad: str
) -> None:
    result = helm_template(helm, "--set", f"operator.gangAdmission={bad}")
    assert result.returncode != 0, f"operator.gangAdmission={bad!r} was accepted"
    assert "gangAdmission" in result.stderr


@pytest.mark.parametrize("mode", sorted(RBAC_MODES))
@pytest.mark.parametrize("value", sorted(GANG_VALUES))
def test_podgroups_are_granted_unless_gang_admission_is_off(
    render: Render, mode: str, value: str
) -> None:
    docs = render(*RBAC_MODES[mode], "--set", f"operator.gangAdmission={value}")
    roles = job_roles(docs)
    assert [r["kind"] for r in roles] == (["ClusterRole"] if mode == "cluster" else ["Role"] * 2)
    off = GANG_VALUES[value] == "off"
    for role in roles:
        assert_least_privilege(role, WITHOUT_GANGS if off else EXPECTED_RULES)
        podgroup_rules = [r for r in role["rules"] if "scheduling.k8s.io" in r["apiGroups"]]
        assert podgroup_rules == (
            []
            if off
            else [
                {
                    "apiGroups": ["scheduling.k8s.io"],
                    "resources": ["podgroups"],
                    "verbs": ["get", "list", "watch", "create", "delete"],
                }
            ]
        )


@pytest.mark.parametrize("mode", sorted(RBAC_MODES))
def test_a_release_from_before_gang_admission_renders_as_with_auto(
    render: Render, mode: str
) -> None:
    # `helm upgrade --reuse-values` from a release without the key: the operator's default.
    docs = render(*RBAC_MODES[mode], "--set", "operator.gangAdmission=null")
    assert gang_flags(docs) == []
    chart, _ = operator_settings(one(docs, "Deployment"))
    assert chart.gang_admission == "auto"
    for role in job_roles(docs):
        assert_least_privilege(role)


@pytest.mark.parametrize(
    "values",
    [
        (),  # the ci values below include the namespaced install
        ("--set", "operator.gangAdmission=on"),
        (*NAMESPACED, "--set", "operator.gangAdmission=on", "--set", "rbac.nodes=true"),
        sets("leaderElection.enabled=true", "replicaCount=2", "metrics.secure=true"),
        *(("-f", str(path)) for path in sorted((CHART / "ci").glob("*-values.yaml"))),
    ],
    ids=lambda values: " ".join(a.rsplit("/", 1)[-1] for a in values) or "defaults",
)
def test_no_rule_grants_podgroups_status_or_workloads(
    render: Render, values: tuple[str, ...]
) -> None:
    docs = render(*values)
    for role in [*kinds(docs, "ClusterRole"), *kinds(docs, "Role")]:
        for rule in role["rules"]:
            resources = rule.get("resources", [])
            assert not {"podgroups/status", "workloads", "workloads/status"} & set(resources)
            if "scheduling.k8s.io" in rule.get("apiGroups", []):
                # Only the operator's job rules, and only podgroups itself.
                assert role["metadata"]["name"] == RELEASE, role["metadata"]["name"]
                assert rule["apiGroups"] == ["scheduling.k8s.io"] and resources == ["podgroups"]
            for field in ("apiGroups", "resources"):
                assert "*" not in rule.get(field, []), rule
