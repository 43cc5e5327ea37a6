"""Binary payload codecs, named by device profiles (``binary.codec``).

A codec turns raw bytes into a plain dict of fields (the vendor decoder's vocabulary); the profile then
maps those fields to canonical readings and events. Codecs raise ``CodecError`` on malformed input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Codec = Callable[[bytes], dict[str, Any]]

CODECS: dict[str, Codec] = {}


class CodecError(ValueError):
    pass


def codec(name: str) -> Callable[[Codec], Codec]:
    def register(fn: Codec) -> Codec:
        if name in CODECS:
            raise ValueError(f"codec {name!r} registered twice")
        CODECS[name] = fn
        return fn

    return register


def get_codec(name: str) -> Codec:
    _load_builtin()
    try:
        return CODECS[name]
    except KeyError:
        raise KeyError(f"unknown codec {name!r}; known: {', '.join(sorted(CODECS))}") from None


def _load_builtin() -> None:
    # Imported lazily so a codec module's import-time registration runs exactly once.
    from gateway.codecs import milesight, nbiot  # noqa: F401
