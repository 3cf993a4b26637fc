"""The local plane's controllers: what kube-controller-manager and kube-proxy do, for one machine.

Deployment/ReplicaSet, Service endpoints and a TCP proxy for ClusterIPs, HorizontalPodAutoscaler,
Job/CronJob, PersistentVolumeClaim binding and PodDisruptionBudget status, each as a pure function from
(object, observed children, time) to actions (see `actions`), driven by a thin loop (`runner`) over a
shared watch cache (`store`). Run it with `python -m modelops_local.controllers --kubeconfig K --dir D`.
"""
