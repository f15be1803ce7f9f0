"""A ``multipart/form-data`` body (RFC 7578), read whole into its text fields and its files:
OpenAI's upload endpoints (files, transcriptions) take one. Starlette's own parser
(python-multipart) reads it; this module only gives the endpoints one view of the result and
turns a malformed body into OpenAI's 400. The body's size is bounded before it gets here
(gateway/body_limits.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import msgspec
from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from gateway.errors import OpenAIError, invalid_request

# Far more than any OpenAI upload sends (a file and a handful of fields).
_MAX_PARTS = 64


class Upload(msgspec.Struct, frozen=True, kw_only=True):
    filename: str
    content_type: str | None
    data: bytes


class Form(msgspec.Struct, frozen=True, kw_only=True):
    # A field sent more than once (OpenAI's arrays: ``include[]``) keeps every value.
    fields: dict[str, list[str]]
    files: dict[str, Upload]

    def names(self) -> set[str]:
        return set(self.fields) | set(self.files)


async def read_form(content_type: str | None, body: bytes) -> Form:
    """The fields and files of ``body``; OpenAIError 400 when it is not such a form."""
    headers, boundary = _form_headers(content_type)
    if b"--" + boundary + b"--" not in body:
        # python-multipart takes a form cut short for a whole one; a cut upload is no file.
        raise invalid_request(
            "the multipart/form-data body is malformed: it is not closed by its boundary", None
        )

    async def chunks() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(headers, chunks(), max_files=_MAX_PARTS, max_fields=_MAX_PARTS)
    try:
        parsed = await parser.parse()
    except MultiPartException as exc:
        raise invalid_request(
            f"the multipart/form-data body is malformed: {exc.message}", None
        ) from exc
    fields: dict[str, list[str]] = {}
    files: dict[str, Upload] = {}
    try:
        for name, value in parsed.multi_items():
            if isinstance(value, UploadFile):
                files[name] = Upload(
                    filename=value.filename or "",
                    content_type=value.content_type,
                    data=await value.read(),
                )
            else:
                fields.setdefault(name, []).append(value)
    finally:
        await parsed.close()
    return Form(fields=fields, files=files)


def _form_headers(content_type: str | None) -> tuple[Headers, bytes]:
    """The headers Starlette's parser reads, and the form's boundary."""
    media_type, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise OpenAIError(
            400,
            "the body must be multipart/form-data with a boundary (an upload, as OpenAI's "
            "SDKs send it)",
            code="invalid_content_type",
        )
    return Headers({"content-type": content_type or ""}), boundary
