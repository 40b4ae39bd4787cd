"""The optional parts of the install (pip extras) that some commands need, and the error that
names a missing one: the base install runs the codec commands only."""

from importlib import import_module

from streaming_core.errors import HopcodecError


class MissingExtraError(HopcodecError):
    """A command whose optional dependencies (a pip extra of hopcodec) are not installed."""


def require_extra(command: str, extra: str, modules: tuple[str, ...]) -> None:
    """`MissingExtraError` naming `extra` when one of `modules`, which `hopcodec command` needs,
    cannot be imported."""
    missing = []
    for name in modules:
        try:
            import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingExtraError(f"hopcodec {command} needs {', '.join(missing)}: "
                                f"pip install 'hopcodec[{extra}]'")
