"""Where logprobs come from: a transformers checkpoint, or an OpenAI-compatible server (vLLM) with prompt_logprobs.

Both turn one window of token ids into a `WindowLogprobs`: top-K ids and log-probs per row (row t predicting token
t + 1), and the log-probability of the correct next token, taken from the full logits (transformers) or from the
prompt token's own entry, which vLLM always includes in `prompt_logprobs` (the server). `run_windows` drives either
over all windows, saving each finished window so an interrupted run resumes. Heavy libraries (torch, transformers,
datasets) are imported inside the functions that need them, and their own progress bars are hidden while they load:
the caller reports progress per window.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext, redirect_stderr
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from publish.errors import DumpError, EvalError
from publish.eval.dumps import DumpInfo, WindowLogprobs, partial_done, write_partial
from publish.events import Emit, ignore, retries_to
from publish.util.modelconfig import text_setting

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Called with (windows done, windows in all) when a dump starts and after each window.
WindowProgress = Callable[[int, int], None]
ComputeWindow = Callable[[npt.NDArray[np.int64]], WindowLogprobs]

# wikitext configs as `datasets` names them; the bare name means the seed's config.
WIKITEXT = "Salesforce/wikitext"
WIKITEXT_CONFIGS = ("wikitext-2-raw-v1", "wikitext-2-v1", "wikitext-103-raw-v1", "wikitext-103-v1")
# A tqdm bar's output: carriage-return redraws and an "n/total" counter with a rate.
BAR_LINE = re.compile(r"\r|\d+/\d+ \[[^\]]*(it/s|s/it)")
# What loading a dataset, tokenizer or model raises for a wrong name, missing file or unsupported format.
LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, ImportError, NotImplementedError)


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Hide transformers', datasets' and huggingface_hub's own progress bars (loading weights, downloading) and
    the plain tqdm bars compressed-tensors draws while it loads a checkpoint, then restore them as they were.
    Anything else written to standard error meanwhile (a warning) is passed on."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as transformers_logging

    hub_was_on, transformers_was_on = not are_progress_bars_disabled(), transformers_logging.is_progress_bar_enabled()
    try:
        import datasets as datasets_module
    except ImportError:  # only the dataset path needs it; a text file or an earlier dump does not
        datasets_module = None  # type: ignore[assignment]
    datasets: Any = datasets_module
    datasets_was_on = datasets is not None and datasets.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # hides huggingface_hub's too
    if datasets_was_on:
        datasets.disable_progress_bars()
    captured = io.StringIO()
    try:
        with redirect_stderr(captured):
            yield
    finally:
        kept = [line for line in captured.getvalue().splitlines(keepends=True) if not BAR_LINE.search(line)]
        sys.stderr.write("".join(kept))
        if transformers_was_on:
            transformers_logging.enable_progress_bar()
        if hub_was_on:
            enable_progress_bars()
        else:
            disable_progress_bars()
        if datasets_was_on:
            datasets.enable_progress_bars()


# --- text and tokens ---------------------------------------------------------------------------------------------


def resolve_dataset(name: str, config: str | None = None) -> tuple[str, str | None]:
    """`datasets` path and config for a manifest's dataset name: 'wikitext-2-raw-v1' is wikitext's config."""
    if name in WIKITEXT_CONFIGS:
        return WIKITEXT, name
    if name in ("wikitext", WIKITEXT):
        return WIKITEXT, config or "wikitext-2-raw-v1"
    return name, config


def dataset_text(name: str, split: str, config: str | None = None, column: str = "text") -> str:
    """A dataset split's texts joined by blank lines (how wikitext perplexity is usually measured)."""
    import datasets

    path, config = resolve_dataset(name, config)
    try:
        with quiet_libraries():
            rows = datasets.load_dataset(path, config, split=split)
    except LOAD_ERRORS as error:
        raise DumpError(f"cannot load dataset {path} ({config or 'default config'}, split {split}): {error}",
                        field="--dataset", hint="check the name, config and split, or pass --text FILE") from None
    if column not in rows.column_names:
        raise DumpError(f"dataset {path} has no column {column!r} (it has {', '.join(rows.column_names)})",
                        field="--text-column")
    return "\n\n".join(rows[column])


def load_tokenizer(name: str, revision: str | None = None) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:
        with quiet_libraries():
            return AutoTokenizer.from_pretrained(name, revision=revision)
    except LOAD_ERRORS as error:
        raise DumpError(f"cannot load the tokenizer: {error}", file=name,
                        hint="pass --tokenizer with a folder or Hub id that has the model's tokenizer") from None


