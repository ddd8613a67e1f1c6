"""Render a variant's README: front matter built as data, body from Jinja templates.

Pure: values in (manifest, weight facts, provenance, template folder), text out. The front matter is never
string-templated: it is a dict, serialized by a YAML dumper, checked against the Hub's metadata rules and
round-tripped through huggingface_hub's `ModelCard`, so no manifest string can change the metadata.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import yaml

from publish.card.kld import comparison_rows, kld_context
from publish.card.provenance import Provenance
from publish.card.scheme import kv_cache_flag, part_group_size, per_part, scheme_text
from publish.errors import MetadataError, TemplateError
from publish.manifest.model import Manifest
from publish.manifest.variant import Variant

if TYPE_CHECKING:
    from publish.checkpoint.facts import WeightFacts

CARD_TEMPLATE = "card.md.j2"
PROVENANCE_MARK = "<!-- hubpub:provenance -->"
CARDS_FOLDER = "cards"  # beside the manifest: `render` writes <branch>/README.md there, `push` the cards it published
# Units the card's Size row uses, smallest first, in gigabytes.
SIZE_UNITS = (("KB", 1e-6), ("MB", 1e-3), ("GB", 1.0))
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")

# The Auto class a `from_pretrained` snippet should use, by pipeline tag.
AUTO_CLASSES = {
    "image-text-to-text": "AutoModelForImageTextToText",
    "text-generation": "AutoModelForCausalLM",
    "text2text-generation": "AutoModelForSeq2SeqLM",
    "feature-extraction": "AutoModel",
}


@dataclass(frozen=True)
class CellText:
    """A piece of a table cell; templates decide how `code` and `strong` look."""

    text: str
    code: bool = False
    strong: bool = False


@dataclass(frozen=True)
class Row:
    label: str
    cells: tuple[tuple[CellText, ...], ...]


# ---------------------------------------------------------------------------------------------------------------
# Front matter


def front_matter(manifest: Manifest) -> dict[str, Any]:
    """The card's metadata, in the order the Hub shows it. None values are left out."""
    meta: dict[str, Any] = {
        "library_name": manifest.library_name,
        "license": manifest.license,
        "license_name": manifest.license_name,
        "license_link": manifest.license_link,
        "pipeline_tag": manifest.pipeline_tag,
        "base_model": manifest.base_model,
        "base_model_relation": manifest.base_model_relation,
        "tags": list(manifest.tags),
    }
    return {key: value for key, value in meta.items() if value not in (None, [])}


def check_front_matter(meta: Mapping[str, Any], source: Path) -> None:
    """Raise MetadataError for the first value the Hub would refuse, naming the manifest field."""
    from publish.manifest.hubmeta import metadata_problems

    problems = metadata_problems(dict(meta))
    if problems:
        field, message, hint = problems[0]
        raise MetadataError(message, file=source, field=field, hint=hint)


def dump_front_matter(meta: Mapping[str, Any]) -> str:
    body = yaml.safe_dump(dict(meta), sort_keys=False, allow_unicode=True, default_flow_style=False, width=10_000)
    return f"---\n{body}---\n"


def verify_round_trip(text: str, meta: Mapping[str, Any], source: Path) -> None:
    """The metadata huggingface_hub reads back from the card must be exactly what we meant to write."""
    from huggingface_hub import ModelCard

    parsed = ModelCard(text, ignore_metadata_errors=False).data.to_dict()
    if parsed != dict(meta):
        changed = sorted(k for k in set(parsed) | set(meta) if parsed.get(k) != meta.get(k))
        raise MetadataError(
            f"the rendered front matter does not read back as written (fields: {', '.join(changed)})",
            file=source,
            hint="a template must not write its own '---' block; front matter comes from the manifest only",
        )


# ---------------------------------------------------------------------------------------------------------------
# The comparison table


def _size_gb(variant: Variant, facts: WeightFacts | None) -> float:
    return facts.size_gb if facts is not None else variant.size_gb


def human_size(gb: float) -> str:
    """A size in the largest unit under which it stays below 1000, one decimal, as the reference card writes it:
    36.8GB, 11.3MB, 52.4KB (never 0.0GB)."""
    for unit, scale in SIZE_UNITS[:-1]:
        if round(gb / scale, 1) < 1000:
            return f"{gb / scale:.1f}{unit}"
    unit, scale = SIZE_UNITS[-1]
    return f"{gb / scale:.1f}{unit}"


def calibration_text(variant: Variant, field: str) -> str:
    """A calibration setting for the table; a data-free variant (`calibration: none`) has none."""
    if variant.calibration is None:
        return "none (data-free)" if field == "samples" else "-"
    return _or_dash(getattr(variant.calibration, field))


def capfirst(text: str) -> str:
    """The first letter upper-cased and nothing else changed: a sentence may start with a branch name ("main")."""
    return text[:1].upper() + text[1:]


