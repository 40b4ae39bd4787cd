"""The peers: Codec 2 through Debian's `c2enc`/`c2dec` tools and Opus through libopus."""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soxr

from hopcodec.bench.audio import SR, from_int16, to_int16
from hopcodec.bench.codecs import Codec
from hopcodec.bench.errors import BenchError, MissingDependency

INSTALL_HINT = "run scripts/install_bench_deps.sh (apt) and pip install 'hopcodec[bench]'"

# Codec 2 frame duration (ms) per mode; the tools write each frame's bits byte-aligned.
CODEC2_FRAME_MS = {"3200": 20, "2400": 20, "1600": 40, "1400": 40, "1300": 40, "1200": 40,
                   "700C": 40}
CODEC2_SR = 8000


class Reference(Codec):
    """The unprocessed input: the ceiling every metric is read against."""

    name = "reference"
    family = "reference"

    def encode(self, x: np.ndarray) -> np.ndarray:
        return x.copy()

    def decode(self, coded: object, n_samples: int) -> np.ndarray:
        return np.asarray(coded)[:n_samples]

    def sizes(self, coded: object) -> tuple[int, int]:
        return 0, 0

    def latency_ms(self) -> float | None:
        return 0.0


class Codec2(Codec):
    """Codec 2 at one mode, a fresh `c2enc` and `c2dec` process per clip, 8 kHz inside.

    Input is resampled 16 -> 8 kHz with soxr, padded with one frame of silence so the codec's
    delay does not cut the clip's end, and the decoded 8 kHz output is resampled back to 16 kHz.
    Timing includes the resampling and the processes' start-up (a few ms).
    """

    family = "codec2"

    def __init__(self, mode: str) -> None:
        if mode not in CODEC2_FRAME_MS:
            raise BenchError(f"unknown Codec 2 mode {mode!r} (known: {sorted(CODEC2_FRAME_MS)})")
        self.mode = mode
        self.name = f"codec2-{mode}"
        self.nominal_bps = float(mode.removesuffix("C"))

    def check(self) -> None:
        for tool in ("c2enc", "c2dec"):
            if shutil.which(tool) is None:
                raise MissingDependency(f"codec {self.name}", f"the `{tool}` tool (Debian "
                                        "package codec2)", INSTALL_HINT)

    def frame_ms(self) -> float | None:
        return float(CODEC2_FRAME_MS[self.mode])

    def _tool(self, tool: str, src: Path, dst: Path) -> None:
        proc = subprocess.run([tool, self.mode, str(src), str(dst)], capture_output=True,
                              timeout=600, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise BenchError(f"{tool} {self.mode} failed ({proc.returncode}): "
                             f"{err[-1] if err else 'no message'}")

    def encode(self, x: np.ndarray) -> bytes:
        frame = CODEC2_SR * CODEC2_FRAME_MS[self.mode] // 1000
        x8 = soxr.resample(x, SR, CODEC2_SR, quality="HQ")
        n_frames = math.ceil(len(x8) / frame) + 1
        pcm = np.zeros(n_frames * frame, dtype=np.int16)
        pcm[: len(x8)] = to_int16(x8)
        with tempfile.TemporaryDirectory(prefix="bench-c2-") as tmp:
            raw, bits = Path(tmp) / "in.raw", Path(tmp) / "out.bit"
            raw.write_bytes(pcm.tobytes())
            self._tool("c2enc", raw, bits)
            return bits.read_bytes()

    def decode(self, coded: object, n_samples: int) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="bench-c2-") as tmp:
            bits, raw = Path(tmp) / "in.bit", Path(tmp) / "out.raw"
            bits.write_bytes(bytes(coded))  # type: ignore[arg-type]
            self._tool("c2dec", bits, raw)
            y8 = from_int16(np.frombuffer(raw.read_bytes(), dtype=np.int16))
        return soxr.resample(y8, CODEC2_SR, SR, quality="HQ").astype(np.float32)

    def sizes(self, coded: object) -> tuple[int, int]:
        return len(coded), 0  # type: ignore[arg-type]


def _opuslib():  # noqa: ANN202 - module object
    try:
        import opuslib
    except ImportError as exc:
        raise MissingDependency("the Opus codecs", "the Python package opuslib",
                                INSTALL_HINT) from exc
    except Exception as exc:  # opuslib raises a plain Exception when libopus is missing
        raise MissingDependency("the Opus codecs", "libopus (Debian package libopus0)",
                                INSTALL_HINT) from exc
    return opuslib


class Opus(Codec):
    """Opus through libopus: VOIP application, 20 ms frames, the library's default VBR.

    Input is padded with silence to cover the encoder's lookahead; the bytes counted are the
    sum of the packet sizes (TOC byte included).
    """

    family = "opus"
    FRAME = SR * 20 // 1000

    def __init__(self, bitrate_bps: int) -> None:
        self.bitrate_bps = bitrate_bps
        self.name = f"opus-{bitrate_bps // 1000}k"
        self.nominal_bps = float(bitrate_bps)
        self._lookahead: int | None = None

    def check(self) -> None:
        self._encoder()

    def _encoder(self):  # noqa: ANN202 - opuslib.Encoder
        opuslib = _opuslib()
        enc = opuslib.Encoder(SR, 1, opuslib.APPLICATION_VOIP)
        enc.bitrate = self.bitrate_bps
        self._lookahead = int(enc.lookahead)
        return enc

    def frame_ms(self) -> float | None:
        return 20.0

    def latency_ms(self) -> float | None:
        if self._lookahead is None:
            self._encoder()
        return 20.0 + 1000.0 * (self._lookahead or 0) / SR

    def encode(self, x: np.ndarray) -> list[bytes]:
        enc = self._encoder()
        n_frames = math.ceil((len(x) + (self._lookahead or 0)) / self.FRAME)
        pcm = np.zeros(n_frames * self.FRAME, dtype=np.int16)
        pcm[: len(x)] = to_int16(x)
        frames = pcm.reshape(n_frames, self.FRAME)
        return [enc.encode(f.tobytes(), self.FRAME) for f in frames]

    def decode(self, coded: object, n_samples: int) -> np.ndarray:
        dec = _opuslib().Decoder(SR, 1)
        out = [np.frombuffer(dec.decode(p, self.FRAME), dtype=np.int16) for p in coded]
        return from_int16(np.concatenate(out)) if out else np.zeros(0, np.float32)

    def sizes(self, coded: object) -> tuple[int, int]:
        return sum(len(p) for p in coded), 0  # type: ignore[union-attr]
