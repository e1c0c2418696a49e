"""The API writer's credentials: a bearer token however the client configuration holds it."""

from __future__ import annotations

from kubernetes import client

from ucloud_operator.kube import KubeApi


def api_with(**api_key: str) -> KubeApi:
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:6443"
    configuration.api_key = dict(api_key)
    return KubeApi(configuration, concurrency=1, instance="test")


def test_token_from_a_kubeconfig_or_the_service_account() -> None:
    # kubernetes >= 36 stores it as "BearerToken", already prefixed.
    headers = api_with(BearerToken="Bearer abc")._headers("application/json")
    assert headers["Authorization"] == "Bearer abc"


def test_token_under_the_old_name_gets_its_prefix() -> None:
    assert api_with(authorization="abc")._headers("x")["Authorization"] == "Bearer abc"


def test_client_certificates_send_no_authorization_header() -> None:
    assert "Authorization" not in api_with()._headers("x")
