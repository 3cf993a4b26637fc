"""modelops: a Kubernetes operator for the whole life of a model."""

__version__ = "0.1.0"

GROUP = "modelops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
