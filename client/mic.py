"""`hopcodec mic`: live loopback through real audio devices.

One duplex PortAudio stream at 16 kHz with 10 ms blocks is the clock: each callback captures a
hop, hands it to the link (the local encoder and decoder, or the server's decode endpoint), and
plays whatever the jitter buffer has for that tick. The jitter buffer's largest delay is what is
left of the latency budget after the device buffers and the codec's own delay.
"""

import asyncio
import contextlib
import json
import math
import sys
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from client.cli import DEFAULT_BUDGET_MS
from client.devices import AudioDeviceError, check_device, load_sounddevice, parse_device
from client.engine import DuplexEngine
from client.errors import ClientError
from client.jitter import JitterBuffer, JitterConfig
from client.local_link import LocalLink
from client.playout import DecoderPlayout, PcmPlayout
from client.server_link import ServerLink
from client.status import HOP_MS, MicStatus, mouth_to_ear_ms
from client.stream import DecodeStream
from client.traffic import Traffic
from streaming_core.audio_io import write_wav
from streaming_core.constants import HOP, SAMPLE_RATE
from streaming_core.decoder import StreamDecoder
from streaming_core.encoder import StreamEncoder
from streaming_core.latency import measure_speech_delay
from streaming_core.modes import DEFAULT_MODE, get_mode
from streaming_core.synthesizers import default_synthesizer


@dataclass
class MicOptions:
    """What `hopcodec mic` was asked to do."""

    server: str | None = None
    mode: str = DEFAULT_MODE
    input: str | None = None
    output: str | None = None
    budget_ms: float = DEFAULT_BUDGET_MS
    local: bool = False
    duration: float | None = None
    """Seconds to run; None runs until Ctrl-C."""
    token: str | None = None
    record: Path | None = None
    """Folder for captured.wav, played.wav and report.json (same clock, sample for sample)."""
    status_every: float = 0.5


@dataclass
class MicReport:
    """What a mic run measured."""

    link: str
    mode: str
    synthesizer: str
    device_latency_ms: tuple[float, float]
    """PortAudio's input and output latency."""
    decoder_delay_ms: float
    max_delay_ticks: int
    final: MicStatus
    mean_delay_ticks: float
    mean_mouth_to_ear_ms: float
    """Estimate over the whole run (device buffers + decoder delay + mean playout delay)."""
    events: dict[str, int]
    measured_internal_ms: float | None = None
    """Capture-to-playback delay inside the client, measured from the recording."""
    measured_mouth_to_ear_ms: float | None = None
    """That plus the device latencies."""
    interrupted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """Human-readable summary."""
        out = [f"link          {self.link}, mode {self.mode}, decoder {self.synthesizer}",
               f"devices       input {self.device_latency_ms[0]:.1f} ms + output "
               f"{self.device_latency_ms[1]:.1f} ms (PortAudio)",
               f"playout       mean delay {self.mean_delay_ticks:.2f} hops (max {self.max_delay_ticks}), "
               + ", ".join(f"{k} {v}" for k, v in sorted(self.events.items())),
               f"mouth-to-ear  ~{self.mean_mouth_to_ear_ms:.1f} ms estimated, budget "
               f"{self.final.budget_ms:.0f} ms"]
        if self.measured_mouth_to_ear_ms is not None:
            out.append(f"measured      {self.measured_internal_ms:.1f} ms capture-to-playback in the client, "
                       f"{self.measured_mouth_to_ear_ms:.1f} ms with the device buffers")
        return out


class MicError(ClientError):
    """A mic run that cannot start as asked."""


def run_mic(options: MicOptions, out: TextIO = sys.stderr) -> MicReport:
    """Run the loopback until the duration ends or Ctrl-C; the report of what it measured."""
    if not options.local and not options.server:
        raise MicError("give --server URL (a hopcodec service) or --local (no server)")
    try:
        get_mode(options.mode)
    except KeyError as error:
        raise MicError(error.args[0]) from None
    sd = load_sounddevice()
    check_device(sd, parse_device(options.input), "input")
    check_device(sd, parse_device(options.output), "output")
    session = MicSession(options, sd, out)
    try:
        asyncio.run(session.run())
    except KeyboardInterrupt:
        session.interrupted = True
    return session.report()


