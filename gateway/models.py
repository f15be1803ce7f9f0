"""The models the gateway serves, from the model catalogue as ``fleet models`` lists it: each
model id with the job kind that runs it, for ``GET /v1/models`` and for refusing a model no
worker serves (404 ``model_not_found``) before anything reaches Kafka."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from gateway.errors import OpenAIError

# What each job kind is called in an OpenAI error message.
_ENDPOINT: Final = {
    "generate": "chat completions",
    "embed": "embeddings",
    "transcribe": "audio transcriptions",
    "speech": "audio speech",
}


class _Model(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "fleet"


class _ModelList(msgspec.Struct, frozen=True, kw_only=True):
    object: str = "list"
    data: list[_Model]


class ModelTable:
    def __init__(self, kinds: Mapping[str, str]) -> None:
        """``kinds``: each served model's job kind (``generate``, ``embed``...)."""
        self._kinds = dict(kinds)

    def check(self, model: str, kind: str) -> None:
        """OpenAIError 404 unless a worker of ``kind`` serves ``model``."""
        served = self._kinds.get(model)
        if served == kind:
            return
        message = f"The model `{model}` does not exist"
        if served is not None:
            asked, serves = _ENDPOINT.get(kind, kind), _ENDPOINT.get(served, served)
            message += f" for {asked}: it is served for {serves}"
        raise OpenAIError(404, message, code="model_not_found", param="model")

    def listing(self) -> bytes:
        return msgspec.json.encode(_ModelList(data=[_Model(id=m) for m in sorted(self._kinds)]))

    def entry(self, model: str) -> bytes:
        if model not in self._kinds:
            raise OpenAIError(
                404, f"The model `{model}` does not exist", code="model_not_found", param="model"
            )
        return msgspec.json.encode(_Model(id=model))
