"""A ``multipart/form-data`` body (RFC 7578), read whole into its text fields and its files:
OpenAI's upload endpoints take one. The body is bounded already (gateway/body_limits.py), so
it is split in memory; a body that is not a well-formed form is refused with 400."""

from __future__ import annotations

from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Final

import msgspec

from gateway.errors import OpenAIError, invalid_request

_CRLF: Final = b"\r\n"
_HEAD_END: Final = b"\r\n\r\n"


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


def read_form(content_type: str | None, body: bytes) -> Form:
    """The fields and files of ``body``; OpenAIError 400 when it is not such a form."""
    delimiter = b"--" + _boundary(content_type).encode()
    start = body.find(delimiter)
    if start < 0:
        raise _malformed("its boundary never appears in the body")
    fields: dict[str, list[str]] = {}
    files: dict[str, Upload] = {}
    at = start + len(delimiter)
    while not body.startswith(b"--", at):  # "--" after a delimiter closes the form
        if not body.startswith(_CRLF, at):
            raise _malformed("a boundary is not followed by a line break")
        head_end = body.find(_HEAD_END, at + 2)
        end = body.find(_CRLF + delimiter, head_end + 4) if head_end >= 0 else -1
        if end < 0:
            raise _malformed("a part is not closed by the boundary")
        name, filename, part_type = _disposition(body[at + 2 : head_end])
        data = body[head_end + 4 : end]
        if filename is not None:
            files[name] = Upload(filename=filename, content_type=part_type, data=data)
        else:
            fields.setdefault(name, []).append(_text(name, data))
        at = end + 2 + len(delimiter)
    return Form(fields=fields, files=files)


def _boundary(content_type: str | None) -> str:
    header = _header("content-type", content_type or "")
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise OpenAIError(
            400,
            "the body must be multipart/form-data with a boundary (an upload, as OpenAI's "
            "SDKs send it)",
            code="invalid_content_type",
        )
    return boundary


def _disposition(head: bytes) -> tuple[str, str | None, str | None]:
    """A part's field name, its file name (None for a text field) and its content type."""
    disposition = part_type = None
    for line in head.decode("utf-8", "replace").split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-disposition":
            disposition = _header("content-disposition", value.strip())
        elif key.strip().lower() == "content-type":
            part_type = value.strip()
    params = dict(disposition.get_params(header="content-disposition") or []) if disposition else {}
    name = params.get("name")
    if "form-data" not in params or not name:
        raise _malformed("a part has no Content-Disposition of form-data naming its field")
    filename = params.get("filename")
    return (
        collapse_rfc2231_value(name),
        None if filename is None else collapse_rfc2231_value(filename),
        part_type,
    )


def _header(name: str, value: str) -> Message:
    message = Message()
    message[name] = value
    return message


def _text(name: str, data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise invalid_request(f"`{name}` is not UTF-8 text", name) from exc


def _malformed(why: str) -> OpenAIError:
    return invalid_request(f"the multipart/form-data body is malformed: {why}", None)
