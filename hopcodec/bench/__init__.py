"""`hopcodec bench`: hopcodec against Codec 2 and Opus on real speech.

Modules, one idea each: `clips` (which audio), `codecs` / `peers` / `ours` (coding it),
`align` (delay), `metrics` / `pitch` (scoring), `runner` (the parallel run), `report` / `plots`
(what comes out), `cli` (the subcommand).
"""

from typing import Any

from hopcodec.bench.errors import BenchError, MissingDependency

__all__ = ["BenchError", "BenchResult", "MissingDependency", "run_bench"]


def __getattr__(name: str) -> Any:
    """`run_bench` and `BenchResult` load on first use, so `hopcodec --help` stays quick."""
    if name in ("run_bench", "BenchResult"):
        from hopcodec.bench import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
