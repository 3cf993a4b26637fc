"""Building blocks shared by the three kinds' API models.

The pydantic models in `modelops.api` are the single source of truth for the CRDs: `crdgen` turns them
into structural OpenAPI schemas. So everything a CRD schema needs that JSON Schema cannot say on its own
(int-or-string, CEL rules, list types) is attached here as `json_schema_extra`, and everything the
operator needs to read an object is a plain typed attribute.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

# The grammar of resource.Quantity, as controller-gen emits it for CRDs.
QUANTITY_PATTERN = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SHA256_PATTERN = r"^[a-f0-9]{64}$"
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A label value (and so a node label a nodeSelector can match): at most 63 characters, or empty.
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
# A label key or taint key: an optional DNS-subdomain prefix and a name of at most 63 characters.
QUALIFIED_NAME_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# A container image reference (the distribution/reference grammar, simplified): an optional registry
# host[:port], lowercase path components, an optional tag and digest. The kubelet refuses anything else
# with InvalidImageName only after the pod exists, so it is refused here, at apply.
IMAGE_PATTERN = (
    r"^([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*(:[0-9]+)?/)?"
    r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@[a-z0-9]+([+._-][a-z0-9]+)*:[a-fA-F0-9]{32,})?$"
)
# Free text that ends up in a file name, a column name or a metric name: no control characters and no
# leading or trailing whitespace (both are invisible in `kubectl get -o yaml` and never what was meant).
# (A space and \x00-\x1f spell out RE2's ASCII-only \s: pydantic's regex engine reads \s as Unicode
# whitespace, and the operator must accept everything the API server accepts.)
PRINTABLE_PATTERN = r"^[^ \x00-\x1f\x7f]([^\x00-\x1f\x7f]*[^ \x00-\x1f\x7f])?$"
# A relative path inside a claim: not absolute, printable, no surrounding whitespace, not ending in '/'
# (`..` segments are refused by the rule `inside_claim` adds).
# The pod fields an environment variable may read (core/v1 ObjectFieldSelector in env): the API server
# refuses any other path only when the pod is created.
ENV_FIELD_PATH_PATTERN = (
    r"^(metadata\.(name|namespace|uid)|metadata\.(labels|annotations)\['[^']+'\]"
    r"|spec\.(nodeName|serviceAccountName)|status\.(hostIP|hostIPs|podIP|podIPs))$"
)
RELATIVE_PATH_PATTERN = r"^[^/ \x00-\x1f\x7f]([^\x00-\x1f\x7f]*[^/ \x00-\x1f\x7f])?$"


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


def inside_claim(field: str) -> dict[str, Any]:
    """A rule refusing `..` segments in a path, so that it cannot leave the claim it is a path of."""
    return rules(
        (
            "!self.matches('(^|/)[.][.](/|$)')",
            f"{field} must not contain '..' segments: give a path inside the claim, e.g. data/train.csv",
        )
    )


def immutable(field: str, hint: str) -> dict[str, Any]:
    """A transition rule that refuses any change of the field it sits on."""
    return rules(("self == oldSelf", f"{field} is immutable: {hint}"))


# Non-negative quantities: the grammar above without a leading sign. The API server refuses a negative
# request or limit only when it validates the pod (and a negative claim size when it validates the
# claim), long after `kubectl apply` succeeded; refusing the sign here puts the error where the user is.
NON_NEGATIVE_QUANTITY_PATTERN = QUANTITY_PATTERN.replace(r"^(\+|-)?", r"^\+?", 1)
# Positive quantities (claim sizes: a PersistentVolumeClaim of 0 bytes is refused): a non-zero digit.
POSITIVE_QUANTITY_PATTERN = NON_NEGATIVE_QUANTITY_PATTERN.replace(
    r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))", r"(([0-9]*[1-9][0-9]*(\.[0-9]*)?)|([0-9]*\.[0-9]*[1-9][0-9]*))", 1
)
assert NON_NEGATIVE_QUANTITY_PATTERN != QUANTITY_PATTERN != POSITIVE_QUANTITY_PATTERN

_QUANTITY_EXAMPLES = "a quantity such as 500m, 2, 1.5 or 4Gi"


def _quantity_checker(pattern: str, what: str) -> Any:
    def check(value: int | str) -> int | str:
        if isinstance(value, bool) or len(str(value)) > 64 or not re.match(pattern, str(value)):
            raise ValueError(f"{value!r} is not {what} ({_QUANTITY_EXAMPLES})")
        return value

    return check


def _quantity_schema(pattern: str, minimum: int, rule: str, message: str) -> dict[str, Any]:
    # The pattern and minimum refuse on every Kubernetes version; the CEL rule (1.25+) says why in
    # words, where the pattern's own error would only print the regular expression. An int-or-string
    # is `dyn` in CEL, hence the type test Kubernetes documents for it (`string(self)` would have no
    # bounded size, and the API server would refuse the rule's cost).
    return {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": pattern,
        # No real quantity is longer. (kube-apiserver sizes an int-or-string at the request limit
        # whatever maxLength says, so the rules below are kept cheap: a prefix test, a short regex.)
        "maxLength": 64,
        "minimum": minimum,
        "x-kubernetes-int-or-string": True,
        **rules((rule, message)),
    }


Quantity = Annotated[
    int | str,
    AfterValidator(_quantity_checker(NON_NEGATIVE_QUANTITY_PATTERN, "a non-negative Kubernetes quantity")),
    WithJsonSchema(
        _quantity_schema(
            NON_NEGATIVE_QUANTITY_PATTERN,
            0,
            "type(self) == string ? !self.startsWith('-') : self >= 0",
            f"must not be negative: use 0 or more, {_QUANTITY_EXAMPLES}",
        )
    ),
]
"""A Kubernetes resource quantity, zero or more: an integer or a string such as `500m` or `4Gi`."""

PositiveQuantity = Annotated[
    int | str,
    AfterValidator(_quantity_checker(POSITIVE_QUANTITY_PATTERN, "a positive Kubernetes quantity")),
    WithJsonSchema(
        _quantity_schema(
            POSITIVE_QUANTITY_PATTERN,
            1,
            "type(self) == string ? self.matches('^[+]?[0-9.]*[1-9]') : self > 0",
            f"must be greater than zero (a claim of no bytes is refused): {_QUANTITY_EXAMPLES}",
        )
    ),
]
"""A quantity greater than zero, for sizes of PersistentVolumeClaims (which refuse 0)."""

DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]

DNS_1035_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


@dataclasses.dataclass(frozen=True)
class NameLimit:
    """What a kind's metadata.name must be for every child the operator builds from it to be valid.

    `longest` is checked against the builders by `builders.names` (a unit test): when a builder
    lengthens a suffix, that test fails until the limit here follows.
    """

    longest: int
    because: str
    form_because: str
    starts_with_letter: bool = False

    def rules(self) -> tuple[dict[str, str], ...]:
        """Root-level CEL rules (CRDs may read metadata.name there) refusing any other name."""
        form = DNS_1035_LABEL_PATTERN if self.starts_with_letter else DNS_LABEL_PATTERN
        what = "a letter" if self.starts_with_letter else "a lowercase letter or digit"
        return (
            {
                "rule": f"size(self.metadata.name) <= {self.longest}",
                "message": f"metadata.name: at most {self.longest} characters, because {self.because}",
            },
            {
                "rule": f"self.metadata.name.matches('{form}')",
                "message": f"metadata.name: lowercase letters, digits and '-' only (no '.'), starting with "
                f"{what} and ending with a letter or digit, because {self.form_because}",
            },
        )


# Per kind; a new kind adds its entry here and a children function in `builders.names`.
NAME_LIMITS: dict[str, NameLimit] = {
    "TrainingJob": NameLimit(
        51,
        "its alert rules carry the label modelops.dev/alerts-for=trainingjob.<name> (at most 63 "
        "characters), and its Service <name>-workers and pods <name>-<rank> are DNS labels",
        "its Service <name>-workers is a DNS-1035 label and its pods' hostnames <name>-<rank> DNS labels",
        starts_with_letter=True,
    ),
    "ModelVersion": NameLimit(
        63,
        "its verification pod and the serving pods carry the name as a label value (at most 63 "
        "characters), and its restore Jobs are DNS labels",
        "its restore Jobs <name>-restore-<id> are DNS labels",
    ),
    "InferenceService": NameLimit(
        46,
        "its alert rules carry the label modelops.dev/alerts-for=inferenceservice.<name> (at most 63 "
        "characters), and its Services <name>, <name>-stable and <name>-canary are DNS labels",
        "its Services <name>, <name>-stable and <name>-canary are DNS-1035 labels",
        starts_with_letter=True,
    ),
}
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

    # The checks the API server applies to a Pod's tolerations, here so they fail at apply and not
    # when the operator creates the pods.
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
                "tolerations: value must be empty with operator Exists (it matches any value)",
            ),
            (
                "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
                "tolerations: a toleration without a key must use operator Exists (it matches every taint)",
            ),
            (
                "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                "tolerations: tolerationSeconds applies only to effect NoExecute",
            ),
        )
    )

    key: str | None = Field(
        default=None,
        max_length=316,
        pattern=r"^(" + QUALIFIED_NAME_PATTERN[1:-1] + r")?$",
        description="The taint key to match; empty with Exists matches all.",
    )
    operator: Literal["Exists", "Equal"] = Field(
        default="Equal", description="Equal compares the value; Exists matches any value."
    )
    value: str | None = Field(
        default=None,
        max_length=63,
        pattern=LABEL_VALUE_PATTERN,
        description="The taint value to match with operator Equal.",
    )
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