def tokenize(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


# --- identities --------------------------------------------------------------------------------------------------


def tokenizer_sha256(name: str) -> str | None:
    path = Path(name) / "tokenizer.json"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def vocab_size(model: str, tokenizer: Any) -> int:
    """The model's vocabulary (its logits' width): config.json's `vocab_size` (also `text_config`), from the local
    folder or the Hub, else the tokenizer's length. Two dumps of one model family must agree on it."""
    path = Path(model) / "config.json"
    if path.is_file():
        config = json.loads(path.read_text(encoding="utf-8"))
        size = text_setting(config, "vocab_size")
        if size:
            return int(size)
    else:
        from transformers import AutoConfig

        try:
            with quiet_libraries():
                return int(AutoConfig.from_pretrained(model).get_text_config().vocab_size)
        except LOAD_ERRORS + (AttributeError,):
            pass
    return len(tokenizer)


# --- transformers ------------------------------------------------------------------------------------------------


class TransformersBackend:
    """A local (or Hub) checkpoint run with transformers, on the GPU when there is one."""

    def __init__(self, model: str, top_k: int, revision: str | None = None, device: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            with quiet_libraries():
                loaded: Any = AutoModelForCausalLM.from_pretrained(model, revision=revision, dtype="auto")
        except LOAD_ERRORS as error:
            raise EvalError(f"transformers cannot load the model: {error}", file=model,
                            hint="pass a checkpoint folder (or Hub id) that AutoModelForCausalLM loads") from None
        self.model: Any = loaded
        self.model.to(self.device)
        self.model.eval()
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])
        self.top_k = min(top_k, self.vocab_size)
        self._first = True

    def __call__(self, tokens: npt.NDArray[np.int64]) -> WindowLogprobs:
        import torch

        # compressed-tensors decompresses a checkpoint on the first forward pass, drawing its own bars.
        quiet = quiet_libraries() if self._first else nullcontext()
        self._first = False
        with torch.inference_mode(), quiet:
            ids_in = torch.as_tensor(tokens, device=self.device)
            logits = self.model(input_ids=ids_in[None]).logits[0]
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            values, ids = logprobs.topk(self.top_k, dim=-1, sorted=True)
            target = torch.full((len(tokens),), float("nan"), device=logprobs.device)
            target[:-1] = logprobs[:-1].gather(1, ids_in[1:, None]).squeeze(1)
        full = logprobs.cpu().numpy() if self.top_k >= self.vocab_size else None
        return WindowLogprobs(tokens, ids.to(torch.int32).cpu().numpy(), values.cpu().numpy(), target.cpu().numpy(),
                              full)


# --- OpenAI-compatible server ------------------------------------------------------------------------------------


