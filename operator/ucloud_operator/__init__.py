"""ucloud-operator: runs UCloud-style jobs (UCloudJob) on Kubernetes."""

__version__ = "0.1.0"
