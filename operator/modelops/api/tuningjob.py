"""TuningJob: a hyperparameter search whose trials are TrainingJobs, proposed by Optuna.

The spec is a search space (float and int ranges, log scale, categorical choices), an objective (a
metric the trials already report, final or per epoch, minimised or maximised), and a trial template:
an ordinary TrainingJob spec into which each parameter is placed by field path
(`spec.hyperparameters.learningRate`), never by string substitution, so a template is checked by the
same schema as any TrainingJob. Trials report progress and metrics through the operator as every
TrainingJob does: there is no metrics-collector sidecar to inject.

What defines the search (space, objective, template, algorithm, pruner) is immutable once created:
a study whose space changed midway would mix trials that do not belong together. Limits (parallel
trials, max trials, failures, time budget) may change while it runs, as Katib allows.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from modelops.api.common import (
    CONDITIONS_FIELD,
    FREE_FORM_OBJECT,
    LABEL_VALUE_PATTERN,
    ApiModel,
    Condition,
    DnsLabel,
    Timestamp,
    immutable,
    rules,
)
from modelops.api.modelversion import Promotion
from modelops.api.trainingjob import TrainingJobSpec

# The longest TuningJob name: trial names are `<name>-trial-<n>` (n up to 9999), and a trial's own
# children (pods `<trial>-<rank>`, its Service) must stay DNS labels of at most 63 characters.
MAX_NAME_LENGTH = 40
MAX_TRIALS = 1000
# Intermediate values kept per trial in status (the most recent epochs): bounds the object's size.
MAX_INTERMEDIATE_VALUES = 100
LEADERBOARD_SIZE = 5

PARAMETER_PATH_PATTERN = r"^spec(\.[a-zA-Z][a-zA-Z0-9]*)+$"

# Objective metrics and where a trial reports them: the final value is status.metrics.<metric> of the
# trial's TrainingJob; per-epoch values come from the worker's validation series (docs/worker.md).
FINAL_METRICS = ("accuracy", "loss", "precision", "recall", "f1", "auc")
INTERMEDIATE_SERIES = {
    "accuracy": "modelops_training_val_accuracy",
    "loss": "modelops_training_val_loss",
}


class Parameter(ApiModel):
    """One dimension of the search space, and where its value goes in each trial."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.type == 'categorical' || (has(self.low) && has(self.high))",
                "spec.searchSpace[].low and spec.searchSpace[].high are required for float and int parameters",
            ),
            (
                "!has(self.low) || !has(self.high) || self.low < self.high",
                "spec.searchSpace[].low must be less than spec.searchSpace[].high",
            ),
            (
                "!self.log || (has(self.low) && self.low > 0.0)",
                "spec.searchSpace[].log needs spec.searchSpace[].low > 0 (a log scale has no zero)",
            ),
            (
                "!self.log || !has(self.step)",
                "spec.searchSpace[]: step and log cannot be combined; drop one of them",
            ),
            (
                "self.type != 'categorical' || (has(self.choices) && size(self.choices) > 0)",
                "spec.searchSpace[].choices must list at least one value for a categorical parameter",
            ),
            (
                "self.type == 'categorical' || !has(self.choices)",
                "spec.searchSpace[].choices applies only to type categorical; use low and high for ranges",
            ),
            (
                "self.type != 'categorical' || (!has(self.low) && !has(self.high) && !has(self.step) "
                "&& !self.log)",
                "spec.searchSpace[]: low, high, step and log apply only to float and int parameters",
            ),
            (
                "self.type != 'int' || ("
                + " && ".join(
                    f"(!has(self.{b}) || self.{b} == double(int(self.{b})))" for b in ("low", "high", "step")
                )
                + ")",
                "spec.searchSpace[]: low, high and step of an int parameter must be whole numbers",
            ),
        )
    )

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-zA-Z][a-zA-Z0-9_]*$",
        description="Name of the parameter, as it appears in the trials' parameters and the leaderboard.",
    )
    path: str = Field(
        max_length=253,
        pattern=PARAMETER_PATH_PATTERN,
        description="Field of the trial template that receives the value, e.g. "
        "spec.hyperparameters.learningRate or spec.model.hiddenSize. The field must exist in the "
        "TrainingJob schema; the value is placed there as a typed value, never substituted into text.",
    )
    type: Literal["float", "int", "categorical"] = Field(
        description="float or int: a range from low to high (inclusive); categorical: one of choices."
    )
    low: float | None = Field(default=None, description="Lower bound (float and int).")
    high: float | None = Field(default=None, description="Upper bound, inclusive (float and int).")
    step: float | None = Field(
        default=None,
        gt=0,
        description="Discretisation step (float and int; int defaults to 1). Needed on float parameters "
        "for the grid algorithm.",
    )
    log: bool = Field(default=False, description="Sample on a log scale (needs low > 0, no step).")
    choices: list[Annotated[str, Field(min_length=1, max_length=1024)]] | None = Field(
        default=None,
        max_length=256,
        # A set: a value listed twice would be sampled twice as often, and the grid would run it twice.
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="The values of a categorical parameter. Written as strings; a number or boolean is "
        'converted to the type of the field it is placed in (e.g. "64" for batchSize).',
    )

    @model_validator(mode="after")
    def _integral_int_bounds(self) -> Parameter:
        if self.type == "int":
            for field in ("low", "high", "step"):
                value = getattr(self, field)
                if value is not None and value != int(value):
                    raise ValueError(
                        f"parameter {self.name}: {field} of an int parameter must be a whole number"
                    )
        return self


