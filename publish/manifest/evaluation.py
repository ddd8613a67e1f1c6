"""The manifest's `evaluation` section: the KLD evaluation, how it was measured and, once resolved, its figures.

Hand-written numbers for one variant, or a kld.json artifact (`publish.manifest.kldartifact`) for any number of
them; the artifact's figures are filled in by `kldartifact.resolve` before a card is rendered.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from publish.manifest.schemabase import Line, StrictModel
from publish.manifest.schemaerrors import Located


class Dataset(StrictModel):
    name: Line
    split: Line | None = None

    def __str__(self) -> str:
        return f"{self.name} ({self.split})" if self.split else self.name


class KldMetrics(StrictModel):
    median: Annotated[float, Field(ge=0)]
    p90: Annotated[float, Field(ge=0)]
    mean: Annotated[float, Field(ge=0)]
    mean_coverage: Annotated[float, Field(ge=0, le=1)] | None = None


class KldResult(StrictModel):
    """One evaluated variant's figures, filled in from kld.json by `kldartifact.resolve`, never written by hand.

    `statistics` is kld.json version 2's statistics object (None from a version 1 artifact or hand-written numbers).
    """

    branch: str
    metrics: KldMetrics
    statistics: dict[str, Any] | None = None


# How many positions one window of L tokens scores under each declared method.
KLD_METHODS: dict[str, tuple[str, Any]] = {
    "next-token": ("samples x (sequence_length - 1): every token that has a next token", lambda n: n - 1),
    "second-half": ("samples x (sequence_length / 2 - 1): llama.cpp's perplexity tool", lambda n: n // 2 - 1),
    "all-logits": ("samples x sequence_length: every row of logits (exllama model_diff)", lambda n: n),
}
# What the configuration table calls the evaluation text unless the manifest says otherwise.
DATASET_LABEL = "Evaluation Dataset"


class Kld(StrictModel):
    """KL divergence of quantized variants against the unquantized reference, and how it was measured.

    `branch` names one evaluated variant, `branches` several (or `all`). With `artifact`, the kld.json
    `hubpub eval` wrote, the configuration, positions and metrics left out here are taken from it, and any given
    in both places must agree; without it, the configuration and one variant's hand-written numbers are required.
    """

    branch: str | None = None
    branches: tuple[str, ...] | Literal["all"] | None = None
    method: Literal["next-token", "second-half", "all-logits"] = "next-token"
    approximation: Literal["full-vocab", "top-k-tail-bucket", "top-k-renormalized"] | None = None
    reference_top_k: Annotated[int, Field(gt=0)] | None = None
    dataset: Dataset | None = None
    # The configuration table's name for the text (the seed card says "Calibration Dataset").
    dataset_label: Line = DATASET_LABEL
    sequence_length: Annotated[int, Field(gt=1)] | None = None
    samples: Annotated[int, Field(gt=0)] | None = None
    # kld.json written by `hubpub eval`, relative to the manifest.
    artifact: Line | None = None
    positions: Annotated[int, Field(gt=0)] | None = None
    metrics: KldMetrics | None = None
    results: tuple[KldResult, ...] = Field(default=(), exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _results_are_not_input(cls, data: Any) -> Any:
        if isinstance(data, dict) and "results" in data:
            raise Located(("evaluation", "kld", "results"),
                          "results are read from the kld.json artifact; name it with `artifact:` instead")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Kld:
        if (self.branch is None) == (self.branches is None):
            raise Located(("evaluation", "kld"), "give exactly one of `branch: NAME` (one evaluated variant) or "
                                                 "`branches: [NAME, ...]` (several, or `all`)")
        if isinstance(self.branches, tuple) and not self.branches:
            raise Located(("evaluation", "kld", "branches"), "name at least one branch, or `all`")
        if self.artifact is None:
            for name in ("dataset", "sequence_length", "samples", "positions", "metrics"):
                if getattr(self, name) is None:
                    raise Located(("evaluation", "kld", name),
                                  f"{name} is required unless `artifact:` names the kld.json `hubpub eval` wrote")
        if self.metrics is not None and self.branch is None:
            raise Located(("evaluation", "kld", "metrics"),
                          "hand-written metrics describe one variant: use `branch:`, or take several variants' "
                          "numbers from an `artifact:`")
        if self.positions is not None and self.sequence_length is not None and self.samples is not None:
            rule, per_window = KLD_METHODS[self.method]
            expected = self.samples * per_window(self.sequence_length)
            if self.positions != expected:
                raise ValueError(
                    f"positions is {self.positions:,} but method {self.method!r} scores {rule} = {expected:,}; "
                    "fix positions or declare the method that was used"
                )
        if self.metrics is None:
            return self
        if self.metrics.median > self.metrics.p90:
            raise ValueError(
                f"metrics are out of order: median {self.metrics.median} > p90 {self.metrics.p90}; "
                "a median cannot exceed the 90th percentile"
            )
        if self.metrics.mean_coverage is not None and self.reference_top_k is None:
            raise ValueError("mean_coverage only makes sense with a top-K reference; set reference_top_k")
        return self

    def given(self, name: str) -> bool:
        """Whether branches.yaml sets `name` (a default does not count): only given values must match kld.json."""
        return name in self.model_fields_set

    def figures(self) -> tuple[KldResult, ...]:
        """Each evaluated variant's figures: from the artifact, or the one variant's hand-written metrics."""
        if self.results:
            return self.results
        if self.metrics is not None and self.branch is not None:
            return (KldResult(branch=self.branch, metrics=self.metrics),)
        return ()


class Evaluation(StrictModel):
    kld: Kld | None = None
