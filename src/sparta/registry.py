"""A name -> factory table: the CLI and the API take their choices from the same list."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from sparta.errors import SpartaError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names (and aliases) to entries; an unknown name is a one-line SpartaError."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        """Decorator that adds an entry under `name` and its aliases; registering a name twice is an error."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = entry
            for alias in aliases:
                self._aliases[alias] = name
            return entry

        return add

    def canonical(self, name: str) -> str:
        """The registered name for `name` or an alias, case-insensitive; unknown ones fail listing the choices."""
        key = name.strip().lower()
        key = self._aliases.get(key, key)
        if key not in self._entries:
            raise SpartaError(f"unknown {self.kind} '{name}'; choose from: {', '.join(self.names())}")
        return key

    def get(self, name: str) -> T:
        """The entry for `name` or an alias."""
        return self._entries[self.canonical(name)]

    def names(self) -> list[str]:
        """The registered names in registration order (aliases left out)."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower() in {**self._entries, **self._aliases}

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
