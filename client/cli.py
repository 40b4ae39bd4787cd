"""`hopcodec mic` and `hopcodec latency`: the client commands of the `hopcodec` entry point."""

import argparse
import json
import os
from pathlib import Path

from hopcodec.extras import require_extra
from streaming_core.modes import DEFAULT_MODE

CLIENT_EXTRA_MODULES = ("websockets",)
"""What the client commands import beyond the base install (the client extra; the mic also
needs sounddevice, which `client.devices` asks for by name)."""
DEFAULT_BUDGET_MS = 150.0
"""Mouth-to-ear budget: ITU-T G.114's limit for fully interactive speech."""


def cmd_mic(args: argparse.Namespace) -> int:
    """hopcodec mic: live loopback through the audio devices."""
    from client.devices import describe_devices, load_sounddevice

    if args.list_devices:
        print(describe_devices(load_sounddevice()))
        return 0
    require_extra("mic", "client", CLIENT_EXTRA_MODULES)
    from client.mic import MicOptions, run_mic

    options = MicOptions(server=args.server, mode=args.mode, input=args.input, output=args.output,
                         budget_ms=args.budget, local=args.local, duration=args.duration,
                         token=args.token, record=Path(args.record) if args.record else None)
    report = run_mic(options)
    print("\n".join(report.lines()))
    if report.interrupted:
        print("stopped       Ctrl-C")
    return 0


def cmd_latency(args: argparse.Namespace) -> int:
    """hopcodec latency: algorithmic and end-to-end latency (the base install measures the
    algorithmic latency alone, --algorithmic-only)."""
    if not args.algorithmic_only:
        require_extra("latency", "client", CLIENT_EXTRA_MODULES)
    from client.latency_report import latency_report, print_latency_report

    report = latency_report(mode=args.mode, server=args.server, token=args.token, seconds=args.seconds,
                            png=Path(args.png) if args.png else None, end_to_end=not args.algorithmic_only)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_latency_report(report)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mic` and `latency` to the `hopcodec` command."""
    p = subparsers.add_parser("mic", help="live microphone loopback through the codec (local or a server)",
                              description="Live loopback: capture the microphone, encode it, decode it "
                                          "here or on a server, and play it back within a latency budget.")
    p.add_argument("--server", metavar="URL", help="hopcodec service, e.g. ws://127.0.0.1:8000")
    p.add_argument("--local", action="store_true", help="encode and decode in this process, no server")
    p.add_argument("--mode", default=DEFAULT_MODE, metavar="NAME",
                   help="bitrate mode (default: the best installed, see `hopcodec info`)")
    p.add_argument("--input", metavar="DEV", help="input device: index or name fragment (--list-devices)")
    p.add_argument("--output", metavar="DEV", help="output device: index or name fragment")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_MS, metavar="MS",
                   help=f"mouth-to-ear latency budget (default {DEFAULT_BUDGET_MS:.0f} ms)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    p.add_argument("--token", default=os.environ.get("HOPCODEC_TOKEN"),
                   help="bearer token (default: $HOPCODEC_TOKEN)")
    p.add_argument("--record", metavar="DIR",
                   help="write captured.wav, played.wav, playout.txt and report.json here")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.set_defaults(handler=cmd_mic)

    p = subparsers.add_parser("latency", help="algorithmic and end-to-end latency (table, JSON, PNG)",
                              description="Measure the algorithmic and end-to-end latency of the modes; "
                                          "write a table, JSON and a PNG.")
    p.add_argument("--mode", metavar="NAME", help="one mode only (default: every mode; end to end "
                   "in the best installed)")
    p.add_argument("--server", metavar="URL",
                   help="measure over this server (default: start one on loopback)")
    p.add_argument("--token", default=os.environ.get("HOPCODEC_TOKEN"), help="bearer token for --server")
    p.add_argument("--seconds", type=float, default=4.0, help="length of the end-to-end probe (default 4)")
    p.add_argument("--algorithmic-only", action="store_true", help="skip the end-to-end measurement")
    p.add_argument("--png", metavar="FILE", help="write a timeline of the end-to-end run (needs matplotlib)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_latency)
