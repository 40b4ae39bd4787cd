"""`hopcodec data ...`: prepare a corpus, build the open Debian corpus, build a feature cache.

The main CLI calls `register(subparsers)`; each command sets `args.handler(args) -> int` (the
exit status). Errors print one line on stderr and return a non-zero status, no traceback.
Standalone: `python -m models.data prepare ...`.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from models.data import DataError

EXIT_ERROR = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `data` command and its sub-commands to a `hopcodec` sub-parser set."""
    data = subparsers.add_parser("data", help="corpus preparation and training feature cache",
                                 description="Corpus preparation and training feature cache.")
    sub = data.add_subparsers(dest="data_command", metavar="{prepare,recipe,features}")
    sub.required = True

    p = sub.add_parser("prepare", help="folders of speech -> 16 kHz mono corpus + manifest")
    p.add_argument("sources", nargs="+", type=Path, metavar="SRC",
                   help="folder: flat, speaker/chapter/*.flac, VCTK-like, or with manifest.csv")
    p.add_argument("--out", type=Path, required=True, help="corpus folder to write")
    p.add_argument("--split-map", type=Path, metavar="CSV",
                   help="CSV with columns group,split that fixes the split of those groups")
    p.add_argument("--valid-frac", type=float, default=0.1, help="hashed groups to valid")
    p.add_argument("--test-frac", type=float, default=0.1, help="hashed groups to test")
    p.add_argument("--speaker-regex", help="regex on the relative path; group 1 is the speaker")
    _common(p)
    p.set_defaults(handler=_guarded(cmd_prepare))

    r = sub.add_parser("recipe", help="build the open corpus of real speech from Debian packages")
    r.add_argument("--out", type=Path, required=False, help="corpus folder to write")
    r.add_argument("--sources", help="comma-separated subset (see --list-sources)")
    r.add_argument("--no-narrowband", action="store_true", help="leave out 8 kHz sources")
    r.add_argument("--cache-dir", type=Path, help=".deb download cache (default OUT/_cache)")
    r.add_argument("--list-sources", action="store_true", help="list the sources and exit")
    _common(r)
    r.set_defaults(handler=_guarded(cmd_recipe))

    f = sub.add_parser("features", help="corpus -> memory-mapped feature cache for training")
    f.add_argument("--corpus", type=Path, required=True, help="folder with manifest.csv")
    f.add_argument("--out", type=Path, required=True, help="cache folder to write")
    f.add_argument("--augment", type=int, default=0, metavar="N",
                   help="augmented copies per clip besides the clean one (default 0)")
    f.add_argument("--no-signal", action="store_true", help="store features only")
    f.add_argument("--splits", help="comma-separated subset of train,valid,test")
    f.add_argument("--seed", type=int, default=0, help="augmentation seed")
    f.add_argument("--analyze", default="streaming_core.analysis:analyze_signal",
                   metavar="MODULE:FUNC", help="feature analysis function")
    _common(f)
    f.set_defaults(handler=_guarded(cmd_features))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn expected failures into one line on stderr and a non-zero exit status."""
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (DataError, OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print("interrupted: re-run to resume", file=sys.stderr)
            return 130
    run.__doc__ = fn.__doc__
    return run


def _print_corpus(summary: dict, out: Path, seconds: float) -> None:
    splits = ", ".join(f"{k} {v['hours']:.2f} h / {v['files']} files"
                       for k, v in summary["per_split"].items())
    print(f"{summary['files']} clips, {summary['hours']:.2f} h, {summary['speakers']} speakers "
          f"({splits}); dropped {summary['dropped'] or 'none'}; {seconds:.0f} s")
    print(f"manifest: {out / 'manifest.csv'}")


def read_split_map(path: Path) -> dict[str, str]:
    """group -> split from a CSV with `group` and `split` columns."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"group", "split"} <= set(rows[0]):
        raise DataError(f"{path}: needs a header with 'group' and 'split' columns")
    return {r["group"]: r["split"] for r in rows}


def cmd_prepare(args: argparse.Namespace) -> int:
    """hopcodec data prepare SRC... --out DIR"""
    from models.data.prepare import prepare_corpus

    t0 = time.time()
    summary = prepare_corpus(
        args.sources, args.out, split_map=read_split_map(args.split_map) if args.split_map
        else None, valid_frac=args.valid_frac, test_frac=args.test_frac,
        speaker_regex=args.speaker_regex, workers=args.workers, show_progress=not args.quiet)
    print("layouts: " + ", ".join(f"{k}={v}" for k, v in summary["layouts"].items()))
    _print_corpus(summary, args.out, time.time() - t0)
    empty = [s for s in ("train", "valid", "test") if s not in summary["per_split"]]
    if empty:
        print(f"note: no {' or '.join(empty)} split ({summary['groups']} speaker groups); "
              "use --split-map to choose", file=sys.stderr)
    return 0


def cmd_recipe(args: argparse.Namespace) -> int:
    """hopcodec data recipe --out DIR"""
    from models.data.recipe import SOURCES, build_open_corpus

    if args.list_sources:
        for name, s in SOURCES.items():
            nb = " (8 kHz)" if s.narrowband else ""
            print(f"{name:14s}{nb} {s.license}: {' '.join(s.packages)}")
        return 0
    if args.out is None:
        raise DataError("--out DIR is required")
    t0 = time.time()
    summary = build_open_corpus(
        args.out, sources=args.sources.split(",") if args.sources else None,
        narrowband=not args.no_narrowband, cache_dir=args.cache_dir, workers=args.workers,
        show_progress=not args.quiet)
    _print_corpus(summary, args.out, time.time() - t0)
    return 0


def load_function(spec: str) -> Callable:
    """"package.module:function" -> the function."""
    mod, _, name = spec.partition(":")
    if not name:
        raise DataError(f"--analyze {spec!r}: expected MODULE:FUNCTION")
    try:
        return getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise DataError(f"cannot load analysis {spec}: {e}") from e


def cmd_features(args: argparse.Namespace) -> int:
    """hopcodec data features --corpus DIR --out DIR [--augment N]"""
    from models.data.features_cache import build_cache

    t0 = time.time()
    summary = build_cache(
        args.corpus, args.out, augment_copies=args.augment, with_signal=not args.no_signal,
        workers=args.workers, seed=args.seed,
        splits=args.splits.split(",") if args.splits else None,
        analyze=load_function(args.analyze), show_progress=not args.quiet)
    for split, s in summary.items():
        print(f"{split}: {s['entries']} entries ({s['reused']} reused), {s['frames']} frames, "
              f"{s['hours']:.2f} h")
    print(f"cache: {args.out} ({time.time() - t0:.0f} s); "
          + json.dumps({k: v["frames"] for k, v in summary.items()}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: `python -m models.data ...`."""
    parser = argparse.ArgumentParser(prog="python -m models.data")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["data", *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args)
