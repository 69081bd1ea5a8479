"""OpenAI embeddings: POST /v1/embeddings."""

from __future__ import annotations

from typing import Any

from meritorder.endpoints.base import EndpointSpec
from meritorder.endpoints.completions import prompt_text
from meritorder.errors import bad_request
from meritorder.request import BodyPath, RequestView


class EmbeddingsSpec(EndpointSpec, api="embeddings", path="/v1/embeddings", operation="embeddings"):
    text_keys = frozenset({"model", "input"})

    def view(self, body: dict[str, Any]) -> RequestView:
        if body.get("stream"):
            raise bad_request(
                "/v1/embeddings does not stream; leave out 'stream'.",
                param="stream",
                code="invalid_value",
            )
        raw: Any = body.get("input")
        prompt_text(raw, field="input", path=self.path)  # validates the shape
        # One user message per input string: each is embedded (and redacted) on its own.
        texts: list[str] = [""]  # token ids: no text to read (one empty message, as completions)
        paths: list[BodyPath] = [("input",)]
        if isinstance(raw, str):
            texts, paths = [raw], [("input",)]
        elif all(isinstance(p, str) for p in raw):
            texts = list(raw)
            paths = [("input", i) for i in range(len(raw))]
        return self.request_view(
            body,
            [{"role": "user", "content": t} for t in texts],
            paths,
            max_output_tokens=0,  # an embedding generates no tokens
            unreadable=not any(
                isinstance(p, str) for p in ([raw] if isinstance(raw, str) else raw)
            ),
        )


SPEC = EmbeddingsSpec()
