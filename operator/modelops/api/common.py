"""Building blocks shared by the three kinds' API models.

The pydantic models in `modelops.api` are the single source of truth for the CRDs: `crdgen` turns them
into structural OpenAPI schemas. So everything a CRD schema needs that JSON Schema cannot say on its own
(int-or-string, CEL rules, list types) is attached here as `json_schema_extra`, and everything the
operator needs to read an object is a plain typed attribute.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

# The grammar of resource.Quantity, as controller-gen emits it for CRDs.
QUANTITY_PATTERN = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SHA256_PATTERN = r"^[a-f0-9]{64}$"
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields refused.

    Refusing unknown fields keeps the models honest about the CRD: whatever the API server lets
    through (after pruning) parses here, and an object that does not parse is a bug we surface as
    `Stalled` rather than something we guess at.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def rules(*items: tuple[str, str] | dict[str, str]) -> dict[str, Any]:
    """`x-kubernetes-validations` from (rule, message) pairs or full rule dicts."""
    out = [{"rule": item[0], "message": item[1]} if isinstance(item, tuple) else dict(item) for item in items]
    return {"x-kubernetes-validations": out}


def immutable(field: str, hint: str) -> dict[str, Any]:
    """A transition rule that refuses any change of the field it sits on."""
    return rules(("self == oldSelf", f"{field} is immutable: {hint}"))


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not re.match(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (examples: 500m, 2, 4Gi, 1e3)")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
"""A Kubernetes resource quantity: an integer or a string such as `500m` or `4Gi`."""

DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class Condition(ApiModel):
    """One aspect of the object's state, following the Kubernetes API conventions (metav1.Condition)."""

    type: str = Field(
        description="Type of the condition: Ready, Reconciling and Stalled on every kind (read by kstatus, "
        "`kubectl wait` and Argo CD), plus kind-specific ones such as Running or Succeeded.",
        max_length=316,
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        description="A CamelCase machine-readable reason for the last transition.",
        max_length=1024,
        pattern=CONDITION_REASON_PATTERN,
    )
    message: str = Field(
        default="", description="A human-readable explanation of the last transition.", max_length=32768
    )
    last_transition_time: Timestamp = Field(
        description="When the condition last changed from one status to another (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation the condition was computed from."
    )


CONDITIONS_FIELD: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


class Toleration(ApiModel):
    """Lets the pods schedule onto nodes with a matching taint (same fields as a Pod's toleration)."""

    key: str | None = Field(
        default=None, description="The taint key to match; empty with Exists matches all."
    )
    operator: Literal["Exists", "Equal"] = Field(
        default="Equal", description="Equal compares the value; Exists matches any value."
    )
    value: str | None = Field(default=None, description="The taint value to match with operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="The taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="How long a NoExecute taint is tolerated before eviction."
    )


class SecretReference(ApiModel):
    """A Secret in the object's own namespace."""

    name: DnsLabel = Field(description="Name of the Secret, in the same namespace.")


FREE_FORM_OBJECT: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
