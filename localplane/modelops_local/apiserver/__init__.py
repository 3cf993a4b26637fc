"""The local API server: a Kubernetes API (real HTTP, kubeconfig, SQLite store) for `modelops local`.

Faithful enough for kubectl, helm, the official Python client and Kopf; see docs/local-apiserver.md.
"""