async def _until_first_done(jobs: list[Coroutine[Any, Any, Any]]) -> None:
    """Run the jobs until one ends (its exception propagates); cancel the others."""
    tasks = [asyncio.create_task(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class MicSession:
    """One run: the devices, the engine, the link, the status line."""

    def __init__(self, options: MicOptions, sd: Any, out: TextIO) -> None:
        self.options, self.sd, self.out = options, sd, out
        self.interrupted = False
        self.engine: DuplexEngine | None = None
        self.traffic = Traffic()
        self.device_ms = (0.0, 0.0)
        self.decoder_delay_ms = 0.0
        self.synthesizer = ""
        self.max_delay = 0
        self.mode_name = options.mode

    async def run(self) -> None:
        """Open the link and the devices, play until done, close everything."""
        options = self.options
        async with contextlib.AsyncExitStack() as cleanup:
            cleanup.callback(self._end_status_line)
            encoder = StreamEncoder(options.mode)
            self.mode_name = encoder.mode.name
            stream: DecodeStream | None = None
            if options.local:
                decoder = StreamDecoder(default_synthesizer())
                playout: Any = DecoderPlayout(decoder)
                self.decoder_delay_ms = 1000.0 * decoder.delay / SAMPLE_RATE
                self.synthesizer = decoder.synthesizer.name
            else:
                stream = DecodeStream(options.server, token=options.token)
                cleanup.push_async_callback(stream.close)
                ready = await stream.connect()
                playout = PcmPlayout()
                self.decoder_delay_ms = ready.algorithmic_latency_ms - ready.hop_ms
                self.synthesizer = ready.synthesizer
            jitter = JitterBuffer()
            self.engine = engine = DuplexEngine(jitter, playout, record=options.record is not None)
            audio = self._open_devices(engine)
            cleanup.callback(audio.close)
            # stop(), not abort(): PortAudio's ALSA back end aborts by cancelling the callback
            # thread (pthread_cancel), which can leave the interpreter's lock held by a thread that
            # no longer exists and hang the shutdown; stop() lets the running callback return.
            cleanup.callback(audio.stop)
            self.max_delay = self._max_delay()
            jitter.config = JitterConfig(max_delay=self.max_delay)
            if stream is None:
                link: Any = LocalLink(encoder, engine.deliver)
            else:
                link = ServerLink(stream, encoder, engine.deliver, engine.current_tick, self.max_delay)
            self.traffic = link.traffic
            engine.capture = link.capture
            audio.start()
            jobs = [self._show_status(), asyncio.sleep(options.duration or math.inf)]
            if isinstance(link, ServerLink):
                jobs.append(link.run())
            await _until_first_done(jobs)

    def _open_devices(self, engine: DuplexEngine) -> Any:
        options, sd = self.options, self.sd
        try:
            audio = sd.Stream(samplerate=SAMPLE_RATE, blocksize=HOP, channels=1, dtype="float32",
                              latency="low", callback=engine.callback,
                              device=(parse_device(options.input), parse_device(options.output)))
        except (sd.PortAudioError, ValueError) as error:
            raise AudioDeviceError(f"cannot open the audio devices at {SAMPLE_RATE} Hz: {error}") from None
        self.device_ms = (1000.0 * audio.latency[0], 1000.0 * audio.latency[1])
        return audio

    def _max_delay(self) -> int:
        fixed = sum(self.device_ms) + self.decoder_delay_ms
        spare = self.options.budget_ms - fixed
        if spare < 0:
            raise MicError(f"budget {self.options.budget_ms:.0f} ms is below the fixed latency "
                           f"{fixed:.0f} ms (device buffers + codec delay); raise --budget")
        return int(spare // HOP_MS)

    def status(self) -> MicStatus:
        """The live figures now."""
        engine = self.engine
        tick = engine.state.tick if engine else 0
        seconds = tick * HOP_MS / 1000.0
        jitter = engine.jitter.state if engine else None
        delay = engine.jitter.delay(tick) if engine else 0
        return MicStatus(
            seconds=seconds,
            payload_bps=self.traffic.payload_bits / seconds if seconds else 0.0,
            wire_bps=self.traffic.wire_bits / seconds if seconds else 0.0,
            lost=(jitter.late if jitter else 0) + self.traffic.skipped,
            concealed=(jitter.concealed + jitter.stretched) if jitter else 0,
            rtt_ms=self.traffic.rtt_ms(),
            depth=engine.jitter.depth if engine else 0,
            delay_ticks=delay,
            target_ticks=jitter.target if jitter else 0,
            mouth_to_ear_ms=mouth_to_ear_ms(sum(self.device_ms), self.decoder_delay_ms, delay),
            budget_ms=self.options.budget_ms,
            reconnects=self.traffic.reconnects,
            xruns=engine.state.xruns if engine else 0,
        )

    async def _show_status(self) -> None:
        tty = self.out.isatty()
        every = self.options.status_every if tty else max(self.options.status_every, 1.0)
        while True:
            await asyncio.sleep(every)
            line = self.status().line()
            self.out.write(f"\r{line}\x1b[K" if tty else line + "\n")
            self.out.flush()

    def _end_status_line(self) -> None:
        if self.out.isatty():
            self.out.write("\n")
            self.out.flush()

    def report(self) -> MicReport:
        """The run's report; with --record, also writes the recording and report.json."""
        engine = self.engine
        final = self.status()
        ticks = max(engine.state.tick, 1) if engine else 1
        mean_delay = engine.state.delay_sum / ticks if engine else 0.0
        report = MicReport(
            link="local (in-process)" if self.options.local else f"server {self.options.server}",
            mode=self.mode_name, synthesizer=self.synthesizer, device_latency_ms=self.device_ms,
            decoder_delay_ms=self.decoder_delay_ms, max_delay_ticks=self.max_delay, final=final,
            mean_delay_ticks=mean_delay,
            mean_mouth_to_ear_ms=mouth_to_ear_ms(sum(self.device_ms), self.decoder_delay_ms, mean_delay),
            events=dict(engine.state.events) if engine else {}, interrupted=self.interrupted)
        if engine and self.options.record is not None and engine.state.captured:
            self._write_recording(report)
        return report

    def _write_recording(self, report: MicReport) -> None:
        folder = self.options.record
        folder.mkdir(parents=True, exist_ok=True)
        captured = np.concatenate(self.engine.state.captured)
        played = np.concatenate(self.engine.state.played)
        write_wav(folder / "captured.wav", captured, SAMPLE_RATE)
        write_wav(folder / "played.wav", played, SAMPLE_RATE)
        # One line per hop of played.wav: what the jitter buffer played there.
        (folder / "playout.txt").write_text("\n".join(self.engine.state.played_events) + "\n")
        if np.any(captured) and np.any(played):
            lag = measure_speech_delay(captured, played, (self.max_delay + 4) * HOP)
            report.measured_internal_ms = 1000.0 * lag / SAMPLE_RATE
            report.measured_mouth_to_ear_ms = report.measured_internal_ms + sum(self.device_ms)
        (folder / "report.json").write_text(json.dumps(asdict(report), indent=2))
