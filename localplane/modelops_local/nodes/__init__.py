"""Nodes of the local control plane: the scheduler and one kubelet per node, in one process.

`python -m modelops_local.nodes --kubeconfig DIR/kubeconfig --dir DIR --nodes N --gpus G` registers N
Node objects, binds pending Pods to them (`scheduling` decides, `scheduler` acts) and runs the Pods
bound to each node as local processes (`kubelet`). Everything goes through the API server over HTTP.
"""
