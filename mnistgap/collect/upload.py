"""Read a ``multipart/form-data`` request body with hard size limits, in memory only.

Starlette's own form parser spools file parts over 1 MB into the system's temporary folder;
the collect app must write nowhere but its ``--dir``, and must refuse an oversized upload
without reading it first. So the body is streamed through python-multipart's low-level
parser here: the declared ``Content-Length`` is checked before anything is read, the
running total is checked while reading (for bodies sent without a length), and every part
is capped (the image at ``max_file_bytes``, each text field at ``MAX_FIELD_BYTES``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

#: A text field (digit, group, member, replace) is a few characters; anything longer is bad.
MAX_FIELD_BYTES = 64
#: Room for the multipart framing and the text fields on top of the image itself.
FRAMING_BYTES = 16 * 1024


class UploadError(ValueError):
    """A request body that cannot be accepted; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Form:
    """The text fields and the one file part of a form."""

    fields: dict[str, str] = field(default_factory=dict)
    file: bytes | None = None
    filename: str | None = None


def too_large(max_file_bytes: int) -> UploadError:
    return UploadError(413, f"upload too large: the limit is {max_file_bytes // 1024} KiB")


class _Collector:
    """python-multipart callbacks that fill a :class:`Form`, enforcing the limits."""

    def __init__(self, file_field: str, text_fields: Collection[str], max_file_bytes: int):
        self.file_field = file_field
        self.text_fields = set(text_fields)
        self.max_file_bytes = max_file_bytes
        self.form = Form()
        self.ended = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._buf = bytearray()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_end": self.end,
        }

    def part_begin(self) -> None:
        self._headers = {}
        self._name = None
        self._buf = bytearray()

    def header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition"))
        if disposition != b"form-data" or b"name" not in options:
            raise UploadError(400, "malformed form: a part has no form-data name")
        name = options[b"name"].decode("utf-8", "replace")
        if name != self.file_field and name not in self.text_fields:
            allowed = ", ".join(sorted({self.file_field, *self.text_fields}))
            raise UploadError(400, f"unknown form field {name[:40]!r} (allowed: {allowed})")
        if name in self.form.fields or (name == self.file_field and self.form.file is not None):
            raise UploadError(400, f"form field {name!r} given twice")
        self._name = name
        if name == self.file_field:
            raw = options.get(b"filename")
            self.form.filename = raw.decode("utf-8", "replace")[:200] if raw else None

    def part_data(self, data: bytes, start: int, end: int) -> None:
        self._buf.extend(data[start:end])
        if self._name == self.file_field:
            if len(self._buf) > self.max_file_bytes:
                raise too_large(self.max_file_bytes)
        elif len(self._buf) > MAX_FIELD_BYTES:
            raise UploadError(400, f"form field {self._name!r} too long")

    def part_end(self) -> None:
        if self._name == self.file_field:
            self.form.file = bytes(self._buf)
        elif self._name is not None:
            try:
                self.form.fields[self._name] = self._buf.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadError(400, f"form field {self._name!r} is not UTF-8 text") from None
        self._buf = bytearray()

    def end(self) -> None:
        self.ended = True


async def read_form(
    content_type: str | None,
    content_length: str | None,
    chunks: AsyncIterator[bytes],
    *,
    file_field: str,
    text_fields: Collection[str],
    max_file_bytes: int,
) -> Form:
    """Parse a multipart body from ``chunks`` (e.g. ``request.stream()``) within the limits.

    Raises :class:`UploadError`: 413 for a body over ``max_file_bytes`` (plus framing), 400
    for anything malformed (not multipart, unknown or repeated fields, truncated body).
    """
    mime, options = parse_options_header(content_type)
    if mime != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadError(400, "expected a multipart/form-data body (an HTML form with a file)")
    max_body = max_file_bytes + FRAMING_BYTES
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise UploadError(400, "bad Content-Length header") from None
        if declared > max_body:
            raise too_large(max_file_bytes)
    collector = _Collector(file_field, text_fields, max_file_bytes)
    parser = MultipartParser(options[b"boundary"], collector.callbacks())
    total = 0
    try:
        async for chunk in chunks:
            total += len(chunk)
            if total > max_body:
                raise too_large(max_file_bytes)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as err:
        raise UploadError(400, f"malformed multipart body: {str(err)[:120]}") from None
    if not collector.ended:
        raise UploadError(400, "malformed multipart body: truncated")
    return collector.form
