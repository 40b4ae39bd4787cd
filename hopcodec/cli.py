"""The `hopcodec` command line: encode, decode, roundtrip, info, demo, and the tools of the
other packages (bench, data, ...). Errors print one line and exit with status 1."""

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import numpy as np

from streaming_core.audio_io import from_codec_rate, load_for_codec, write_wav
from streaming_core.bitstream import (
    PACKET_HEADER,
    FileHeader,
    parse_packet,
    read_coded_file,
    write_coded_file,
)
from streaming_core.codec import FILE_FRAMES_PER_PACKET, decode_packets, encode_audio
from streaming_core.constants import HOP, SAMPLE_RATE
from streaming_core.errors import HopcodecError
from streaming_core.latency import latency_budget
from streaming_core.modes import DEFAULT_MODE, Mode, default_mode_name, get_mode, list_modes, mode_for_bitrate

SAMPLES_DIR = Path(__file__).parent / "samples"
DEFAULT_SAMPLE = SAMPLES_DIR / "it_carlo_youarenext.wav"

PLUGINS = ("hopcodec.bench.cli", "models.data.cli", "server.cli", "client.cli")
"""Modules that add subcommands with a `register(subparsers)` function."""


class CliError(HopcodecError):
    """A usage problem found by the command line itself."""


@dataclass
class CodingReport:
    """What one encode/decode run measured."""

    mode: Mode
    seconds: float
    payload_bits: int
    total_bytes: int
    encode_seconds: float
    decode_seconds: float | None = None
    narrowband_frames: int = 0
    """Frames in packets flagged telephone-band (`streaming_core.bandwidth`)."""

    def lines(self) -> list[str]:
        """Human-readable summary."""
        budget = latency_budget()
        out = [
            f"mode          {self.mode.name} ({self.mode.bitrate_bps} bps nominal)",
            f"audio         {self.seconds:.2f} s",
            f"bitrate       {self.payload_bits / self.seconds:.0f} bps payload, "
            f"{8 * self.total_bytes / self.seconds:.0f} bps with packet and file headers",
            f"encode        real-time factor {self.encode_seconds / self.seconds:.4f}",
            self._bandwidth_line(),
        ]
        if self.decode_seconds is not None:
            out.append(f"decode        real-time factor {self.decode_seconds / self.seconds:.4f}")
        out.append(
            f"latency       {budget['total_ms']:.1f} ms algorithmic (hop {budget['hop_buffering_ms']:.0f}"
            f" + lookahead {budget['encoder_lookahead_ms']:.0f} + decoder {budget['decoder_delay_ms']:.0f})"
        )
        return out

    def _bandwidth_line(self) -> str:
        if not self.narrowband_frames:
            return "bandwidth     wideband"
        share = self.narrowband_frames * HOP / SAMPLE_RATE / self.seconds
        return (f"bandwidth     telephone band (nothing above 4 kHz) in {min(share, 1.0):.0%} of the "
                "audio: decoded low-passed at 4 kHz")


def _choose_mode(args: argparse.Namespace) -> Mode:
    if getattr(args, "mode", None):
        try:
            return get_mode(args.mode)
        except KeyError as error:
            raise CliError(error.args[0]) from None
    if getattr(args, "bitrate", None) is not None:
        if args.bitrate <= 0:
            raise CliError(f"--bitrate must be positive, got {args.bitrate}")
        return mode_for_bitrate(args.bitrate)
    return get_mode(DEFAULT_MODE)


def _encode_file(path: Path, mode: Mode) -> tuple[bytes, CodingReport, np.ndarray, int]:
    signal, rate, length = load_for_codec(path)
    start = time.perf_counter()
    packets = encode_audio(signal, mode, frames_per_packet=FILE_FRAMES_PER_PACKET)
    elapsed = time.perf_counter() - start
    coded = write_coded_file(FileHeader(mode, rate, length), packets)
    bits = 8 * sum(len(p) - PACKET_HEADER.size for p in packets)
    narrowband = sum(p.frame_count for p in map(parse_packet, packets) if p.narrowband)
    report = CodingReport(mode, len(signal) / SAMPLE_RATE, bits, len(coded), elapsed, None,
                          narrowband)
    return coded, report, signal, rate


def _decode_bytes(coded: bytes, rate: int | None) -> tuple[np.ndarray, int, float]:
    header, packets = read_coded_file(coded)
    out_rate = rate or header.sample_rate
    n_frames = sum(p.frame_count for p in packets)
    n_samples = n_frames * HOP
    if header.input_samples is not None:
        n_samples = min(n_samples, round(header.input_samples * SAMPLE_RATE / header.sample_rate))
    start = time.perf_counter()
    signal = decode_packets(packets, n_samples)
    elapsed = time.perf_counter() - start
    audio = from_codec_rate(signal, out_rate)
    if header.input_samples is not None and out_rate == header.sample_rate:
        audio = np.pad(audio, (0, max(header.input_samples - len(audio), 0)))[: header.input_samples]
    return audio, out_rate, elapsed


def _check_rate(rate: int | None) -> None:
    if rate is not None and not 1000 <= rate <= 384_000:
        raise CliError(f"--rate must be between 1000 and 384000 Hz, got {rate}")