def quantization_table(
    manifest: Manifest, facts: Mapping[str, WeightFacts]
) -> tuple[Row, ...]:
    """One row per field, one cell per variant. Weight facts, where present, supply what the weights can tell."""
    variants = manifest.variants
    everywhere = set.intersection(*(set(v.unquantized) for v in variants))

    def cells(render: Any) -> tuple[tuple[CellText, ...], ...]:
        return tuple(tuple(render(v)) for v in variants)

    def plain(row: str, value: Any) -> Any:
        return lambda v: [CellText(value(v), strong=row in v.highlight)]

    def method(v: Variant) -> list[CellText]:
        parts = [CellText(v.method.name)]
        if v.method.source:
            parts += [CellText(" ("), CellText(v.method.source, code=True), CellText(")")]
        if v.method.recipe:
            parts += [CellText(", "), CellText(v.method.recipe, strong="recipe" in v.highlight), CellText(" recipe")]
        return parts

    def unquantized(v: Variant) -> list[CellText]:
        parts: list[CellText] = []
        for family in v.unquantized:
            if parts:
                parts.append(CellText(", "))
            # A family not left unquantized by every variant is what sets this variant apart: emphasise it.
            parts.append(CellText(family, code=True, strong=family not in everywhere or "unquantized" in v.highlight))
        return parts or [CellText("none")]

    rows = [
        Row("Base", cells(lambda v: [CellText(manifest.base_model, code=True, strong="base" in v.highlight)])),
        Row("Method", cells(method)),
        Row("Scheme", cells(plain("scheme", scheme_text))),
        Row("Bits", cells(plain("bits", lambda v: per_part(v, lambda p: str(p.bits))))),
        Row("Group size", cells(plain("group_size", lambda v: per_part(
            v, lambda p: part_group_size(p, manifest.card.group_size))))),
        Row("Symmetric", cells(plain("symmetric", lambda v: per_part(v, lambda p: "yes" if p.symmetric else "no")))),
    ]
    if any(p.activations for v in variants for p in v.described_parts):
        rows.append(Row("Activations", cells(plain("activations",
                                                   lambda v: per_part(v, lambda p: p.activations or "none")))))
    if any(v.kv_cache for v in variants):
        rows.append(Row("KV cache", cells(plain("kv_cache", lambda v: v.kv_cache or "none"))))
    rows += [
        Row("Unquantized layers", cells(unquantized)),
        Row("Calibration samples", cells(plain("samples", lambda v: calibration_text(v, "samples")))),
    ]
    calibrated = [v.calibration for v in variants if v.calibration is not None]
    if any(c.iterations is not None for c in calibrated):
        rows.append(Row("Iterations", cells(plain("iterations", lambda v: calibration_text(v, "iterations")))))
    if any(c.batch_size is not None for c in calibrated):
        rows.append(Row("Batch size", cells(plain("batch_size", lambda v: calibration_text(v, "batch_size")))))
    if any(v.torch_compile is not None for v in variants):
        rows.append(Row("torch.compile", cells(plain("torch_compile", lambda v: _enabled(v.torch_compile)))))
    if any(f.scale_dtype for f in facts.values()):
        rows.append(Row("Scale dtype", cells(lambda v: [CellText(_scale_dtype(facts.get(v.branch)))])))
    rows.append(Row("Size", cells(plain("size", lambda v: human_size(_size_gb(v, facts.get(v.branch)))))))
    if any(v.gpu for v in variants):
        rows.append(Row("GPU used for quant", cells(plain("gpu", lambda v: v.gpu or "-"))))
    for label, by_branch in comparison_rows(manifest):
        rows.append(Row(label, cells(lambda v, values=by_branch: [CellText(values.get(v.branch, "-"))])))
    return tuple(rows)


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _enabled(value: bool | None) -> str:
    return "-" if value is None else ("enabled" if value else "disabled")


def _scale_dtype(facts: WeightFacts | None) -> str:
    return facts.scale_dtype if facts is not None and facts.scale_dtype else "-"


# ---------------------------------------------------------------------------------------------------------------
# Templates


def default_template_dir() -> Path:
    return Path(str(resources.files("publish.templates")))


def make_environment(override_dir: Path | None = None, bytecode_dir: Path | None = None) -> jinja2.Environment:
    """Templates from `override_dir` (one file at a time) win over the packaged defaults. With `bytecode_dir`,
    compiled templates are kept there (jinja's own cache, keyed by each template's source) for the next run.

    One environment is kept per override folder and its file names, so a process that renders many cards (a push
    of every variant, a library caller, the tests) compiles each template once; jinja recompiles a template whose
    file changed, and a file added to the override folder gives a new environment."""
    overrides = override_dir if override_dir is not None and override_dir.is_dir() else None
    names = tuple(sorted(p.name for p in overrides.iterdir())) if overrides is not None else ()
    return _environment(overrides, names, bytecode_dir)


