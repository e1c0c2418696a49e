"""The API server, as `kubectl ucloud` calls it: the kubeconfig, and every request, with an error
answer turned into one sentence (`text.api_error`)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from ..models import GROUP, KIND, PLURAL, VERSION
from .text import RESOURCE, CliError, api_error, name_of, namespace_of

REQUEST_TIMEOUT = (10.0, 60.0)  # seconds: connect, read (a watch or `logs -f` reads longer)
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class Kube:
    """Every call of the plugin to the API server; an error answer becomes a `CliError`."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.host = api_client.configuration.host
        self._jobs = (GROUP, VERSION, namespace, PLURAL)  # where this namespace's jobs are

    def _call(
        self,
        verb: str,
        resource: str,
        call: Callable[..., Any],
        *args: Any,
        name: str | None = None,
        all_namespaces: bool = False,
        what: str | None = None,
        **kwargs: Any,
    ) -> Any:
        try:
            return call(*args, **kwargs)
        except ApiException as error:
            raise api_error(
                error.status,
                error.reason,
                error.body,
                verb=verb,
                resource=resource,
                namespace=None if all_namespaces else self.namespace,
                name=name,
                what=what,
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            cause = getattr(error, "reason", None) or error
            raise CliError(f"cannot reach the API server at {self.host}: {cause}") from None

    def _request(
        self, verb: str, resource: str, call: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        """A request of one answer, as the JSON the API server sent."""
        response = self._call(
            verb,
            resource,
            call,
            *args,
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT,
            **kwargs,
        )
        answer: dict[str, Any] = json.loads(response.data)
        return answer

    def get_job(self, name: str) -> dict[str, Any]:
        get = self.custom.get_namespaced_custom_object
        return self._request("get", RESOURCE, get, *self._jobs, name, name=name)

    def list_jobs(self, all_namespaces: bool) -> list[dict[str, Any]]:
        if all_namespaces:
            everywhere = self.custom.list_cluster_custom_object
            listed = self._request(
                "list", RESOURCE, everywhere, GROUP, VERSION, PLURAL, all_namespaces=True
            )
        else:
            listed = self._request(
                "list", RESOURCE, self.custom.list_namespaced_custom_object, *self._jobs
            )
        items: list[dict[str, Any]] = listed.get("items") or []
        return sorted(items, key=lambda job: (namespace_of(job), name_of(job)))

    def patch_job(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A merge patch; with metadata.resourceVersion in it, ConflictError if the job changed."""
        merge = self.custom.patch_namespaced_custom_object
        return self._request("patch", RESOURCE, merge, *self._jobs, name, patch, name=name)

    def watch_job(self, name: str, resource_version: str, seconds: int) -> Iterator[dict[str, Any]]:
        """The watch events of one job, for at most `seconds`; ends early when the
        resourceVersion is too old (410), for the caller to read the job afresh."""
        stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            field_selector=f"metadata.name={name}",
            resource_version=resource_version,
            timeout_seconds=seconds,
            deserialize=False,
            _request_timeout=(REQUEST_TIMEOUT[0], seconds + 15),
        )
        while event := self._call("watch", RESOURCE, _next_event, stream):
            yield event

    def list_events(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """The job's Events: core/v1 lists those posted through events.k8s.io/v1 too."""
        metadata = job.get("metadata", {})
        selector = (
            f"involvedObject.kind={KIND},involvedObject.name={metadata.get('name', '')},"
            f"involvedObject.uid={metadata.get('uid', '')}"
        )
        listed = self._request(
            "list",
            "events",
            self.core.list_namespaced_event,
            self.namespace,
            field_selector=selector,
        )
        return listed.get("items") or []

    def get_pod(self, name: str) -> dict[str, Any]:
        read = self.core.read_namespaced_pod
        return self._request("get", "pods", read, name, self.namespace, name=name)

    def pod_log(
        self, name: str, container: str | None, *, follow: bool, tail: int | None
    ) -> Iterator[bytes]:
        """The container's log as it arrives."""
        what = f'read the log of pod "{name}"' + (f', container "{container}"' if container else "")
        response = self._call(
            "get",
            "pods/log",
            self.core.read_namespaced_pod_log,
            name,
            self.namespace,
            container=container,
            follow=follow,
            tail_lines=tail,
            what=what,
            _preload_content=False,
            _request_timeout=None if follow else REQUEST_TIMEOUT,  # a log may be quiet long
        )
        chunks = response.stream(65536, decode_content=True)  # each chunk as it comes
        try:
            while chunk := self._call("get", "pods/log", next, chunks, b"", what=what):
                yield chunk
        finally:
            response.release_conn()


def _next_event(stream: Iterator[dict[str, Any]]) -> dict[str, Any] | None:
    """The next watch event; None at the end, or when the resourceVersion is too old (410)."""
    try:
        return next(stream, None)
    except ApiException as error:
        if error.status == 410:
            return None
        raise


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Kube:
    """The API client of the kubeconfig (or, in a pod and without a kubeconfig, of the pod's
    ServiceAccount) and the namespace: -n, else the context's, else "default"."""
    if kubeconfig and not os.path.exists(kubeconfig):
        raise CliError(f"kubeconfig {kubeconfig} does not exist")
    configuration = client.Configuration()
    default: str | None
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
        contexts, current = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=kubeconfig
        )
        chosen = (
            next((c for c in contexts if c.get("name") == context), None) if context else current
        )
        default = ((chosen or {}).get("context") or {}).get("namespace")
    except config.ConfigException as error:
        if kubeconfig or context or "KUBERNETES_SERVICE_HOST" not in os.environ:
            raise CliError(f"cannot load the kubeconfig: {error}") from None
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
        try:
            with open(SERVICE_ACCOUNT_NAMESPACE) as file:
                default = file.read().strip()
        except OSError:
            default = None
    configuration.retries = False  # say at once that the API server cannot be reached
    return Kube(client.ApiClient(configuration), namespace or default or "default")
