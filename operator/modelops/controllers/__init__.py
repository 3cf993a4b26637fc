"""The operator: kopf handlers (thin, in `handlers`) over pure per-kind decisions.

- `entrypoint`: what `modelops operator` runs (arguments, logging, kopf in standalone mode);
- `login` (where credentials come from) and `settings` (every kopf setting we change);
- `reconcile`: a decision turned into status and events; one module per kind (`trainingjob`,
  `modelversion`, `inferenceservice`) holds that kind's decisions;
- `health` and `metrics`: /healthz, /readyz and /metrics; `permissions`: the RBAC rules it needs.
"""
