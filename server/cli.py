"""`hopcodec serve` and `hopcodec loadtest` (registered by hopcodec/cli.py)."""

import argparse
import json
import os
from dataclasses import fields

from hopcodec.cli import DEFAULT_SAMPLE
from hopcodec.extras import require_extra
from server.config import ENV_PREFIX, Settings
from streaming_core.errors import HopcodecError
from streaming_core.modes import DEFAULT_MODE


class ServeError(HopcodecError):
    """Settings or options the service cannot start with."""


SETTING_FLAGS = {
    "max_streams": ("--max-streams", int, "streams open at once per process"),
    "max_message_bytes": ("--max-message-bytes", int, "largest WebSocket message"),
    "rate_multiple": ("--rate-multiple", float, "audio a stream may send, as a multiple of real time"),
    "rate_burst_seconds": ("--rate-burst", float, "audio seconds a stream may send ahead of that"),
    "idle_timeout": ("--idle-timeout", float, "seconds without a client message before closing"),
    "max_bad_messages": ("--max-bad-messages", int, "malformed messages in a row before closing"),
    "send_queue_bytes": ("--send-queue-bytes", int, "reply bytes waiting for a slow reader before closing"),
    "max_upload_bytes": ("--max-upload-bytes", int, "largest POST body"),
    "max_upload_seconds": ("--max-upload-seconds", float, "longest audio of a POST"),
    "max_uploads": ("--max-uploads", int, "POST requests in progress at once"),
    "hop_threads": ("--hop-threads", int, "threads for the codec work (0: on the event loop)"),
    "token": ("--token", str, "bearer token required on /v1/ (prefer HOPCODEC_TOKEN: flags show in ps)"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `serve` and `loadtest`."""
    p = subparsers.add_parser("serve", help="run the WebSocket/HTTP codec service (uvicorn)",
                              description="Run the WebSocket/HTTP codec service with uvicorn "
                                          "(docs/protocol.md). Most options can also be set by an "
                                          "environment variable (HOPCODEC_...).")
    p.add_argument("--host", default=os.environ.get(ENV_PREFIX + "HOST", "127.0.0.1"),
                   help="address to bind (default 127.0.0.1, env HOPCODEC_HOST)")
    p.add_argument("--port", type=int, default=int(os.environ.get(ENV_PREFIX + "PORT", "8000")),
                   help="port (default 8000, env HOPCODEC_PORT)")
    p.add_argument("--workers", type=int, default=int(os.environ.get(ENV_PREFIX + "WORKERS", "1")),
                   help="server processes sharing the port (default 1, env HOPCODEC_WORKERS); "
                   "limits and metrics are per process")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--access-log", action="store_true",
                   help="log every request (query strings, so ?token= too)")
    defaults = Settings()
    for name, (flag, kind, text) in SETTING_FLAGS.items():
        default = getattr(defaults, name)
        suffix = f" (default {default}" if default is not None else " (default none"
        p.add_argument(flag, dest=name, type=kind, metavar=kind.__name__.upper(),
                       help=f"{text}{suffix}, env {ENV_PREFIX}{name.upper()})")
    p.set_defaults(handler=cmd_serve)

    p = subparsers.add_parser("loadtest", help="N concurrent real-time streams against a server",
                              description="N clients stream real speech to WS /v1/decode at real-time "
                                          "pace; report streams held, frames lost, round trip, and "
                                          "the server's per-hop time and CPU.")
    loadtest_arguments(p)
    p.set_defaults(handler=cmd_loadtest)


def loadtest_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `hopcodec loadtest`."""
    p.add_argument("--url", default="ws://127.0.0.1:8000", help="server, ws://HOST:PORT[/v1/decode]")
    p.add_argument("--streams", type=int, default=16, help="concurrent streams (default 16)")
    p.add_argument("--seconds", type=float, default=10.0, help="audio each stream sends (default 10)")
    p.add_argument("--frames-per-packet", type=int, default=1, help="10 ms frames per packet (default 1)")
    p.add_argument("--mode", default=DEFAULT_MODE, help=f"bitrate mode (default {DEFAULT_MODE})")
    p.add_argument("--ramp", type=float, default=1.0, help="seconds over which streams start (default 1)")
    p.add_argument("--clip", default=str(DEFAULT_SAMPLE),
                   help="speech to send, looped (default: bundled clip)")
    p.add_argument("--token", default=os.environ.get("HOPCODEC_TOKEN"),
                   help="bearer token (env HOPCODEC_TOKEN)")
    p.add_argument("--metrics-url", help="server metrics (default http://HOST:PORT/metrics; 'none' to skip)")
    p.add_argument("--server-pid", type=int, help="also measure the CPU of this local process and "
                   "its children (a multi-worker server: /metrics shows one worker only)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


SERVE_EXTRA_MODULES = {"serve": ("fastapi", "uvicorn", "websockets", "prometheus_client"),
                       "loadtest": ("websockets", "prometheus_client")}
"""What `hopcodec serve` and `hopcodec loadtest` import beyond the base install (the serve extra)."""


def cmd_loadtest(args: argparse.Namespace) -> int:
    """hopcodec loadtest"""
    require_extra("loadtest", "serve", SERVE_EXTRA_MODULES["loadtest"])
    from server.loadtest import cmd_loadtest as run_loadtest_command

    return run_loadtest_command(args)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Flags over HOPCODEC_* variables over defaults."""
    overrides = {f.name: getattr(args, f.name, None) for f in fields(Settings)}
    try:
        return Settings.from_env(**overrides)
    except ValueError as error:
        raise ServeError(str(error)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    """hopcodec serve"""
    require_extra("serve", "serve", SERVE_EXTRA_MODULES["serve"])
    import uvicorn

    from server.app import create_app

    settings = settings_from_args(args)
    if args.workers < 1:
        raise ServeError(f"--workers must be at least 1, got {args.workers}")
    options = {"host": args.host, "port": args.port, "log_level": args.log_level,
               "access_log": args.access_log, "ws_max_size": settings.protocol_max_message_bytes,
               "ws_per_message_deflate": False}
    print(json.dumps({"serving": f"http://{args.host}:{args.port}", "workers": args.workers,
                      **settings.public(), "auth": settings.token is not None}))
    if args.workers == 1:
        uvicorn.run(create_app(settings), **options)
    else:
        os.environ.update(settings.to_env())
        uvicorn.run("server.app:app_from_env", factory=True, workers=args.workers, **options)
    return 0
