"""Progress bars that are tqdm when it is installed (the `data` extra) and silent otherwise."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def _tqdm() -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is an extra; work without it
        return None
    return tqdm


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "",
             enabled: bool = True, unit: str = "clip") -> Iterator[T]:
    """Iterate over `items`, with a bar on stderr when enabled and tqdm is importable."""
    tqdm = _tqdm() if enabled else None
    if tqdm is None:
        yield from items
    else:
        yield from tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True)


class Counter:
    """A bar advanced by hand (`update(n)`), usable as a context manager."""

    def __init__(self, total: int, desc: str = "", enabled: bool = True, unit: str = "clip"):
        tqdm = _tqdm() if enabled else None
        self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True) if tqdm else None

    def update(self, n: int = 1) -> None:
        """Advance by `n`."""
        if self._bar is not None:
            self._bar.update(n)

    def __enter__(self) -> Counter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
