"""A user editing a job while the operator writes its status loses nothing: the operator writes
only the status subresource, so spec, labels and annotations are never clobbered."""

from __future__ import annotations

import threading

from kubernetes.client.exceptions import ApiException

from tests.support.cluster import Cluster, exits, history
from ucloud_operator.models import JobState, Reason


def test_user_edits_during_status_writes_are_kept(cluster: Cluster) -> None:
    cluster.create_job("edited", replicas=3, deadline=3600, annotations=exits(0, after="6s"))
    errors: list[ApiException] = []
    edits = 40

    def edit() -> None:
        for i in range(edits):  # races with the operator's IN_QUEUE, RUNNING, SUCCESS writes
            patch = {
                "metadata": {"labels": {f"team-{i}": "a"}, "annotations": {f"note-{i}": "b"}},
                "spec": {"activeDeadlineSeconds": 3600 + i},
            }
            try:
                cluster.patch_job("edited", patch)
            except ApiException as error:
                errors.append(error)

    editor = threading.Thread(target=edit)
    editor.start()
    cluster.wait_for_state("edited", JobState.RUNNING, timeout=60)
    editor.join(timeout=60)
    assert not errors
    job = cluster.job("edited")
    assert all(job["metadata"]["labels"].get(f"team-{i}") == "a" for i in range(edits))
    assert all(job["metadata"]["annotations"].get(f"note-{i}") == "b" for i in range(edits))
    assert job["spec"]["activeDeadlineSeconds"] == 3600 + edits - 1

    def extended() -> dict[str, object] | None:
        status = cluster.status("edited")
        seen = status.get("observedGeneration") == job["metadata"]["generation"]
        return status if seen else None

    cluster.wait_for("edited", "the last spec generation observed", extended)
    done = cluster.wait_for_state("edited", JobState.SUCCESS, Reason.COMPLETED, timeout=60)
    assert history(done) == [JobState.IN_QUEUE, JobState.RUNNING, JobState.SUCCESS]
    assert done["startedAt"] and done["expiresAt"]
