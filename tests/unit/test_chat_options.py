"""The chat options are defined once, in contracts.generate.ChatOptions: every type that
carries them gets them from there, and no class declares one of its own."""

from __future__ import annotations

import ast
import typing
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import msgspec
import pytest

from contracts.batch import ChatBody
from contracts.envelope import Request
from contracts.generate import ChatOptions, GenerateRequest, chat_options
from producer_sdk.options import GenerateOptions
from providers.chat.base import ChatParams
from tests.conftest import REPO

OPTIONS = ChatOptions.__struct_fields__
PACKAGES = ("contracts", "transport", "providers", "producer_sdk", "workers")
# The client's keyword arguments: a TypedDict the type checker needs spelled out, held to
# ChatOptions below and by the type checker (the request is built from it by name).
MIRRORS = {"producer_sdk/options.py": {"GenerateOptions"}}


@pytest.mark.parametrize("holder", [GenerateRequest, ChatBody, ChatParams])
def test_each_holder_has_every_option_as_chat_options_defines_it(holder: type[Any]) -> None:
    theirs = {info.name: info for info in msgspec.structs.fields(holder)}
    for info in msgspec.structs.fields(ChatOptions):
        assert theirs[info.name] == info, info.name


def test_the_holders_inherit_the_options() -> None:
    assert issubclass(ChatBody, ChatOptions)
    assert issubclass(ChatParams, ChatOptions)
    # msgspec cannot give a struct two bases with fields: the generate request's base is
    # Request with ChatOptions' fields added, and nothing else.
    base: Any = GenerateRequest.__mro__[1]
    assert base.__bases__ == (Request,)
    assert base.__struct_fields__ == Request.__struct_fields__ + OPTIONS
    assert base.__struct_config__.forbid_unknown_fields


def test_chat_options_reads_them_from_any_holder() -> None:
    body = ChatBody(messages=[], max_tokens=5, seed=1, user="u")
    options = chat_options(body)
    assert list(options) == list(OPTIONS)
    assert (options["max_tokens"], options["seed"], options["user"]) == (5, 1, "u")
    params = ChatParams(model="m", **options)
    assert chat_options(params) == options


def _declared(path: Path) -> dict[str, set[str]]:
    """The chat options each class of the module declares in its own body."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ClassDef):
            names = {
                item.target.id
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            }
            if names & set(OPTIONS):
                found[node.name] = names & set(OPTIONS)
    return found


SOURCES = sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_class_declares_the_options_but_chat_options(path: Path) -> None:
    where = str(path.relative_to(REPO))
    allowed = MIRRORS.get(where, set())
    if where == "contracts/generate.py":
        allowed = {"ChatOptions"}
    # A class of its own with one field of the same name (a local model's default seed)
    # is not a copy; two or more are.
    copies = {
        name: fields
        for name, fields in _declared(path).items()
        if len(fields) > 1 and name not in allowed
    }
    assert copies == {}


def _plain(hint: Any) -> Any:
    """A type without its msgspec constraints (what a TypedDict can say of it)."""
    if get_origin(hint) is Annotated:
        return _plain(get_args(hint)[0])
    if get_origin(hint) in (typing.Union, type(int | None)):
        args = tuple(_plain(arg) for arg in get_args(hint))
        return typing.Union[args]  # noqa: UP007 (built from a tuple)
    return hint


def test_the_clients_keywords_are_the_options_with_their_types() -> None:
    keywords = get_type_hints(GenerateOptions)
    fields = {info.name: info.type for info in msgspec.structs.fields(ChatOptions)}
    for name, hint in fields.items():
        assert name in keywords, name
        assert _plain(keywords[name]) == _plain(hint), name
