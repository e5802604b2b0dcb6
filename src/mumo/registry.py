"""One small registry per component family, so tests can loop over every entry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from mumo.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a name to a component; an unknown name is a one-line error listing the valid ones."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.family} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str, key: str = "type") -> T:
        if name not in self._entries:
            raise ConfigError(
                f"{key}: {name!r} is not {self.family}; choose one of {', '.join(self.names())}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
