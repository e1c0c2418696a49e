"""The reliability tier reuses the integration tier's cluster, operator and namespace fixtures."""

from tests.integration.conftest import (  # noqa: F401 - fixtures, re-exported for pytest
    api_client,
    cluster,
    crd_installed,
    kubeconfig,
    kubectl_bin,
    operator,
)
