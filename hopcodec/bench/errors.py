"""Errors the bench reports to the user as one line, without a traceback."""


class BenchError(Exception):
    """Bad input or environment: the message says what is wrong and how to fix it."""


class MissingDependency(BenchError):
    """An optional package or tool that a codec or metric needs is not installed."""

    def __init__(self, what: str, package: str, hint: str = "") -> None:
        self.what = what
        self.package = package
        msg = f"{what} needs {package}, which is not installed"
        self.hint = hint
        super().__init__(f"{msg}; {hint}" if hint else msg)

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (type(self), (self.what, self.package, self.hint))
