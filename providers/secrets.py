"""Secret strings (API keys) that never show themselves in logs, reprs, errors or traces."""

from __future__ import annotations

from typing import Any, Final

_MASK: Final = "**********"


class Secret:
    """Holds a secret value; only ``reveal()`` returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


def decode_secret(type_: type, value: Any) -> Any:
    """msgspec ``dec_hook``: builds Secret fields of provider configs from plain strings."""
    if type_ is Secret and isinstance(value, str):
        return Secret(value)
    # TypeError lets msgspec report it as a ValidationError naming the field.
    raise TypeError(f"cannot convert {type(value).__name__} to {type_.__name__}")
