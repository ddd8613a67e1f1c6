"""Load branches.yaml into a validated, frozen `Manifest`.

The manifest is the one place a publisher writes what they know: the model, the files every variant shares, each
variant (one Hub branch each), the KLD evaluation and the usage notes. Every error names the file, the line and the
field, and says what to do.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from publish.errors import ManifestError
from publish.manifest.evaluation import Evaluation
from publish.manifest.schemabase import Line
from publish.manifest.schemabase import StrictModel as _Model
from publish.manifest.schemaerrors import Hinted, Located, suggestion
from publish.manifest.variant import Variant
from publish.util.repoid import repo_id_problem
from publish.util.suggest import did_you_mean

DEFAULT_MANIFEST = "branches.yaml"

class SharedFiles(_Model):
    """Files every variant's revision carries besides its weights, relative to the manifest."""

    recipe: Line | None = None
    log: Line | None = None
    other: tuple[Line, ...] = ()
    # Globs of files that no variant's push uploads from its folder (added to each variant's own `exclude:`).
    exclude: tuple[Line, ...] = ()

    def all(self) -> tuple[str, ...]:
        return tuple(p for p in (self.recipe, self.log, *self.other) if p)

    def in_repo(self) -> dict[str, str]:
        """Each file by its path in the repository (validation guarantees one file per path)."""
        return {repo_path(name): name for name in self.all()}

    @model_validator(mode="after")
    def _one_source_per_path(self) -> SharedFiles:
        placed: dict[str, str] = {}
        for name in self.all():
            path = repo_path(name)
            if path in placed:
                raise ValueError(f"{placed[path]!r} and {name!r} would both be uploaded as {path!r}; rename one of "
                                 "them or list only one")
            placed[path] = name
        return self


def repo_path(name: str) -> str:
    """Where a shared file lands in the repository: its path as written, or its bare name when the path leaves the
    manifest's folder."""
    rel = PurePosixPath(name.replace("\\", "/"))
    return rel.name if ".." in rel.parts or rel.is_absolute() else str(rel)


class CardStyle(_Model):
    """How the card words what the manifest and the weights say."""

    # "words": per-channel, per-tensor; "number": -1 and 0, as in the quantization config.
    group_size: Literal["words", "number"] = "words"


class Serve(_Model):
    label: Line | None = None
    args: tuple[Line, ...]


class Usage(_Model):
    """How to run the model; the card shows it under "How to use"."""

    tested_on: Line | None = None
    recommendation: Line | None = None
    serve: Serve | None = None
    notes: tuple[str, ...] = ()


class Manifest(_Model):
    """Everything branches.yaml says, validated. `source` and `root` are filled in by `load_manifest`."""

    repo_id: str
    title: Line
    private: bool = False
    base_model: Line
    base_model_relation: Line = "quantized"
    license: Line
    license_name: Line | None = None
    license_link: Line | None = None
    pipeline_tag: Line
    library_name: Line
    tags: tuple[str, ...] = ()
    summary: str | None = None
    overview: tuple[str, ...] = ()
    files: SharedFiles = SharedFiles()
    variants: Annotated[tuple[Variant, ...], Field(min_length=1)]
    evaluation: Evaluation = Evaluation()
    usage: Usage | None = None
    acknowledgements: tuple[str, ...] = ()
    card: CardStyle = CardStyle()
    source: Path = Field(default=Path(DEFAULT_MANIFEST), exclude=True)
    # Fields still saying TODO, as "field (line N)"; only a manifest loaded with allow_todo has any.
    todos: tuple[str, ...] = Field(default=(), exclude=True)

    @property
    def root(self) -> Path:
        """The folder holding the manifest; relative paths in it are relative to this folder."""
        return self.source.parent

    @property
    def repo_name(self) -> str:
        return self.repo_id.split("/")[-1]

    def variant(self, branch: str) -> Variant:
        for variant in self.variants:
            if variant.branch == branch:
                return variant
        known = ", ".join(v.branch for v in self.variants)
        raise ManifestError(
            f"no variant has branch {branch!r}; the manifest defines: {known}",
            file=self.source,
            hint=f"pass one of them to --branch{did_you_mean(branch, [v.branch for v in self.variants])}",
        )

    def select(self, branch: str | None) -> tuple[Variant, ...]:
        """All variants, or the one on `branch`."""
        return self.variants if branch is None else (self.variant(branch),)

    @property
    def kld_branches(self) -> tuple[str, ...]:
        """The branches the KLD evaluation covers, as evaluation.kld names them (`all`: every variant's, in order)."""
        kld = self.evaluation.kld
        if kld is None:
            return ()
        if kld.branch is not None:
            return (kld.branch,)
        if kld.branches == "all":
            return tuple(v.branch for v in self.variants)
        return tuple(kld.branches or ())

    def variant_path(self, variant: Variant) -> Path:
        path = Path(variant.path).expanduser()
        return path if path.is_absolute() else self.root / path

    def excludes(self, variant: Variant) -> tuple[str, ...]:
        """The globs of files in the variant's folder that are not published: the shared ones, then its own."""
        return (*self.files.exclude, *variant.exclude)

    @field_validator("repo_id")
    @classmethod
    def _repo_id(cls, value: str) -> str:
        check_repo_id(value)
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> Manifest:
        seen: set[str] = set()
        for index, variant in enumerate(self.variants):
            if variant.branch in seen:
                raise Located(("variants", index, "branch"), f"duplicate variant: branch {variant.branch!r} is "
                              "defined twice", "give each variant its own branch")
            seen.add(variant.branch)
        kld = self.evaluation.kld
        if kld is None:
            return self
        named: list[tuple[tuple[str | int, ...], str]] = (
            [(("evaluation", "kld", "branch"), kld.branch)] if kld.branch is not None
            else [] if kld.branches == "all"
            else [(("evaluation", "kld", "branches", i), b) for i, b in enumerate(kld.branches or ())])
        listed: set[str] = set()
        for loc, branch in named:
            if branch not in seen:
                raise Located(loc, f"KLD was measured on branch {branch!r}, which no variant defines",
                              suggestion(branch, seen) or f"name one of the variants' branches: "
                                                          f"{', '.join(sorted(seen))}")
            if branch in listed:
                raise Located(loc, f"branch {branch!r} is listed twice", "name each evaluated branch once")
            listed.add(branch)
        return self


def check_repo_id(value: str) -> None:
    """A Hub model repo id: `namespace/name`, by huggingface_hub's own rules."""
    problem = repo_id_problem(value)
    if problem is not None:
        raise Hinted(problem, "e.g. 'your-name/Model-INT8': letters, digits, '-', '_' and '.'")


def load_manifest(path: str | Path = DEFAULT_MANIFEST, *, allow_todo: bool = False) -> Manifest:
    """Read and validate a manifest. Every problem of every pass (YAML, schema, Hub metadata, TODOs, paths) is
    raised in one ManifestProblems, in line order, each naming the file, line and field with its own hint.

    Fields still saying TODO (written by `hubpub init`) are refused unless `allow_todo`: then they stand in for
    valid values, for commands that do not publish (`hubpub check`); `todos` lists them.
    """
    from publish.manifest.validation import load

    return load(Path(path), allow_todo=allow_todo)
