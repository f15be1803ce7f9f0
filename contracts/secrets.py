"""Secret strings (API keys) that never show themselves in logs, reprs, errors or traces."""

from __future__ import annotations

import os
from pathlib import Path
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


_ENV: Final = "env:"
_FILE: Final = "file:"


def resolve_secret(value: str) -> str:
    """The secret a config value names: ``"env:NAME"`` reads the environment variable NAME,
    ``"file:PATH"`` the file at PATH (one trailing newline dropped, as secret mounts and
    ``echo`` write it); any other value is the secret itself. A missing variable or an
    unreadable file is an error that names it, never the secret."""
    if value.startswith(_ENV):
        name = value.removeprefix(_ENV)
        found = os.environ.get(name)
        if found is None:
            raise ValueError(f"the environment variable {name!r} is not set")
        return found
    if value.startswith(_FILE):
        path = Path(value.removeprefix(_FILE))
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(
                f"the secret file {str(path)!r} cannot be read: {exc.strerror}"
            ) from None
        return text.removesuffix("\n")
    return value


def decode_secret(type_: type, value: Any) -> Any:
    """msgspec ``dec_hook``: builds Secret fields of configs from strings, resolving
    ``env:`` and ``file:`` references (``resolve_secret``)."""
    if type_ is Secret and isinstance(value, str):
        return Secret(resolve_secret(value))
    # TypeError lets msgspec report it as a ValidationError naming the field.
    raise TypeError(f"cannot convert {type(value).__name__} to {type_.__name__}")
