"""One variant of the manifest: the branch it publishes to, how it was quantized (one scheme, or one part per
scheme of a mixed-precision checkpoint), its calibration and what the card highlights."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator, model_validator

from publish.manifest.schemabase import Line
from publish.manifest.schemabase import StrictModel as _Model
from publish.manifest.schemaerrors import Hinted, suggestion

# Module families a card can name as unquantized, in card order. They are the vocabulary `hubpub check` maps any
# model's module names onto (families.py): attention of any name is self_attn; a mixture of experts adds the
# routed experts, the shared experts and the router gates.
FAMILIES = (
    "visual", "audio", "mtp", "self_attn", "linear_attn", "mlp", "experts", "shared_experts", "router", "embed_tokens",
    "lm_head",
)

# Table rows a variant may ask to be emphasised (bold) in the comparison table.
HIGHLIGHTABLE = (
    "base", "method", "recipe", "scheme", "bits", "group_size", "symmetric", "activations", "kv_cache", "unquantized",
    "samples", "iterations", "batch_size", "torch_compile", "size", "gpu",
)
# The fields that state one quantization scheme; a mixed-precision variant states them per part instead.
SCHEME_FIELDS = ("scheme", "bits", "group_size", "symmetric")


# `calibration: none`: data-free quantization (RTN, min-max); the card says "none (data-free)".
NO_CALIBRATION = "none"


class Method(_Model):
    """How the variant was quantized, e.g. AutoRound from intel/auto-round with a custom recipe."""

    name: Line
    source: Line | None = None
    recipe: Line | None = None


class Calibration(_Model):
    samples: int
    iterations: Annotated[int, Field(ge=0)] | None = None
    batch_size: Annotated[int, Field(gt=0)] | None = None
    dataset: Line | None = None

    @field_validator("samples")
    @classmethod
    def _some_samples(cls, value: int) -> int:
        if value <= 0:
            raise Hinted(f"{value} calibration samples: a calibrated quantization uses at least one",
                         "for data-free quantization (RTN, min-max) write `calibration: none` instead of the mapping")
        return value


def _known_families(value: tuple[str, ...]) -> tuple[str, ...]:
    for family in value:
        if family not in FAMILIES:
            raise Hinted(f"unknown module family {family!r}",
                         suggestion(family, FAMILIES) or f"families are: {', '.join(FAMILIES)}")
    if len(set(value)) != len(value):
        raise ValueError("a module family is listed twice")
    return value


def _meaningful_group_size(value: int) -> int:
    if value < -1:
        raise Hinted(f"group size {value} means nothing",
                     "use -1 for per-channel, 0 for per-tensor or a positive group size")
    return value


Families = Annotated[tuple[str, ...], AfterValidator(_known_families)]
GroupSize = Annotated[int, AfterValidator(_meaningful_group_size)]
Bits = Annotated[int, Field(ge=1, le=16)]
# [rows, columns] of a block-wise scheme's scale blocks, e.g. [128, 128].
Block = tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]]


def _group_size_from_block(data: Any) -> Any:
    """A block-wise scheme's group size is its block's columns (compressed-tensors' view); it may be left out."""
    if isinstance(data, dict) and isinstance(data.get("block"), (tuple, list)) and "group_size" not in data:
        block = data["block"]
        if len(block) == 2:
            return {**data, "group_size": block[1]}
    return data


def _block_agrees(block: tuple[int, int] | None, group_size: int | None) -> None:
    if block is not None and group_size != block[1]:
        raise Hinted(f"group_size {group_size} does not match block {list(block)}",
                     f"a block-wise scheme's group size is the block's columns ({block[1]}): leave group_size out")


def _two_or_more(parts: tuple[Any, ...]) -> tuple[Any, ...]:
    if len(parts) < 2:
        raise Hinted("a mixed-precision variant has two parts or more",
                     "state one scheme with scheme, bits, group_size and symmetric instead")
    return parts


class Part(_Model):
    """One part of a mixed-precision variant: one quantization scheme and the module families it covers."""

    scheme: Line
    bits: Bits
    group_size: GroupSize
    symmetric: bool
    block: Block | None = None
    activations: Line | None = None  # e.g. "dynamic per-token INT8"; absent: not quantized
    families: Annotated[Families, Field(min_length=1)]

    _fill_group_size = model_validator(mode="before")(_group_size_from_block)

    @model_validator(mode="after")
    def _consistent(self) -> Part:
        _block_agrees(self.block, self.group_size)
        return self


class Variant(_Model):
    """One quantized variant, published on its own Hub branch.

    One scheme is stated by `scheme`, `bits`, `group_size` and `symmetric`; a mixed-precision variant (int4
    experts with int8 attention, …) states `parts:` instead, each part a scheme and the families it covers."""

    branch: str
    label: Line | None = None
    path: Line
    method: Method
    # Required (None only when `parts` is given, see _single_scheme_or_parts).
    scheme: Line | None
    bits: Bits | None
    group_size: GroupSize | None
    symmetric: bool | None
    block: Block | None = None
    activations: Line | None = None  # e.g. "dynamic per-token INT8"; absent: not quantized
    parts: Annotated[tuple[Part, ...], AfterValidator(_two_or_more)] | None = None
    kv_cache: Line | None = None  # e.g. "FP8 E4M3, per-tensor scales"; absent: not quantized
    unquantized: Families = ()
    # None: data-free quantization, written `calibration: none`.
    calibration: Calibration | None
    torch_compile: bool | None = None
    gpu: Line | None = None
    size_gb: Annotated[float, Field(gt=0)]
    highlight: tuple[str, ...] = ()
    # Globs of files in the folder that no push uploads (huggingface_hub's ignore_patterns rules).
    exclude: tuple[Line, ...] = ()

    @property
    def title(self) -> str:
        """How the card names this variant ("Main", "gs128")."""
        return self.label or self.branch

    @property
    def per_channel(self) -> bool:
        return self.group_size == -1

    @property
    def described_parts(self) -> tuple[Part, ...]:
        """The variant's schemes: its `parts`, or its one scheme as a part covering every quantized family
        (`families` empty)."""
        if self.parts is not None:
            return self.parts
        return (Part.model_construct(scheme=self.scheme, bits=self.bits, group_size=self.group_size,
                                     symmetric=self.symmetric, block=self.block, activations=self.activations,
                                     families=()),)

    @model_validator(mode="before")
    @classmethod
    def _single_scheme_or_parts(cls, data: Any) -> Any:
        """With `parts`, the single-scheme fields are absent (None); without, they are required as usual."""
        data = _group_size_from_block(data)
        if isinstance(data, dict) and data.get("parts") is not None:
            return {**{name: None for name in SCHEME_FIELDS}, **data}
        return data

    @model_validator(mode="after")
    def _one_way_to_say_the_scheme(self) -> Variant:
        stated = [name for name in SCHEME_FIELDS if getattr(self, name) is not None]
        if self.parts is not None:
            extra = stated + [name for name in ("block", "activations") if getattr(self, name) is not None]
            if extra:
                raise Hinted(f"a variant with parts states its scheme per part, but {', '.join(extra)} "
                             f"{'is' if len(extra) == 1 else 'are'} given too",
                             "remove them, or remove parts for a single scheme")
            covered = [family for part in self.parts for family in part.families]
            twice = sorted({family for family in covered if covered.count(family) > 1})
            if twice:
                raise Hinted(f"parts cover {', '.join(twice)} more than once", "each family belongs to one part")
            return self
        missing = [name for name in SCHEME_FIELDS if name not in stated]
        if missing:
            raise Hinted(f"{', '.join(missing)} must not be empty",
                         "state the scheme, or describe a mixed-precision variant by parts:")
        _block_agrees(self.block, self.group_size)
        return self

    @field_validator("branch")
    @classmethod
    def _branch_is_git_ref(cls, value: str) -> str:
        check_branch_name(value)
        return value

    @field_validator("calibration", mode="before")
    @classmethod
    def _data_free(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == NO_CALIBRATION:
            return None
        if value is None:
            raise Hinted("calibration is empty", "give `{samples: N, ...}`, or `calibration: none` for data-free "
                         "quantization (RTN, min-max)")
        return value

    @field_validator("highlight")
    @classmethod
    def _known_rows(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for row in value:
            if row not in HIGHLIGHTABLE:
                raise Hinted(f"unknown table row {row!r}",
                             suggestion(row, HIGHLIGHTABLE) or f"rows are: {', '.join(HIGHLIGHTABLE)}")
        return value


def check_branch_name(value: str) -> None:
    """A branch name git and the Hub both accept (git-check-ref-format rules, via gitpython)."""
    from git.refs.symbolic import SymbolicReference

    example = "give a plain branch name such as 'gs128' (git-check-ref-format rules)"
    if not value:
        raise Hinted("branch name is empty", example)
    if value.startswith("refs/") or value == "HEAD":
        raise Hinted(f"{value!r} is reserved", example)
    try:
        # gitpython's implementation of git-check-ref-format(1); private, but the rules are git's.
        SymbolicReference._check_ref_name_valid(value)
    except ValueError as error:
        raise Hinted(str(error), example) from None
