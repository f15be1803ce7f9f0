"""The one error type providers raise, with a code callers and workers can act on."""

from __future__ import annotations

from contracts.errors import ErrorCode, FleetError


class ProviderError(FleetError):
    """A provider call failed. ``op`` names the provider operation, e.g. ``local-llama.chat``."""

    def __init__(
        self,
        code: ErrorCode,
        op: str,
        message: str,
        *,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{op}: {message} [{code}]")
        self.code = code
        self.op = op
        self.detail = message
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        return self.code.retryable