def cmd_encode(args: argparse.Namespace) -> int:
    """hopcodec encode IN OUT.hop"""
    coded, report, _, _ = _encode_file(Path(args.input), _choose_mode(args))
    Path(args.output).write_bytes(coded)
    print("\n".join(report.lines()))
    print(f"wrote         {args.output} ({len(coded)} bytes)")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    """hopcodec decode IN.hop OUT.wav"""
    _check_rate(args.rate)
    path = Path(args.input)
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    audio, rate, elapsed = _decode_bytes(path.read_bytes(), args.rate)
    write_wav(args.output, audio, rate)
    seconds = len(audio) / rate
    print(f"decoded       {seconds:.2f} s, real-time factor {elapsed / max(seconds, 1e-9):.4f}")
    print(f"wrote         {args.output} ({rate} Hz)")
    return 0


def cmd_roundtrip(args: argparse.Namespace) -> int:
    """hopcodec roundtrip IN OUT.wav: encode, decode, print the figures."""
    _check_rate(args.rate)
    coded, report, _, in_rate = _encode_file(Path(args.input), _choose_mode(args))
    audio, rate, report.decode_seconds = _decode_bytes(coded, args.rate)
    write_wav(args.output, audio, rate)
    print("\n".join(report.lines()))
    print(f"wrote         {args.output} ({rate} Hz, input was {in_rate} Hz)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """hopcodec demo: roundtrip of the bundled real speech clip."""
    args.input = str(DEFAULT_SAMPLE)
    print(f"input         {DEFAULT_SAMPLE.name} (bundled real speech, see samples/LICENSE.md)")
    return cmd_roundtrip(args)


def codec_info() -> dict:
    """What `hopcodec info --json` prints."""
    return {
        "sample_rate": SAMPLE_RATE,
        "hop_samples": HOP,
        "hop_ms": 1000 * HOP / SAMPLE_RATE,
        "default_mode": default_mode_name(),
        "modes": [
            {"id": m.id, "name": m.name, "bits_per_frame": m.bits_per_frame,
             "bitrate_bps": m.bitrate_bps, "description": m.description}
            for m in list_modes()
        ],
        "packet_header_bytes": PACKET_HEADER.size,
        "algorithmic_latency": latency_budget(),
    }


def cmd_info(args: argparse.Namespace) -> int:
    """hopcodec info [--json]"""
    info = codec_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    lat = info["algorithmic_latency"]
    print(f"sample rate   {info['sample_rate']} Hz, "
          f"hop {info['hop_samples']} samples ({info['hop_ms']:.0f} ms)")
    print(f"latency       {lat['total_ms']:.1f} ms = hop {lat['hop_buffering_ms']:.1f} + lookahead "
          f"{lat['encoder_lookahead_ms']:.1f} + decoder {lat['decoder_delay_ms']:.1f}")
    print("modes")
    for m in info["modes"]:
        print(f"  {m['id']:3d}  {m['name']:<14} {m['bitrate_bps']:5d} bps  {m['description']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="hopcodec", description=" ".join(__doc__.split("\n\n")[0].split()))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def rate_options(p: argparse.ArgumentParser) -> None:
        group = p.add_mutually_exclusive_group()
        group.add_argument("--bitrate", type=float, metavar="BPS",
                           help="highest mode at or below this payload bitrate")
        group.add_argument("--mode", metavar="NAME", help="mode by name (see `hopcodec info`)")

    p = sub.add_parser("encode", help="encode a WAV/FLAC file (any rate, any channels) to .hop",
                       description="Encode a WAV/FLAC file (any rate, any channels) to a .hop file "
                                   "(docs/bitstream.md), in the default mode unless told another.")
    p.add_argument("input", help="WAV/FLAC file")
    p.add_argument("output", help=".hop file to write")
    rate_options(p)
    p.set_defaults(handler=cmd_encode)

    p = sub.add_parser("decode", help="decode a .hop file to WAV",
                       description="Decode a .hop file to WAV with the best installed decoder "
                                   "(the neural one, as shipped).")
    p.add_argument("input", help=".hop file")
    p.add_argument("output", help="WAV file to write")
    p.add_argument("--rate", type=int, metavar="HZ", help="output rate (default: the input's)")
    p.set_defaults(handler=cmd_decode)

    p = sub.add_parser("roundtrip", help="encode and decode a file, print bitrate and speed",
                       description="Encode and decode a WAV/FLAC file; print the bitrate, the "
                                   "speed and the algorithmic latency.")
    p.add_argument("input", help="WAV/FLAC file")
    p.add_argument("output", help="decoded WAV file to write")
    p.add_argument("--rate", type=int, metavar="HZ", help="output rate (default: the input's)")
    rate_options(p)
    p.set_defaults(handler=cmd_roundtrip)

    p = sub.add_parser("demo", help="roundtrip the bundled real speech clip",
                       description="Encode and decode the bundled clip of real speech "
                                   "(hopcodec/samples/); print bitrate, speed and latency.")
    p.add_argument("--out", dest="output", default="decoded.wav", help="decoded WAV (default decoded.wav)")
    p.add_argument("--rate", type=int, metavar="HZ")
    rate_options(p)
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("info", help="sample rate, hop, modes, algorithmic latency",
                       description="The codec's sample rate, hop, modes and algorithmic latency.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_info)

    for module_name in PLUGINS:
        try:
            register: Callable = import_module(module_name).register
        except ImportError:
            continue
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `hopcodec` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except HopcodecError as error:
        print(f"hopcodec: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"hopcodec: error: {error.strerror or error}: {error.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hopcodec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
