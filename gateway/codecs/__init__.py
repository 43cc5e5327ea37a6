"""Binary payload codecs, named by device profiles (``binary.codec``).

A codec turns raw bytes into a plain dict of fields (the vendor decoder's vocabulary); the profile then
maps those fields to canonical readings and events. Codecs raise ``CodecError`` on malformed input.
A configurable codec (one decoder for a device family) is built from the profile's ``binary.options``
by a factory; a bad option raises ``CodecConfigError`` when the profile loads, not when a message comes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Codec = Callable[[bytes], dict[str, Any]]
CodecFactory = Callable[[Mapping[str, Any]], Codec]

CODECS: dict[str, Codec] = {}
FACTORIES: dict[str, CodecFactory] = {}


class CodecError(ValueError):
    pass


class CodecConfigError(ValueError):
    """A profile's codec options are invalid (unknown variant, malformed channel table)."""


def codec(name: str) -> Callable[[Codec], Codec]:
    def register(fn: Codec) -> Codec:
        if name in CODECS or name in FACTORIES:
            raise ValueError(f"codec {name!r} registered twice")
        CODECS[name] = fn
        return fn

    return register


def codec_factory(name: str) -> Callable[[CodecFactory], CodecFactory]:
    def register(fn: CodecFactory) -> CodecFactory:
        if name in CODECS or name in FACTORIES:
            raise ValueError(f"codec {name!r} registered twice")
        FACTORIES[name] = fn
        return fn

    return register


def get_codec(name: str, options: Mapping[str, Any] | None = None) -> Codec:
    _load_builtin()
    if name in FACTORIES:
        return FACTORIES[name](options or {})
    try:
        found = CODECS[name]
    except KeyError:
        known = ", ".join(sorted([*CODECS, *FACTORIES]))
        raise KeyError(f"unknown codec {name!r}; known: {known}") from None
    if options:
        raise CodecConfigError(f"codec {name!r} takes no options")
    return found


def _load_builtin() -> None:
    # Imported lazily so a codec module's import-time registration runs exactly once.
    from gateway.codecs import milesight, nbiot  # noqa: F401
