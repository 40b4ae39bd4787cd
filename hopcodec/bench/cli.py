"""The `hopcodec bench` subcommand: `register(subparsers)` adds it to the main parser."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from hopcodec.bench.errors import BenchError


def _names(values: list[str] | None) -> list[str] | None:
    """Accept both `--codecs a b` and `--codecs a,b`."""
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `bench` to the `hopcodec` command's subparsers."""
    p = subparsers.add_parser(
        "bench",
        help="compare hopcodec with Codec 2 and Opus on real speech",
        description="Code a set of speech clips with hopcodec's modes, Codec 2 and Opus, score "
        "them (PESQ-WB, STOI/ESTOI, ViSQOL, WARP-Q, DNSMOS, LSD, F0) and write a markdown "
        "report, CSV, JSON and plots.",
    )
    p.add_argument("--set", dest="set_dir", metavar="DIR",
                   help="folder of audio files, or a prepared corpus with manifest.csv")
    p.add_argument("--codecs", nargs="+", metavar="NAME",
                   help="codecs or groups (all, peers, codec2, opus, hopcodec); default all")
    p.add_argument("--out", default="out/bench", metavar="DIR",
                   help="output folder (default out/bench)")
    p.add_argument("--metrics", nargs="+", metavar="NAME",
                   help="metrics or families (pesq stoi visqol warpq dnsmos lsd f0 fast all); "
                   "default all")
    p.add_argument("--skip-metrics", nargs="+", metavar="NAME", help="metrics to leave out")
    p.add_argument("--max-clips", type=int, metavar="N",
                   help="at most N clips, spread evenly over the clip groups")
    p.add_argument("--split", default="test",
                   help="manifest split to use (default test; 'all' for every row)")
    p.add_argument("--min-duration", type=float, default=1.0, metavar="S",
                   help="skip clips shorter than S seconds (default 1.0)")
    p.add_argument("--max-duration", type=float, metavar="S",
                   help="skip clips longer than S seconds")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes, one per core (default: the number of cores)")
    p.add_argument("--keep-audio", action="store_true",
                   help="keep the decoded audio in OUT/audio")
    p.add_argument("--list", action="store_true", help="list codecs and metrics and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_bench)
    return p


def _list() -> None:
    from hopcodec.bench.codecs import default_names
    from hopcodec.bench.metrics import FAMILIES, METRICS

    print("codecs:  " + " ".join(default_names()))
    print("metrics: " + " ".join(METRICS))
    print("families: " + " ".join(f"{k}={','.join(v)}" for k, v in FAMILIES.items()))


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the bench; bad input prints one `hopcodec: error:` line and returns 1."""
    try:
        if args.list:
            _list()
            return 0
        if not args.set_dir:
            raise BenchError("--set DIR is required (a folder of audio or a prepared corpus)")
        from hopcodec.bench.runner import run_bench

        result = run_bench(
            args.set_dir,
            codecs=_names(args.codecs),
            out_dir=args.out,
            metrics=_names(args.metrics),
            max_clips=args.max_clips,
            workers=args.workers,
            split=None if args.split == "all" else args.split,
            skip_metrics=_names(args.skip_metrics),
            min_duration_s=args.min_duration,
            max_duration_s=args.max_duration,
            keep_audio=args.keep_audio,
            command="hopcodec " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"]
            else None,
            progress=not args.quiet,
        )
    except BenchError as error:
        print(f"hopcodec: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        where = f": {error.filename}" if error.filename else ""
        print(f"hopcodec: error: {error.strerror or error}{where}", file=sys.stderr)
        return 1
    except ImportError as error:
        print(f"hopcodec: error: the bench needs its extra: pip install 'hopcodec[bench]' "
              f"({error})", file=sys.stderr)
        return 1
    print(f"report: {result.report}")
    return 0
