"""`hopcodec latency`: the algorithmic latency (configured and measured through encoder and
decoder) and the end-to-end latency over a real server on loopback (a `hopcodec serve` child
process unless --server is given), as a dict for --json, a table, and optionally a PNG timeline.

The end-to-end parts (websockets, the client extra) are imported only when that run is asked
for: the algorithmic measurement needs the base install alone."""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from client.errors import ClientError
from streaming_core.latency import latency_budget, measure_algorithmic_latency
from streaming_core.modes import DEFAULT_MODE, get_mode, list_modes
from streaming_core.synthesizers import default_synthesizer


def latency_report(mode: str | None = None, server: str | None = None, token: str | None = None,
                   seconds: float = 4.0, png: Path | None = None, end_to_end: bool = True) -> dict[str, Any]:
    """Everything `hopcodec latency` reports."""
    try:
        modes = [get_mode(mode)] if mode else list_modes()
    except KeyError as error:
        raise ClientError(error.args[0]) from None
    e2e_mode = modes[0].name if mode else get_mode(DEFAULT_MODE).name
    # End to end first: a wrong --server fails before the slower measurements.
    end = _end_to_end(e2e_mode, server, token, seconds, png) if end_to_end else None
    synthesizer = default_synthesizer()
    report: dict[str, Any] = {
        "algorithmic": {
            "synthesizer": synthesizer.name,
            "configured": latency_budget(synthesizer),
            "measured": {m.name: measure_algorithmic_latency(m.name, synthesizer) for m in modes},
        }
    }
    if end is not None:
        report["end_to_end"] = end
    return report


def _end_to_end(mode: str, server: str | None, token: str | None, seconds: float,
                png: Path | None) -> dict[str, Any]:
    """The end-to-end run's summary (and its PNG), over `server` or one started here."""
    from client.e2e import measure_end_to_end

    if server is None:
        with _server_here() as url:
            run = asyncio.run(measure_end_to_end(url, mode, seconds))
        summary = {**run.summary(), "server": "hopcodec serve started here on 127.0.0.1"}
    else:
        run = asyncio.run(measure_end_to_end(server, mode, seconds, token=token))
        summary = run.summary()
    if png is not None:
        from client.timeline import plot_timeline

        plot_timeline(run, png)
        summary["png"] = str(png)
    return summary


@contextmanager
def _server_here() -> Iterator[str]:
    """`hopcodec serve` as a child process on a free loopback port; yields its ws:// URL.

    A process of its own, as a deployed server is: in this process the server's decoding and the
    client's 10 ms ticks would share one interpreter lock (beside 8 busy processes on a 2-core VM,
    2 of 5 runs kept real time that way, 5 of 6 with the server in a process of its own)."""
    try:
        from server.config import Settings
        from server.testing import ServerProcess
    except ImportError as error:
        raise ClientError(f"cannot start a local server ({error}): install hopcodec's server "
                          "dependencies, or pass --server URL") from None
    child = ServerProcess(Settings())
    try:
        child.__enter__()
    except RuntimeError as error:
        raise ClientError(f"the local server did not start: {error}") from None
    try:
        yield child.ws
    finally:
        child.__exit__(None, None, None)


def print_latency_report(report: dict[str, Any]) -> None:
    """The report as a table."""
    algorithmic = report["algorithmic"]
    budget = algorithmic["configured"]
    print(f"algorithmic   {budget['total_ms']:.1f} ms configured = hop {budget['hop_buffering_ms']:.1f} "
          f"+ lookahead {budget['encoder_lookahead_ms']:.1f} + decoder {budget['decoder_delay_ms']:.1f} "
          f"({algorithmic['synthesizer']} decoder)")
    for name, measured in algorithmic["measured"].items():
        print(f"  measured    {measured['measured_ms']:.1f} ms  {name} (noise-burst probe through encoder "
              "and decoder, envelope cross-correlation, median of 4)")
    run = report.get("end_to_end")
    if run is None:
        return
    print(f"end to end    {run['server']}, mode {run['mode']}, {run['played']} of {run['packets']} "
          "packets played")
    if not run["kept_real_time"]:
        print("  warning: this machine did not keep real time during the run (too busy to encode, "
              "decode and send a hop every 10 ms): the figures below describe the machine, not the "
              "codec; run it again when the machine is idle")
    from client.e2e import SEGMENTS

    print(f"  {'segment':<18}{'median':>9}{'p95':>9}{'max':>9}   ms")
    for name in SEGMENTS:
        row = run["segments_ms"][name]
        print(f"  {name:<18}{row['median']:>9.2f}{row['p95']:>9.2f}{row['max']:>9.2f}")
    total = run["mouth_to_ear_ms"]
    print(f"  {'mouth to ear':<18}{total['median']:>9.2f}{total['p95']:>9.2f}{total['max']:>9.2f}")
    print(f"  measured      {run['measured_mouth_to_ear_ms']:.1f} ms mouth to ear by cross-correlation "
          "of probe and playback")
    jitter = run["jitter_buffer"]
    print("  jitter buffer " + ", ".join(f"{k} {v}" for k, v in jitter.items()))
    print(f"  note          {run['notes']}")
    if "png" in run:
        print(f"  timeline      {run['png']}")
