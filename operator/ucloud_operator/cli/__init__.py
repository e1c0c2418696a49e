"""`kubectl ucloud`: a kubectl plugin for UCloudJobs (get, describe, logs, cancel, extend, wait).

Installed with the package as the `kubectl-ucloud` script, which kubectl finds on PATH. Flags go
after `ucloud` (kubectl hands a plugin only what follows its name). It reads the kubeconfig as
kubectl does (--kubeconfig, else KUBECONFIG, else ~/.kube/config; in a pod, the ServiceAccount)
and talks to the API server with the `kubernetes` client.

- `text`: what it prints and decides, plain functions of the API's dicts (unit-tested);
- `kube`: the kubeconfig and every call to the API server;
- `commands`: the subcommands, the arguments and `main`.
"""

from .commands import main

__all__ = ["main"]