class ServerBackend:
    """`/v1/completions` with token-id prompts, `prompt_logprobs=K` for rows 0 … L−2 and `logprobs=K` for the last.

    The request matches vLLM's examples/quantize/compare_kl_api.py (max_tokens 1, temperature 0), plus
    `return_tokens_as_token_ids` so the generated position's top-K comes back as ids. Start vLLM with
    `--max-logprobs K`. Failed requests are retried by hubpub's one policy (publish/util/retry.py: 408, 429, 5xx
    and dropped connections, Retry-After honoured), each retry announced to `emit` as a Retrying event.
    """

    def __init__(self, url: str, served_model: str, top_k: int, vocab_size: int, *, attempts: int = 6,
                 timeout: float = 600.0, sleep: Callable[[float], None] = time.sleep, emit: Emit = ignore) -> None:
        from publish.util.retry import Retrier, RetryingClient, RetryPolicy

        base = url.rstrip("/")
        self.url = base if base.endswith("/completions") else (
            base + "/completions" if base.endswith("/v1") else base + "/v1/completions")
        self.served_model = served_model
        self.top_k = min(top_k, vocab_size)
        self.vocab_size = vocab_size
        self.attempts = attempts
        retrier = Retrier(RetryPolicy(retries=attempts - 1), sleep=sleep, announce=retries_to(emit))
        self._client = RetryingClient(timeout=timeout, retrier=retrier, what=f"ask {self.url} for log-probs")

    def close(self) -> None:
        self._client.close()

    def __call__(self, tokens: npt.NDArray[np.int64]) -> WindowLogprobs:
        payload = {
            "model": self.served_model, "prompt": [int(t) for t in tokens], "max_tokens": 1, "temperature": 0.0,
            "prompt_logprobs": self.top_k, "logprobs": self.top_k, "return_tokens_as_token_ids": True,
        }
        choice = self._post(payload)
        entries = choice.get("prompt_logprobs")
        if not isinstance(entries, list) or len(entries) != len(tokens):
            raise EvalError(f"the server's prompt_logprobs has {len(entries) if isinstance(entries, list) else 0} "
                            f"entries for a {len(tokens)}-token prompt", file=self.url,
                            hint="the server must support prompt_logprobs (vLLM does)")
        length = len(tokens)
        ids = np.empty((length, self.top_k), dtype=np.int32)
        values = np.empty((length, self.top_k), dtype=np.float32)
        target = np.full(length, np.nan, dtype=np.float32)
        for row in range(length - 1):
            entry = entries[row + 1]
            entries[row + 1] = None  # a K = 1000 answer is ~2 M entries: let each row go once it is copied
            target[row] = self._own_logprob(row, entry, int(tokens[row + 1]))
            self._keep_top_k(row, entry.keys(), (v["logprob"] for v in entry.values()), len(entry), ids, values)
        last = self._generated_row(choice)
        self._keep_top_k(length - 1, last.keys(), last.values(), len(last), ids, values)
        full = None
        if self.top_k >= self.vocab_size:
            full = np.full((length, self.vocab_size), -np.inf, dtype=np.float32)
            np.put_along_axis(full, ids.astype(np.int64), values, axis=1)
        return WindowLogprobs(tokens, ids, values, target, full)

    def _own_logprob(self, row: int, entry: Any, token: int) -> float:
        """The prompt token's own log-probability: vLLM adds it to each prompt_logprobs entry, in the top-K or not."""
        own = entry.get(str(token)) if isinstance(entry, dict) else None
        if not isinstance(own, dict) or not isinstance(own.get("logprob"), int | float):
            raise EvalError(f"prompt_logprobs entry {row + 1} has no log-probability for the prompt's own token "
                            f"{token}", file=self.url,
                            hint="the server must return the prompt token in each prompt_logprobs entry (vLLM does)")
        return float(own["logprob"])

    def _keep_top_k(self, row: int, keys: Iterable[Any], logprobs: Iterable[float], count: int,
                    ids: np.ndarray, values: np.ndarray) -> None:
        """Row `row` of ids/values: the K most likely of the answer's tokens, most likely first. (vLLM adds the
        prompt's own token to its top-K when it is not among them.)"""
        if count < self.top_k:
            raise EvalError(f"row {row} has {count} log-probs, fewer than K = {self.top_k}", file=self.url,
                            hint=f"start vLLM with --max-logprobs {self.top_k}")
        row_ids = np.fromiter((int(k) for k in keys), dtype=np.int64, count=count)
        row_values = np.fromiter(logprobs, dtype=np.float64, count=count)
        best = np.argsort(-row_values, kind="stable")[: self.top_k]
        ids[row], values[row] = row_ids[best], row_values[best]

    def _generated_row(self, choice: dict[str, Any]) -> dict[int, float]:
        """The generated position's top-K (the row after the window's last token), keyed by token id."""
        top = ((choice.get("logprobs") or {}).get("top_logprobs") or [None])[0]
        if not isinstance(top, dict):
            raise EvalError("the server returned no logprobs for the generated token", file=self.url,
                            hint="the server must accept `logprobs` on /v1/completions")
        row = {}
        for key, value in top.items():
            if not key.startswith("token_id:"):
                raise EvalError(f"the server returned token text {key!r}, not an id", file=self.url,
                                hint="the server must support return_tokens_as_token_ids (vLLM does)")
            row[int(key.removeprefix("token_id:"))] = float(value)
        return row

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        import httpx2

        from publish.util.retry import RetriesExhausted

        try:
            response = self._client.post(self.url, json=payload)
        except (RetriesExhausted, httpx2.TransportError) as error:
            last = getattr(error, "response", None)
            problem = f"HTTP {last.status_code}: {last.text[:200]}" if last is not None else \
                f"{type(error.__cause__ or error).__name__}: {error}"
            raise EvalError(f"the server kept failing after {self.attempts} attempts ({problem})", file=self.url,
                            hint="check that the server is up; rerun the same command to resume") from None
        if response.status_code != 200:
            raise EvalError(f"the server refused the request: HTTP {response.status_code}: {response.text[:300]}",
                            file=self.url, hint=f"check --served-model and start vLLM with --max-logprobs "
                                                f"{self.top_k}")
        try:
            return dict(response.json()["choices"][0])
        except (ValueError, KeyError, IndexError, TypeError):
            raise EvalError("the server's answer is not a completions response", file=self.url) from None


# --- running all windows -----------------------------------------------------------------------------------------


def run_windows(compute: ComputeWindow, windows: npt.NDArray[np.int64], folder: Path, info: DumpInfo, *,
                workers: int = 1, progress: WindowProgress | None = None) -> None:
    """Compute every window not already saved in `folder`, `workers` at a time; save each as it finishes.

    On a failure the windows already finished stay saved, and rerunning resumes with the rest.
    """
    total = len(windows)
    todo = [i for i in range(total) if not partial_done(folder, i, windows[i], info)]
    done = total - len(todo)
    if progress:
        progress(done, total)
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: dict[Future[WindowLogprobs], int] = {}
        queue = iter(todo)
        while True:
            while failure is None and len(pending) < max(1, workers):
                index = next(queue, None)
                if index is None:
                    break
                pending[pool.submit(compute, windows[index])] = index
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in finished:
                index = pending.pop(future)
                error = future.exception()
                if error is not None:
                    failure = failure or error
                    continue
                write_partial(folder, index, future.result(), info)
                done += 1
                if progress:
                    progress(done, total)
    if failure is not None:
        if isinstance(failure, EvalError):
            message = f"{failure.location}: {failure.message}" if failure.location else failure.message
        else:
            message = f"{type(failure).__name__}: {failure}"
        raise EvalError(f"{message}\n  {done} of {total} windows are saved in {folder}",
                        hint="rerun the same command to resume; finished windows are not computed again")
