"""OpenAI's list object, a page of a cursor-paged list (``/v1/batches``, ``/v1/files``), and
its ``limit`` as the query gives it."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

import msgspec

from gateway.errors import invalid_request

T = TypeVar("T")


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


Item = TypeVar("Item", bound=_Identified)


class ListPage(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    object: str = "list"
    data: list[T]
    first_id: str | None
    last_id: str | None
    has_more: bool


def page_limit(given: str | None, *, default: int, most: int) -> int:
    """The ``limit`` query parameter: a whole number from 1 to ``most``, else a 400 naming it;
    ``default`` when not given."""
    if given is None:
        return default
    if not given.isdigit() or not 1 <= int(given) <= most:
        raise invalid_request(
            f"limit must be a whole number from 1 to {most}, not {given!r}", "limit"
        )
    return int(given)


def first_page(items: list[Item], limit: int) -> ListPage[Item]:
    """The first ``limit`` of ``items`` (what follows the cursor, in the list's order) as a
    page, saying whether more follow."""
    page = items[:limit]
    return ListPage(
        data=page,
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
        has_more=len(items) > limit,
    )