class Objective(ApiModel):
    """What the search optimises: one metric the trials report."""

    metric: Literal["accuracy", "loss", "precision", "recall", "f1", "auc"] = Field(
        description="A validation metric of the trial: its final value is the trial's "
        "status.metrics.<metric>; accuracy and loss are also reported after every epoch (what pruning "
        "reads)."
    )
    direction: Literal["maximize", "minimize"] = Field(
        description="maximize (accuracy, f1...) or minimize (loss)."
    )
    source: Literal["final", "lastIntermediate", "bestIntermediate"] = Field(
        default="final",
        description="The value that scores a finished trial: final (the trial's final metric), "
        "lastIntermediate (the last per-epoch value) or bestIntermediate (the best per-epoch value).",
    )
    goal: float | None = Field(
        default=None,
        description="Stop the search (Succeeded, GoalReached) once a trial reaches this value.",
    )


class Algorithm(ApiModel):
    """The Optuna sampler proposing the trials' parameters."""

    name: Literal["random", "grid", "tpe", "cmaes"] = Field(
        default="tpe",
        description="random; grid (every combination once: categorical choices, int ranges and float "
        "ranges with a step); tpe (Tree-structured Parzen Estimator); cmaes (CMA-ES over the numeric "
        "parameters, categorical ones sampled at random).",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**31 - 1,
        description="Seed: the same seed, space and results propose the same trials again.",
    )
    startup_trials: int = Field(
        default=10,
        ge=0,
        le=MAX_TRIALS,
        description="tpe and cmaes: trials sampled at random before the model-based proposals start.",
    )


class Pruner(ApiModel):
    """Early stopping of unpromising trials from their per-epoch values (a step is an epoch)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.name != 'hyperband' || !has(self.maxResource) || self.maxResource > self.minResource",
                "spec.pruner.maxResource must be greater than spec.pruner.minResource",
            ),
        )
    )

    name: Literal["none", "median", "successiveHalving", "hyperband"] = Field(
        default="none",
        description="none; median (stop a trial whose best value so far is worse than the median of "
        "earlier trials at the same epoch); successiveHalving (asynchronous successive halving); "
        "hyperband (several successive-halving brackets). A pruned trial is suspended by the operator "
        "and counted as pruned.",
    )
    startup_trials: int = Field(
        default=5, ge=0, le=MAX_TRIALS, description="median: trials that finish before any pruning."
    )
    warmup_steps: int = Field(
        default=0, ge=0, le=100000, description="median: epochs a trial runs before it may be pruned."
    )
    min_resource: int = Field(
        default=1,
        ge=1,
        le=100000,
        description="successiveHalving and hyperband: epochs every trial gets before the first rung.",
    )
    max_resource: int | None = Field(
        default=None,
        ge=2,
        le=100000,
        description="hyperband: the most epochs a trial runs (default: the epochs of the first trial "
        "that finishes).",
    )
    reduction_factor: int = Field(
        default=3, ge=2, le=100, description="successiveHalving and hyperband: 1/n trials promoted per rung."
    )


class TrialTemplateMetadata(ApiModel):
    """Labels and annotations every trial TrainingJob gets."""

    labels: dict[str, Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]] = Field(
        default_factory=dict,
        max_length=64,
        description="Labels of each trial.",
    )

    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations of each trial.")


class TrialTemplate(ApiModel):
    """The TrainingJob each trial runs, before its parameters are placed."""

    metadata: TrialTemplateMetadata = Field(
        default_factory=TrialTemplateMetadata, description="Labels and annotations of each trial."
    )
    spec: TrainingJobSpec = Field(
        description="A TrainingJob spec. Each parameter's value is written at its path; trials never "
        "register a ModelVersion of their own (output.createModelVersion is set to false) — the "
        "TuningJob registers the best one (spec.registration)."
    )


class Registration(ApiModel):
    """The best trial's model, registered as a ModelVersion when the search succeeds."""

    model_name: DnsLabel | None = Field(
        default=None,
        description="Registered model name; defaults to the TuningJob's name.",
        json_schema_extra=rules(
            (
                "size(self) <= 57",
                "spec.registration.modelName: at most 57 characters, because the ModelVersion it creates is "
                "named <modelName>-<version> and must fit in 63",
            )
        ),
    )
    promotion: Promotion = Field(
        default_factory=Promotion,
        description="Aliases the version asks for and their gates (the registry's own promotion rules).",
    )


