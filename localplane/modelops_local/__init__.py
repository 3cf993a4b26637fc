"""The local control plane: an API server, nodes and controllers that run on one machine."""
