"""Writing gzipped TFRecord files directly: the framing is small and documented, and writing
whole batches here keeps ExampleGen free of per-record Beam overhead and of TensorFlow imports."""

from __future__ import annotations

import gzip
import os
import struct

import google_crc32c

# zlib level 1 writes 1M penguin examples in about a third of the time of level 6, at ~25% more bytes.
COMPRESS_LEVEL = 1


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def frame(records: list[bytes]) -> bytes:
    """The TFRecord encoding of `records`: length, masked CRC of length, data, masked CRC of data."""
    parts = []
    for record in records:
        length = struct.pack("<Q", len(record))
        parts += [length, _masked_crc(length), record, _masked_crc(record)]
    return b"".join(parts)


def write_gzipped(path: str, records: list[bytes]) -> None:
    """Writes `records` to `path` atomically (a temporary name, then a rename), so a retried or
    interrupted worker never leaves a truncated file under the final name."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with (
        open(temporary, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0) as f,
    ):
        f.write(frame(records))
    os.replace(temporary, path)


def read_gzipped(path: str, batch_size: int = 20_000):
    """Yields lists of up to `batch_size` records from a gzipped TFRecord file. Lengths are read
    from the framing; CRCs are not checked (gzip's own CRC covers the file), but a truncated file
    raises ValueError naming it."""
    with gzip.open(path, "rb") as f:
        try:
            data = f.read()
        except (EOFError, OSError) as error:
            raise ValueError(f"{path} is not a complete gzip file ({error})") from None
    records, offset, end = [], 0, len(data)
    while offset < end:
        if offset + 12 > end:
            raise ValueError(f"{path} is truncated at byte {offset} of its TFRecord data")
        (length,) = struct.unpack_from("<Q", data, offset)
        start = offset + 12
        offset = start + length + 4
        if offset > end:
            raise ValueError(f"{path} is truncated in a record at byte {start}")
        records.append(data[start : start + length])
        if len(records) == batch_size:
            yield records
            records = []
    if records:
        yield records
