"""Replica pods and the headless Service, as built for the API."""

from __future__ import annotations

from ucloud_operator.children import build_replica_pod, build_service

from .builders import JOB_UID, job


def test_replica_pod_name_labels_owner_env_and_restart_policy() -> None:
    spec = job(replicas=3).spec
    assert spec is not None
    pod = build_replica_pod("ns", "sim", JOB_UID, spec, 2)
    meta = pod["metadata"]
    assert meta["name"] == "sim-2" and meta["namespace"] == "ns"
    assert meta["labels"] == {"ucloud.dk/job-name": "sim", "ucloud.dk/rank": "2"}
    owner = meta["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("UCloudJob", JOB_UID, True)
    assert pod["spec"]["restartPolicy"] == "Never"
    assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == ("sim-2", "sim")
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env == {"UCLOUD_JOB_NAME": "sim", "UCLOUD_RANK": "2", "UCLOUD_REPLICAS": "3"}


def test_template_labels_and_annotations_are_kept_and_env_is_not_duplicated() -> None:
    template = {"containers": [{"name": "m", "image": "x",
                                "env": [{"name": "UCLOUD_RANK", "value": "9"},
                                        {"name": "MINE", "value": "1"}]}]}
    base = job(template_spec=template)
    assert base.spec is not None
    spec = base.spec.model_copy(update={"template": base.spec.template.model_copy(
        update={"metadata": {"labels": {"team": "a"}, "annotations": {"note": "n"}}})})
    pod = build_replica_pod("ns", "sim", JOB_UID, spec, 0)
    assert pod["metadata"]["labels"]["team"] == "a"
    assert pod["metadata"]["annotations"] == {"note": "n"}
    names = [e["name"] for e in pod["spec"]["containers"][0]["env"]]
    assert names == ["MINE", "UCLOUD_JOB_NAME", "UCLOUD_RANK", "UCLOUD_REPLICAS"]
    assert "subdomain" not in pod["spec"]  # one replica: no Service


def test_building_does_not_change_the_template() -> None:
    spec = job(replicas=2).spec
    assert spec is not None
    before = spec.template.model_dump()
    build_replica_pod("ns", "sim", JOB_UID, spec, 1)
    assert spec.template.model_dump() == before


def test_headless_service_selects_the_jobs_pods() -> None:
    service = build_service("ns", "sim", JOB_UID)
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"ucloud.dk/job-name": "sim"}
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["metadata"]["ownerReferences"][0]["uid"] == JOB_UID
