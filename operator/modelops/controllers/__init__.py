"""The operator: kopf handlers (thin, one `<kind>_handlers` module per kind) over pure per-kind decisions.

- `entrypoint`: what `modelops operator` runs (arguments, logging, kopf in standalone mode);
- `login` (where credentials come from) and `settings` (every kopf setting we change);
- `kinds`: the one table of kinds; `handlers`: registers everything; `registration`: the glue every
  kind shares; `children`: API refusals and missing dependencies turned into conditions;
- `reconcile`: a decision turned into status and events; one module per kind (`trainingjob`,
  `modelversion`, `inferenceservice`) holds that kind's decisions;
- `health` and `metrics`: /healthz, /readyz and /metrics; `permissions`: the RBAC rules it needs.
"""
