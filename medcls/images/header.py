"""An image file's width and height, read from its header without decoding a pixel.

Decoding a 20000 x 20000 picture takes gigabytes before anything can look at its size, so the size
limit (`max_image_pixels`, `medcls.images.decode.check_decodable_size`) is checked on this first. The formats are those the pipeline accepts: PNG,
JPEG, BMP, TIFF and WebP; any other content, or a header cut short, has no size here and is
reported as undecodable, as the decoder would report it.
"""

from __future__ import annotations

import struct
from pathlib import Path

# A header is small; JPEG's size marker follows the metadata segments (EXIF, ICC profiles), which
# can reach some hundreds of kilobytes, so JPEG segments are skipped by seeking, not read.
_HEAD_BYTES = 64
_JPEG_SIZE_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file's header, or None when it is not a readable PNG, JPEG, BMP,
    TIFF or WebP header."""
    with open(path, "rb") as stream:
        head = stream.read(_HEAD_BYTES)
        try:
            if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
                return struct.unpack(">II", head[16:24])
            if head.startswith(b"\xff\xd8"):
                return _jpeg_size(stream)
            if head.startswith(b"BM"):
                width, height = struct.unpack("<ii", head[18:26])
                return abs(width), abs(height)  # a negative height stores rows top-down
            if head[:4] in (b"II*\x00", b"MM\x00*"):
                return _tiff_size(stream, "<" if head[:2] == b"II" else ">")
            if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
                return _webp_size(head)
        except struct.error:  # the header ends early
            return None
    return None


def _jpeg_size(stream) -> tuple[int, int] | None:
    """Walk the JPEG segments from the start of the file to the first frame header (SOFn)."""
    stream.seek(2)
    while True:
        if stream.read(1) != b"\xff":
            return None
        marker = stream.read(1)
        while marker == b"\xff":  # fill bytes before a marker
            marker = stream.read(1)
        if not marker:
            return None
        if marker[0] == 0x01 or 0xD0 <= marker[0] <= 0xD7:  # markers without a length field
            continue
        (length,) = struct.unpack(">H", stream.read(2))
        if marker[0] in _JPEG_SIZE_MARKERS:
            height, width = struct.unpack(">xHH", stream.read(5))
            return width, height
        stream.seek(length - 2, 1)


def _tiff_size(stream, order: str) -> tuple[int, int] | None:
    """ImageWidth (256) and ImageLength (257) of the first image file directory."""
    stream.seek(4)
    (offset,) = struct.unpack(order + "I", stream.read(4))
    stream.seek(offset)
    (count,) = struct.unpack(order + "H", stream.read(2))
    found = {}
    for _ in range(count):
        tag, kind, _, value = struct.unpack(order + "HHI4s", stream.read(12))
        if tag in (256, 257):
            short = kind == 3  # SHORT, else LONG
            found[tag] = struct.unpack(order + ("H" if short else "I"), value[: 2 if short else 4])[0]
    return (found[256], found[257]) if len(found) == 2 else None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None
