"""Rerank requests: a query and the documents to order by how well each answers it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Final

import msgspec

from contracts.envelope import Name, Request
from contracts.strict import StrictStruct, defstruct_fields

# A document is a text, or an object whose `rank_fields` are ranked (Cohere's and Jina's
# shapes); the object comes back as it was sent when `return_documents` is set.
Document = str | dict[str, str]
# The field of a document object ranked when the request names no `rank_fields`.
DEFAULT_RANK_FIELD: Final = "text"


class RerankOptions(StrictStruct, frozen=True, kw_only=True):
    """What to rank and how, defined once: a RerankRequest's, a batch file's `/v1/rerank`
    row body's and the gateway's call's."""

    query: str
    documents: Annotated[list[Document], msgspec.Meta(min_length=1)]
    # The fields of document objects that are ranked, in this order (each object must have
    # them); default: "text". Strings are ranked as they are.
    rank_fields: Annotated[list[str], msgspec.Meta(min_length=1)] | None = None
    # Only the best `top_n` come back (default: all of them, best first).
    top_n: Annotated[int, msgspec.Meta(ge=1)] | None = None
    # Each result carries its document as it was sent.
    return_documents: bool = False
    # Each document is cut to its first `max_tokens_per_doc` tokens before it is ranked.
    max_tokens_per_doc: Annotated[int, msgspec.Meta(ge=1)] | None = None

    def __post_init__(self) -> None:
        check_rank_fields(self.documents, self.rank_fields)


if TYPE_CHECKING:

    class _RerankJob(Request, RerankOptions, frozen=True, kw_only=True):
        """A request with the rerank options, as the type checker sees it."""

else:
    # As contracts/generate.py does for the chat options: RerankOptions' own fields added
    # onto Request.
    _RerankJob = msgspec.defstruct(
        "_RerankJob",
        defstruct_fields(RerankOptions),
        bases=(Request,),
        kw_only=True,
        frozen=True,
        module=__name__,
    )


class RerankRequest(_RerankJob, frozen=True, kw_only=True, tag="rerank"):
    model: Name
    provider: Name | None = None

    def __post_init__(self) -> None:
        check_rank_fields(self.documents, self.rank_fields)


def check_rank_fields(documents: list[Document], rank_fields: list[str] | None) -> None:
    """A ValidationError naming the first document object without a field to rank."""
    fields = rank_fields or [DEFAULT_RANK_FIELD]
    for index, document in enumerate(documents):
        if isinstance(document, dict) and (missing := [f for f in fields if f not in document]):
            raise msgspec.ValidationError(
                f"document {index} has no field {missing[0]!r} to rank "
                f"(rank_fields: {', '.join(fields)})"
            )


def rank_texts(documents: list[Document], rank_fields: list[str] | None) -> list[str]:
    """The text ranked for each document: a string itself; of an object, its rank fields
    as "field: value" lines (how Cohere ranks structured documents), or its one "text"."""
    fields = rank_fields or [DEFAULT_RANK_FIELD]
    return [_rank_text(document, fields) for document in documents]


def _rank_text(document: Document, fields: list[str]) -> str:
    if isinstance(document, str):
        return document
    if fields == [DEFAULT_RANK_FIELD]:
        return document[DEFAULT_RANK_FIELD]
    return "\n".join(f"{field}: {document[field]}" for field in fields)
