"""``multipart/form-data`` bodies (an upload's file and its text fields), read whole: the
body's size is bounded already (``gateway/body_limits.py``), and Starlette's own form parser
needs python-multipart, a dependency this one small reader saves. A body that is not such a
form is a 400 naming what is wrong."""

from __future__ import annotations

from email.message import Message
from email.parser import BytesHeaderParser
from typing import Final, NamedTuple

from gateway.errors import OpenAIError, invalid_request

_headers: Final = BytesHeaderParser()


class Upload(NamedTuple):
    filename: str
    data: bytes


class Form(NamedTuple):
    fields: dict[str, str]
    files: dict[str, Upload]


def read_form(content_type: str | None, body: bytes) -> Form:
    """The form ``body`` holds, by the boundary its ``Content-Type`` names."""
    boundary = _boundary(content_type)
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    # Each part follows a line of the delimiter; the first may start the body (no CRLF
    # before it), so one is put there.
    sections = (b"\r\n" + body).split(b"\r\n--" + boundary)
    for section in sections[1:]:
        if section.startswith(b"--"):  # the closing delimiter: what follows is epilogue
            return Form(fields, files)
        name, filename, content = _part(section)
        if name in fields or name in files:
            raise _malformed(f"the form has two parts named {name!r}")
        if filename is None:
            try:
                fields[name] = content.decode()
            except UnicodeDecodeError as exc:
                raise invalid_request(f"the form field {name!r} is not UTF-8", name) from exc
        else:
            files[name] = Upload(filename, content)
    raise _malformed("the body ends before its closing boundary")


def _boundary(content_type: str | None) -> bytes:
    header = Message()
    header["content-type"] = content_type or ""
    if header.get_content_type() != "multipart/form-data":
        raise invalid_request(
            f"the body must be multipart/form-data, not {content_type or 'untyped'}", None
        )
    boundary = header.get_boundary()
    if not boundary:
        raise _malformed("its Content-Type names no boundary")
    return boundary.encode()


def _part(section: bytes) -> tuple[str, str | None, bytes]:
    """A part's name, its filename (None for a text field) and its content."""
    line_end = section.find(b"\r\n")
    head_end = section.find(b"\r\n\r\n")
    # The delimiter's line may end in spaces (RFC 2046's transport padding), nothing else.
    if line_end < 0 or head_end < 0 or section[:line_end].strip(b" \t"):
        raise _malformed("a part has no header block")
    headers = _headers.parsebytes(section[line_end + 2 : head_end] + b"\r\n\r\n")
    if headers.get_content_disposition() != "form-data":
        raise _malformed("a part has no `Content-Disposition: form-data` header")
    name = headers.get_param("name", header="content-disposition")
    if not isinstance(name, str) or not name:
        raise _malformed("a part has no name")
    return name, headers.get_filename(), section[head_end + 4 :]


def _malformed(why: str) -> OpenAIError:
    return invalid_request(f"the body is not a multipart/form-data form: {why}", None)
