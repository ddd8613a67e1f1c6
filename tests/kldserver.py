"""A minimal OpenAI-compatible completions server for the tests, answering `prompt_logprobs` like vLLM does.

It runs a transformers model on 127.0.0.1 (port 0) with the standard library's ThreadingHTTPServer, counts the
requests it receives, and can be told to fail (HTTP 500) every request after a number of successes.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class CompletionsServer:
    def __init__(self, model_path: Path, served_model: str = "tiny") -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.served_model = served_model
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype="auto").eval()
        self._torch = torch
        self._lock = threading.Lock()
        self.requests = 0
        self.answered = 0
        self.transient = 0  # the next N requests fail with 503, then the server recovers
        self.fail_after: int | None = None  # after this many answers, every request fails with 500
        self.omit_own_token = False  # answer like a server that leaves the prompt token out of prompt_logprobs
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # A short poll interval only makes stop() return sooner; nothing waits on the clock.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> CompletionsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        torch = self._torch
        with self._lock:
            self.requests += 1
            if self.transient > 0:
                self.transient -= 1
                return 503, {"error": "busy"}
            if self.fail_after is not None and self.answered >= self.fail_after:
                return 500, {"error": "injected failure"}
            if payload.get("model") != self.served_model:
                return 404, {"error": f"model {payload.get('model')!r} is not served"}
            tokens = payload["prompt"]
            k = int(payload["prompt_logprobs"])
            with torch.inference_mode():
                logits = self.model(input_ids=torch.tensor([tokens])).logits[0].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            values, ids = logprobs.topk(k, dim=-1)
            self.answered += 1
        prompt_logprobs: list[Any] = [None]
        for t in range(1, len(tokens)):
            row = {str(int(i)): {"logprob": float(v), "rank": r + 1, "decoded_token": f"t{int(i)}"}
                   for r, (i, v) in enumerate(zip(ids[t - 1], values[t - 1], strict=True))}
            # vLLM also returns the prompt's own token when it is not in the top-K.
            own = int(tokens[t])
            if self.omit_own_token:
                row.pop(str(own), None)
            else:
                row.setdefault(str(own), {"logprob": float(logprobs[t - 1, own]), "rank": 10**6, "decoded_token": "x"})
            prompt_logprobs.append(row)
        top = {f"token_id:{int(i)}": float(v) for i, v in zip(ids[-1], values[-1], strict=True)}
        choice = {"index": 0, "text": "", "prompt_logprobs": prompt_logprobs,
                  "logprobs": {"tokens": [f"token_id:{int(ids[-1, 0])}"], "top_logprobs": [top]}}
        return 200, {"object": "text_completion", "model": self.served_model, "choices": [choice]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                payload = json.loads(self.rfile.read(length))
                status, body = server.answer(payload) if self.path == "/v1/completions" else (404, {})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