class TuningJobSpec(ApiModel):
    """The desired search."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.parallelTrials <= self.maxTrials",
                "spec.parallelTrials must not exceed spec.maxTrials",
            ),
            (
                "self.searchSpace.all(p, self.searchSpace.exists_one(q, q.path == p.path))",
                "spec.searchSpace[].path: two parameters write the same field; give each its own path",
            ),
            (
                "self.algorithm.name != 'grid' || self.searchSpace.all(p, p.type != 'float' || has(p.step))",
                "spec.algorithm.name grid needs a step on every float parameter of spec.searchSpace",
            ),
            (
                "self.algorithm.name != 'cmaes' || self.searchSpace.exists(p, p.type != 'categorical')",
                "spec.algorithm.name cmaes needs at least one float or int parameter in spec.searchSpace",
            ),
            (
                "!has(self.trialTemplate.spec.checkpoint) || !has(self.trialTemplate.spec.checkpoint.storage) "
                "|| !has(self.trialTemplate.spec.checkpoint.storage.existingClaim)",
                "spec.trialTemplate.spec.checkpoint.storage.existingClaim: trials run side by side and each "
                "needs its own checkpoint claim; drop existingClaim",
            ),
            (
                "self.pruner.name == 'none' || self.objective.metric in ['accuracy', 'loss']",
                "spec.pruner needs per-epoch values: spec.objective.metric must be accuracy or loss",
            ),
            (
                "self.objective.source == 'final' || self.objective.metric in ['accuracy', 'loss']",
                "spec.objective.source lastIntermediate and bestIntermediate need spec.objective.metric "
                "accuracy or loss (the metrics reported every epoch)",
            ),
        )
    )

    search_space: list[Parameter] = Field(
        min_length=1,
        max_length=32,
        description="The parameters to search over.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            **immutable("spec.searchSpace", "create a new TuningJob to search another space"),
        },
    )
    objective: Objective = Field(
        description="The metric to optimise.",
        json_schema_extra=immutable("spec.objective", "create a new TuningJob for another objective"),
    )
    trial_template: TrialTemplate = Field(
        description="The TrainingJob every trial runs.",
        json_schema_extra=immutable("spec.trialTemplate", "create a new TuningJob with another template"),
    )
    algorithm: Algorithm = Field(
        default_factory=Algorithm,
        description="The Optuna sampler.",
        json_schema_extra=immutable("spec.algorithm", "create a new TuningJob with another algorithm"),
    )
    pruner: Pruner = Field(
        default_factory=Pruner,
        description="Early stopping of unpromising trials.",
        json_schema_extra=immutable("spec.pruner", "create a new TuningJob with another pruner"),
    )
    parallel_trials: int = Field(default=1, ge=1, le=100, description="Trials running at the same time.")
    max_trials: int = Field(
        default=10, ge=1, le=MAX_TRIALS, description="Trials created in all (finished, pruned or failed)."
    )
    max_failed_trials: int = Field(
        default=3,
        ge=0,
        le=MAX_TRIALS,
        description="The search fails (MaxFailedTrialsReached) when more trials than this have failed.",
    )
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Time budget: once the search has run this long, running trials are stopped and "
        "the search ends (BudgetExhausted: Succeeded with the best trial so far, Failed without one).",
    )
    cleanup_policy: Literal["keepAll", "keepBest", "deleteFinished"] = Field(
        default="keepAll",
        description="What happens to finished trial TrainingJobs: keepAll; keepBest (keep the best "
        "keepBestTrials, delete the others once finished); deleteFinished (delete each once finished, "
        "except the best while a ModelVersion is to be registered from it). Their results stay in status.",
    )
    keep_best_trials: int = Field(
        default=3, ge=1, le=100, description="keepBest: how many of the best trials are kept."
    )
    registration: Registration | None = Field(
        default=None,
        description="Register the best trial's model as a ModelVersion when the search succeeds.",
    )


class TrialRecord(ApiModel):
    """One trial as the study knows it."""

    number: int = Field(ge=0, description="Trial number (0-based, Optuna's).")
    name: str = Field(description="The trial's TrainingJob.")
    state: Literal["Running", "Complete", "Pruned", "Failed", "Stopped"] = Field(
        description="Running; Complete (scored); Pruned (stopped early by the pruner); Failed (the "
        "TrainingJob failed, or finished without the objective metric); Stopped (ended with the search)."
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Parameter values.", json_schema_extra=FREE_FORM_OBJECT
    )
    value: float | None = Field(default=None, description="The objective value (Complete trials).")
    intermediate: list[list[float]] = Field(
        default_factory=list,
        description=f"Per-epoch values as [epoch, value], the most recent {MAX_INTERMEDIATE_VALUES}.",
    )
    reason: str | None = Field(default=None, description="Why a trial failed or was pruned.")
    start_time: Timestamp | None = Field(default=None, description="When the trial was created.")
    completion_time: Timestamp | None = Field(default=None, description="When it finished.")
    deleted: bool | None = Field(
        default=None, description="True once spec.cleanupPolicy deleted the trial's TrainingJob."
    )
    system_attrs: dict[str, Any] | None = Field(
        default=None,
        description="Bookkeeping of the pruner (rungs reached), kept so an operator restart resumes it.",
        json_schema_extra=FREE_FORM_OBJECT,
    )


class TrialSummary(ApiModel):
    """A scored trial."""

    number: int = Field(description="Trial number.")
    name: str = Field(description="The trial's TrainingJob.")
    value: float = Field(description="Objective value.")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Parameter values.", json_schema_extra=FREE_FORM_OBJECT
    )


class TuningJobStatus(ApiModel):
    """The observed state of the search."""

    phase: Literal["Pending", "Running", "Succeeded", "Failed"] | None = Field(
        default=None, description="A one-word summary for humans; automation should read conditions."
    )
    observed_generation: int | None = Field(default=None, description="The generation this status is for.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Reconciling, Stalled (kstatus) and Succeeded, Failed.",
        json_schema_extra=CONDITIONS_FIELD,
    )
    start_time: Timestamp | None = Field(default=None, description="When the first trial was created.")
    completion_time: Timestamp | None = Field(default=None, description="When the search ended.")
    trials_created: int = Field(default=0, ge=0, description="Trials created so far.")
    trials_running: int = Field(default=0, ge=0, description="Trials running now.")
    trials_succeeded: int = Field(default=0, ge=0, description="Trials finished and scored.")
    trials_pruned: int = Field(default=0, ge=0, description="Trials stopped early by the pruner.")
    trials_failed: int = Field(default=0, ge=0, description="Trials that failed.")
    best_trial: TrialSummary | None = Field(default=None, description="The best scored trial.")
    best_value: float | None = Field(default=None, description="The best objective value.")
    leaderboard: list[TrialSummary] = Field(
        default_factory=list, description=f"The {LEADERBOARD_SIZE} best scored trials, best first."
    )
    trials: list[TrialRecord] = Field(
        default_factory=list, description="Every trial, by number: the study as the operator keeps it."
    )
    model_version: str | None = Field(default=None, description="The ModelVersion registered.")


ROOT_RULES: list[dict[str, str]] = [
    {
        "rule": f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
        "message": f"metadata.name of a TuningJob must be at most {MAX_NAME_LENGTH} characters: trials "
        "are named <name>-trial-<n> and their pods must stay valid DNS labels",
    },
    {
        "rule": "self.metadata.name.matches('^[a-z]')",
        "message": "metadata.name of a TuningJob must start with a letter: its trials are TrainingJobs "
        "<name>-trial-<n>, whose Services are DNS-1035 labels",
    },
]


class TuningJob(ApiModel):
    """A TuningJob object as stored by the API server."""

    model_config = ConfigDict(extra="ignore")

    spec: TuningJobSpec
    status: TuningJobStatus | None = None
