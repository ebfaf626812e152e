"""One INI section while the loader converts it, and parsers the section builders share.

Pure module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cnrd.config.model import ConfigError
from cnrd.config.values import MULTILINE_PARSERS, InvalidValue
from cnrd.text import suggest

__all__ = ["Section", "parse_word"]


class Section:
    """One INI section being converted: its raw values, and errors located to it.

    ``name`` is the text after the type in the header; ``""`` for the unnamed
    ``[server]`` and ``[api]``.
    """

    def __init__(self, path: str, header: str, kind: str, name: str,
                 values: dict[str, str], allowed: Iterable[str]) -> None:
        self.path = path
        self.header = header
        self.kind = kind
        self.name = name
        self.values = values
        self.allowed = tuple(allowed)

    def error(self, key: str | None, reason: str) -> ConfigError:
        return ConfigError(self.path, self.header, key, reason)

    def check_keys(self, extra: Callable[[str], bool] = lambda key: False) -> None:
        """Refuse keys that are not attributes of this section type."""
        for key in self.values:
            if key not in self.allowed and not extra(key):
                raise self.error(key, "unknown key" + suggest(key, self.allowed))

    def get(self, key: str, parse: Callable[..., Any], *args: Any,
            default: Any = None, required: bool = False) -> Any:
        """The parsed value of ``key``, or ``default`` when absent."""
        if key not in self.values:
            if required:
                raise self.error(key, "required key is missing")
            return default
        text = self.values[key]
        # An indented line continues the previous value; that is only
        # meaningful for lists, elsewhere it is an indentation mistake.
        if "\n" in text and parse not in MULTILINE_PARSERS:
            raise self.error(key, f"value continues on the next line ({text.split(chr(10))[1]!r}); "
                                  "is that line indented by mistake?")
        try:
            return parse(text, *args)
        except InvalidValue as e:
            raise self.error(key, str(e)) from None


def parse_word(text: str, words: tuple[str, ...]) -> str:
    """One of ``words`` (any case)."""
    t = text.strip().lower()
    if t not in words:
        raise InvalidValue(f"bad value {text.strip()!r}{suggest(t, words)}; allowed: {', '.join(words)}")
    return t
