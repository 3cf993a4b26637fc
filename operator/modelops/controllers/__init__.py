"""The operator: kopf handlers (thin, in `handlers`) over pure per-kind decisions.

`entrypoint` is what `modelops operator` runs; `reconcile` turns a decision into status and events;
one module per kind (`trainingjob`, `modelversion`, `inferenceservice`) holds that kind's decisions.
"""