@functools.lru_cache(maxsize=16)
def _environment(override_dir: Path | None, names: tuple[str, ...], bytecode_dir: Path | None) -> jinja2.Environment:
    del names  # part of the cache key only
    loaders: list[jinja2.BaseLoader] = []
    if override_dir is not None:
        loaders.append(jinja2.FileSystemLoader(override_dir))
    loaders.append(jinja2.FileSystemLoader(default_template_dir()))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # Markdown, not HTML; manifest text is the publisher's own.
        bytecode_cache=_bytecode_cache(bytecode_dir),
    )
    env.filters["capfirst"] = capfirst
    return env


def _bytecode_cache(folder: Path | None) -> jinja2.BytecodeCache | None:
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # an unwritable cache only costs compiling the templates again
    return jinja2.FileSystemBytecodeCache(str(folder))


def render_card(
    manifest: Manifest,
    variant: Variant,
    *,
    env: jinja2.Environment,
    facts: Mapping[str, WeightFacts] | None = None,
    provenance: Provenance | None = None,
    verified: set[str] | None = None,
) -> str:
    """The complete README.md for `variant`'s branch.

    `verified` holds the keys (`front_matter_key`) of front matter already read back exactly by huggingface_hub's
    `ModelCard`; such front matter is not read back again, and newly verified keys are added.
    """
    facts = facts or {}
    meta = front_matter(manifest)
    check_front_matter(meta, manifest.source)
    context = {
        "manifest": manifest,
        "variant": variant,
        "variants": manifest.variants,
        "version_count": _count_words(len(manifest.variants), "version"),
        "table": quantization_table(manifest, facts),
        **kld_context(manifest),
        "usage": manifest.usage,
        "downloads": [_download(manifest, v) for v in manifest.variants],
        "local_dir": _local_dir(manifest, variant),
        "auto_class": AUTO_CLASSES.get(manifest.pipeline_tag, "AutoModel"),
        "kv_cache_flag": kv_cache_flag(manifest, variant),
        "facts_from": {v.branch: ("weights" if v.branch in facts else "manifest") for v in manifest.variants},
        "provenance": provenance or Provenance(),
        "provenance_mark": PROVENANCE_MARK,
    }
    body = _render_template(env, CARD_TEMPLATE, context).lstrip("\n")
    if body.startswith("---"):
        # Harmless to the Hub (it reads the first block only) but a sign the template is fighting the manifest.
        raise MetadataError(
            "the card template starts with its own '---' front matter block, which does not read back as metadata",
            file=CARD_TEMPLATE,
            hint="front matter comes from the manifest only; remove the block from the template",
        )
    front = dump_front_matter(meta)
    text = front + "\n" + tidy_markdown(body)
    key = front_matter_key(front)
    if verified is None or key not in verified:
        verify_round_trip(text, meta, manifest.source)
        if verified is not None:
            verified.add(key)
    return text


def front_matter_key(front: str) -> str:
    """What a front matter's round trip depends on: its text (the body cannot start a block: checked above) and
    the huggingface_hub that reads it."""
    import hashlib

    import huggingface_hub

    return hashlib.sha256(f"{huggingface_hub.__version__}\0{front}".encode()).hexdigest()


def tidy_markdown(text: str) -> str:
    """At most one blank line between blocks (outside code fences), and one final newline.

    Templates stay readable with their own spacing around `{% if %}` blocks; the card does not inherit it.
    """
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and not line.strip() and (not lines or not lines[-1].strip()):
            continue
        lines.append(line.rstrip() if not fenced else line)
    return "\n".join(lines).strip("\n") + "\n"


def _render_template(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    try:
        return env.get_template(name).render(**context)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(
            f"template does not parse: {error.message}", file=error.filename or error.name, line=error.lineno
        ) from None
    except jinja2.TemplateNotFound as error:
        raise TemplateError(
            f"template {error.name!r} not found", hint="an override folder must use the default template names"
        ) from None
    except jinja2.UndefinedError as error:
        file, line = _template_frame(error)
        raise TemplateError(
            f"undefined variable: {error.message}", file=file, line=line,
            hint="check the spelling against the variables listed in README.md, 'Templates'",
        ) from None


def _template_frame(error: BaseException) -> tuple[str | None, int | None]:
    """Jinja rewrites tracebacks so template frames carry the template's file and line; take the innermost."""
    found: tuple[str | None, int | None] = (None, None)
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename.endswith(".j2"):
            found = (frame.filename, frame.lineno)
    return found


@dataclass(frozen=True)
class Download:
    variant: Variant
    local_dir: str


def _download(manifest: Manifest, variant: Variant) -> Download:
    return Download(variant, _local_dir(manifest, variant))


def _local_dir(manifest: Manifest, variant: Variant) -> str:
    return manifest.repo_name if variant.branch == "main" else f"{manifest.repo_name}-{variant.branch}"


def _count_words(count: int, noun: str) -> str:
    word = NUMBER_WORDS[count] if count < len(NUMBER_WORDS) else str(count)
    return f"There is {word} {noun}." if count == 1 else f"There are {word} {noun}s."
