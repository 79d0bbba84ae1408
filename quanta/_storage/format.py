"""Pieces shared by every on-disk format: the file header, checksums and block framing.

The constants in this module are part of the on-disk format: changing one makes existing
databases unreadable. Every integer is little-endian.

File header (32 bytes, first bytes of every WAL segment, MANIFEST and SSTable):

```
offset size field
     0    8 magic            b"QNTAWAL\\x00" | b"QNTAMFST" | b"QNTASST\\x00"
     8    2 format_version   u16, FormatVersion
    10    1 cipher           u8, Cipher (0 = none); room for encryption at rest
    11    1 flags            u8, 0 (reserved)
    12    4 key_id           u32, which key encrypted the file (0 when cipher = 0)
    16    8 file_number      u64, the number in the file's name (catches a renamed file)
    24    4 reserved         0
    28    4 header_crc       u32, CRC-32 (zlib polynomial) of bytes 0..27
```

Worked example: the header of WAL segment 7, no encryption::

    51 4e 54 41 57 41 4c 00  01 00  00  00  00 00 00 00
    07 00 00 00 00 00 00 00  00 00 00 00  <crc32 of the 28 bytes before>

Block frame (SSTable blocks): ``payload || frame_type:u8 || crc32:u32`` where the CRC covers
``payload || frame_type``. Frame type 0 is a plain, checksummed block. An encrypted frame
(a later issue) will use another frame type and carry ``nonce || ciphertext || tag`` in place
of the payload and checksum; the trailer stays 5 bytes so block handles keep their meaning.

Checksums are CRC-32 from ``zlib`` (C, in the standard library). CRC-32C would be the
textbook choice (LevelDB, RocksDB) but needs another dependency and buys nothing here: the
job is detecting accidental corruption, which both do equally well.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

from ..errors import CorruptionError

__all__ = [
    "BLOCK_TRAILER_SIZE",
    "HEADER_SIZE",
    "Cipher",
    "FileHeader",
    "FileKind",
    "FormatVersion",
    "checksum",
    "frame_block",
    "unframe_block",
]

checksum = zlib.crc32

HEADER_SIZE = 32
BLOCK_TRAILER_SIZE = 5

_HEADER = struct.Struct("<8sHBBIQI")  # without the trailing crc
_CRC = struct.Struct("<I")
_TRAILER = struct.Struct("<BI")


class FileKind(bytes):
    """The 8-byte magic number at the start of each kind of file."""


WAL_MAGIC = b"QNTAWAL\x00"
MANIFEST_MAGIC = b"QNTAMFST"
SSTABLE_MAGIC = b"QNTASST\x00"
MAGICS = {WAL_MAGIC: "WAL", MANIFEST_MAGIC: "MANIFEST", SSTABLE_MAGIC: "SSTable"}


class FormatVersion(IntEnum):
    """Versions of the file formats (one number for all file kinds)."""

    V1 = 1  # first release: msgpack payloads, CRC-32 checksums, plain frames only


CURRENT_FORMAT = FormatVersion.V1


class Cipher(IntEnum):
    NONE = 0  # plain data, CRC-32 checksums


class FrameType(IntEnum):
    PLAIN = 0  # payload followed by its CRC-32


@dataclass(frozen=True)
class FileHeader:
    magic: bytes
    file_number: int
    format_version: int = CURRENT_FORMAT
    cipher: int = Cipher.NONE
    key_id: int = 0

    def encode(self) -> bytes:
        head = _HEADER.pack(self.magic, self.format_version, self.cipher, 0, self.key_id, self.file_number, 0)
        return head + _CRC.pack(checksum(head))

    @classmethod
    def decode(cls, data: bytes, *, path: str, expect_magic: bytes) -> FileHeader:
        """Parse and check a header; raise CorruptionError (naming ``path``) if it is not one."""
        if len(data) < HEADER_SIZE:
            raise CorruptionError(
                f"file too short for a {MAGICS.get(expect_magic, 'QuantaDB')} header", path=path, offset=0
            )
        head = data[: HEADER_SIZE - 4]
        (crc,) = _CRC.unpack_from(data, HEADER_SIZE - 4)
        magic, version, cipher, _flags, key_id, number, _ = _HEADER.unpack(head)
        if magic != expect_magic:
            kind = MAGICS.get(magic)
            what = f"a {kind} file" if kind else "not a QuantaDB file"
            raise CorruptionError(
                f"bad magic number: expected {MAGICS[expect_magic]}, found {what}", path=path, offset=0
            )
        if checksum(head) != crc:
            raise CorruptionError("file header checksum mismatch", path=path, offset=HEADER_SIZE - 4)
        if version not in FormatVersion.__members__.values():
            raise CorruptionError(
                f"unsupported format version {version} (this QuantaDB reads up to {int(CURRENT_FORMAT)})",
                path=path,
                offset=8,
            )
        if cipher != Cipher.NONE:
            raise CorruptionError(
                f"file is encrypted with cipher {cipher}, which this build cannot read", path=path, offset=10
            )
        return cls(magic=magic, file_number=number, format_version=version, cipher=cipher, key_id=key_id)


def frame_block(payload: bytes) -> bytes:
    """Append the plain frame trailer (type byte and CRC-32) to a block payload."""
    return payload + _TRAILER.pack(FrameType.PLAIN, checksum(payload + b"\x00"))


def unframe_block(frame: bytes, *, path: str, offset: int) -> bytes:
    """Check a framed block and return its payload; CorruptionError names path and offset."""
    if len(frame) < BLOCK_TRAILER_SIZE:
        raise CorruptionError("block shorter than its trailer", path=path, offset=offset)
    ftype, crc = _TRAILER.unpack_from(frame, len(frame) - BLOCK_TRAILER_SIZE)
    body = frame[: len(frame) - 4]
    if checksum(body) != crc:
        raise CorruptionError("block checksum mismatch", path=path, offset=offset)
    if ftype != FrameType.PLAIN:
        raise CorruptionError(f"unknown block frame type {ftype}", path=path, offset=offset)
    return body[:-1]
