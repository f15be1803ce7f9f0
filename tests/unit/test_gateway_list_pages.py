"""OpenAI's list pages as the gateway's list routes answer them: the page, its cursors, and
a ``limit`` out of bounds refused naming it."""

from __future__ import annotations

import msgspec
import pytest

from gateway.errors import OpenAIError
from gateway.list_pages import first_page, page_limit


class _Item(msgspec.Struct, frozen=True):
    id: str


def test_a_page_names_its_ends_and_whether_more_follow() -> None:
    items = [_Item("a"), _Item("b"), _Item("c")]
    page = first_page(items, 2)
    assert (page.data, page.first_id, page.last_id, page.has_more) == (items[:2], "a", "b", True)
    assert first_page(items, 3).has_more is False
    empty = first_page(list[_Item](), 5)
    assert (empty.data, empty.first_id, empty.last_id, empty.has_more) == ([], None, None, False)
    assert msgspec.json.decode(msgspec.json.encode(empty)) == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


@pytest.mark.parametrize("given", ["0", "101", "-1", "ten", "2.5", ""])
def test_a_limit_out_of_bounds_is_400_naming_it(given: str) -> None:
    with pytest.raises(OpenAIError) as refused:
        page_limit(given, default=20, most=100)
    assert (refused.value.status, refused.value.param) == (400, "limit")


def test_a_limit_not_given_is_the_default() -> None:
    assert page_limit(None, default=20, most=100) == 20
    assert page_limit("100", default=20, most=100) == 100
