"""Pure builders: from a custom resource's spec to the manifests of its children.

No API calls and no kopf here, so every manifest the operator applies can be validated against the
official Kubernetes schemas and the Pod Security Standards in unit tests.
"""
