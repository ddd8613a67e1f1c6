"""The one exception hierarchy of hubpub.

Every error names where the problem is (file and line, field, tensor or module), what was expected and what was
found, and says what to do. The CLI turns each class into an exit code; no traceback reaches a user.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

# Exit codes the CLI uses. 1: the input was understood but is not fit to publish; 2: the input or usage is wrong.
EXIT_FAILED = 1
EXIT_USAGE = 2

# Hugging Face user access tokens look like hf_ followed by 30+ alphanumerics; fine-grained tokens too. A Trusted
# Publisher's exchanged token is hf_jwt_ followed by a JWT (base64url parts joined by dots).
TOKEN_PATTERN = re.compile(r"hf_(?:jwt_[A-Za-z0-9._-]{20,}|[A-Za-z0-9]{20,})")


def scrub(text: str, *secrets: str | None) -> str:
    """Remove anything that looks like a Hub token, and the given secret values, from text meant for a human."""
    candidates = [s for s in secrets if s] + [os.environ.get("HF_TOKEN") or ""]
    for secret in candidates:
        if len(secret) >= 8:
            text = text.replace(secret, "***")
    return TOKEN_PATTERN.sub("hf_***", text)


class HubpubError(Exception):
    """Base class. `str(error)` is the complete message a user sees."""

    exit_code = EXIT_USAGE

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = scrub(message)
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        self.hint = scrub(hint) if hint else None
        super().__init__(str(self))

    @property
    def location(self) -> str:
        where = self.file or ""
        if self.file and self.line:
            where += f":{self.line}"
        if self.field:
            where = f"{where}: {self.field}" if where else self.field
        return where

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class UsageError(HubpubError):
    """The command line asks for something that does not exist or does not fit together."""


class ManifestError(HubpubError):
    """branches.yaml is malformed, breaks the schema, or contradicts itself."""


class ManifestProblems(ManifestError):
    """Every problem found in one manifest, in line order, each printed with its own location and hint."""

    # At most this many problems are printed; the rest are counted.
    shown = 20

    def __init__(self, problems: Sequence[HubpubError]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: p.line or 0))
        first = self.problems[0]
        super().__init__(first.message, file=first.file, line=first.line, field=first.field, hint=first.hint)

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return super().__str__()
        listed = [str(p).replace("\n", "\n  ") for p in self.problems[: self.shown]]
        if len(self.problems) > self.shown:
            listed.append(f"... and {len(self.problems) - self.shown} more")
        return f"{self.file}: {len(self.problems)} problems, in line order:\n  " + "\n  ".join(listed)


class TemplateError(HubpubError):
    """A card template is missing, does not parse, or uses an undefined variable."""


class MetadataError(HubpubError):
    """The card's YAML front matter breaks the Hub's model-card metadata rules."""


class CheckpointError(HubpubError):
    """A checkpoint folder cannot be read: missing, unreadable config, or a header that does not parse."""


class UnsafeFileError(HubpubError):
    """A file that must never be uploaded: outside the variant's folder, or looking like a secret."""


class ChecksFailed(HubpubError):
    """Error-level findings stop the command."""

    exit_code = EXIT_FAILED


class FactMismatch(HubpubError):
    """The weights say something different from the manifest; the manifest is never silently overridden."""

    exit_code = EXIT_FAILED


class HubError(HubpubError):
    """The Hub refused or failed a request, or the pushed revision does not verify."""

    exit_code = EXIT_FAILED


class AuthError(HubError):
    """No usable token, or the token was refused."""

    exit_code = EXIT_USAGE


class TagConflict(HubError):
    """A release tag already names another commit; it is never moved or silently left behind."""


class TokenRenewalError(HubError):
    """A Trusted Publisher's token expired during a push and the Hub refused a new exchange; names what landed."""


class ConcurrentPushError(HubError):
    """The branch moved while we were pushing; nothing was overwritten."""


class DumpError(HubpubError):
    """A logprob dump, its text or a kld.json artifact is missing, unreadable, or does not fit the other input."""


class EvalError(HubpubError):
    """`hubpub eval` could not produce a dump: the model failed to load or run, or the server kept failing."""

    exit_code = EXIT_FAILED
