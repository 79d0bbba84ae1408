"""The key codec: typed values and tuples to order-preserving bytes, and back.

The entity layer imports this facade; ``keys.py`` holds the byte layout (its docstring is the
format specification, collected in docs/format.md). Pure, synchronous functions only.
"""

from .keys import (
    MAX_NESTING,
    KeyFormat,
    KeyTag,
    KeyValue,
    decode_key,
    decode_tuple,
    encode_key,
    encode_keys,
    encode_tuple,
    prefix_end,
    prefix_range,
    successor,
)

__all__ = [
    "MAX_NESTING",
    "KeyFormat",
    "KeyTag",
    "KeyValue",
    "decode_key",
    "decode_tuple",
    "encode_key",
    "encode_keys",
    "encode_tuple",
    "prefix_end",
    "prefix_range",
    "successor",
]
