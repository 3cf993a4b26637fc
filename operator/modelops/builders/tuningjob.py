"""Pure builders of a TuningJob's children: its trial TrainingJobs and the best trial's ModelVersion.

A trial is the template's TrainingJob spec with each parameter written at its field path, as a typed
value: the result is validated by the TrainingJob model itself, so a path that names no field, or a
value the field refuses, is reported with the parameter's name before anything is created. Each trial
carries what the study needs to be rebuilt after an operator restart (its number, parameters and the
sampler's bookkeeping) in labels and one annotation, and is owned by the TuningJob.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pydantic

import modelops.builders as builders
from modelops import API_VERSION
from modelops.api.trainingjob import TrainingJobSpec, output_format
from modelops.api.tuningjob import Parameter, TuningJobSpec

LABEL_TUNINGJOB = "modelops.dev/tuningjob"
LABEL_TRIAL = "modelops.dev/trial"
# {"number": n, "parameters": {...}, "systemAttrs": {...}}: what the study needs to add the trial back.
ANNOTATION_TRIAL = "modelops.dev/trial"
# Set (with runPolicy.suspend) when the pruner stops a trial: "<epoch>" it was pruned at.
ANNOTATION_PRUNED = "modelops.dev/pruned-at-epoch"
# Set (with runPolicy.suspend) when the search ended while the trial ran: the search's reason.
ANNOTATION_STOPPED = "modelops.dev/stopped"
# Sampler bookkeeping larger than this is left out of the annotation (see docs/tuningjob.md).
MAX_SYSTEM_ATTRS_BYTES = 32 * 1024

KIND = "TuningJob"


class ParameterError(ValueError):
    """A parameter cannot be placed in the template; the message names the parameter and its path."""


def trial_name(tuningjob: str, number: int) -> str:
    return f"{tuningjob}-trial-{number}"


def selector(tuningjob: str) -> str:
    return f"{LABEL_TUNINGJOB}={tuningjob}"


def _place(spec: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")[1:]  # drop the leading "spec"
    node = spec
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ParameterError(f"{path}: {key} is not an object")
        node = child
    node[keys[-1]] = value


def _wire_value(parameter: Parameter, value: Any) -> Any:
    """The value as written into the template: ints stay ints, choices stay the user's strings."""
    if parameter.type == "int":
        return int(value)
    if parameter.type == "float":
        return float(value)
    return value


def trial_spec(spec: TuningJobSpec, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's TrainingJob spec (wire form): the template with the parameters placed and checked."""
    raw = spec.trial_template.spec.to_wire()
    for parameter in spec.search_space:
        if parameter.name in parameters:
            _place(raw, parameter.path, _wire_value(parameter, parameters[parameter.name]))
    raw.setdefault("output", {})["createModelVersion"] = False
    try:
        # Lax validation converts a categorical "64" to the int the field wants; an unknown path is an
        # unknown field (the models forbid them), named with the parameter below.
        typed = TrainingJobSpec.model_validate(raw)
    except pydantic.ValidationError as error:
        raise ParameterError(_describe(spec, error)) from error
    return typed.to_wire()


def _describe(spec: TuningJobSpec, error: pydantic.ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False, include_input=False)[:5]:
        where = "spec." + ".".join(str(p) for p in item["loc"])
        owner = next(
            (p for p in spec.search_space if where == p.path or where.startswith(p.path + ".")),
            None,
        )
        owner = owner or next((p for p in spec.search_space if p.path.startswith(where)), None)
        hint = "no such field in a TrainingJob" if item["type"] == "extra_forbidden" else item["msg"]
        if owner is not None:
            problems.append(f"spec.searchSpace[{owner.name}].path {owner.path}: {hint}")
        else:
            problems.append(f"spec.trialTemplate.{where}: {hint}")
    return "; ".join(problems)


def check_paths(spec: TuningJobSpec) -> None:
    """Place every parameter's lowest value once: raises ParameterError naming a path that cannot work."""
    sample: dict[str, Any] = {}
    for p in spec.search_space:
        sample[p.name] = p.choices[0] if p.type == "categorical" and p.choices else p.low
    for p in spec.search_space:
        if p.type == "categorical" and p.choices:
            for choice in p.choices:  # every choice must suit the field, not just the first
                trial_spec(spec, {**sample, p.name: choice})
    trial_spec(spec, sample)


def annotation(number: int, parameters: Mapping[str, Any], system_attrs: Mapping[str, Any]) -> str:
    body: dict[str, Any] = {"number": number, "parameters": dict(parameters)}
    attrs = json.dumps(dict(system_attrs), sort_keys=True, default=str)
    if len(attrs) <= MAX_SYSTEM_ATTRS_BYTES:
        body["systemAttrs"] = dict(system_attrs)
    return json.dumps(body, sort_keys=True, default=str)


def trial(
    tuningjob: Mapping[str, Any],
    spec: TuningJobSpec,
    number: int,
    parameters: Mapping[str, Any],
    system_attrs: Mapping[str, Any],
) -> dict[str, Any]:
    """The trial's TrainingJob manifest."""
    meta = tuningjob["metadata"]
    name, namespace, uid = str(meta["name"]), str(meta["namespace"]), str(meta["uid"])
    template = spec.trial_template.metadata
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainingJob",
        "metadata": {
            "name": trial_name(name, number),
            "namespace": namespace,
            "labels": {
                **template.labels,
                LABEL_TUNINGJOB: name,
                LABEL_TRIAL: str(number),
                **builders.MANAGED_BY,
            },
            "annotations": {
                **template.annotations,
                ANNOTATION_TRIAL: annotation(number, parameters, system_attrs),
            },
            "ownerReferences": [builders.owner_reference(KIND, name, uid)],
        },
        "spec": trial_spec(spec, parameters),
    }


def stop_patch(annotation_key: str, value: str) -> dict[str, Any]:
    """The merge patch that stops a trial: suspended (its pods go away) and marked why, in one write."""
    return {"metadata": {"annotations": {annotation_key: value}}, "spec": {"runPolicy": {"suspend": True}}}


def model_version(
    tuningjob: Mapping[str, Any],
    spec: TuningJobSpec,
    *,
    best_trial: str,
    number: int,
    parameters: Mapping[str, Any],
    value: float,
    version: int,
) -> dict[str, Any]:
    """The ModelVersion of the best trial: its artifact, with the search's lineage in tags."""
    meta = tuningjob["metadata"]
    name, namespace = str(meta["name"]), str(meta["namespace"])
    registration = spec.registration
    assert registration is not None
    model = registration.model_name or name
    tags = {
        "modelops.dev/tuningjob": name,
        "modelops.dev/trial": str(number),
        f"objective.{spec.objective.metric}": f"{value:.6g}",
    }
    for key, val in parameters.items():
        tags[f"hyperparameter.{key}"] = str(val)
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelVersion",
        "metadata": {
            "name": f"{model}-{version}",
            "namespace": namespace,
            "labels": {LABEL_TUNINGJOB: name, LABEL_TRIAL: str(number), **builders.MANAGED_BY},
        },
        "spec": {
            "model": model,
            "version": version,
            "source": {"trainingJob": {"name": best_trial}},
            "format": output_format(spec.trial_template.spec),
            "description": f"Best trial ({best_trial}) of TuningJob {name}: "
            f"{spec.objective.metric} {value:.6g}.",
            "tags": tags,
            "promotion": registration.promotion.to_wire(),
        },
    }
