"""The storage engine: bytes in, bytes out. See docs/architecture.md for the tour."""
