"""The browser page in real headless Chromium, driven over the DevTools protocol: a WAV file of
real speech is the fake microphone; the page resamples it to 16 kHz in an AudioWorklet, loops
it through `WS /v1/loopback` and plays what comes back. Checks that what the page sent is the
speech, that what came back is exactly the codec's offline output for what was sent, and that
the latency readout is live."""

import asyncio
import base64
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from audio_match import found_fraction
from websockets.asyncio.client import connect

from server.config import Settings
from server.testing import ServerProcess
from streaming_core.constants import HOP, SAMPLE_RATE
from streaming_core.decoder import StreamDecoder
from streaming_core.encoder import StreamEncoder
from streaming_core.synthesizers import default_synthesizer

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "scripts" / "ci_audio_setup.sh"
TOKEN = "browser-token"


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of Debian's Chromium (installed by scripts/ci_audio_setup.sh --browser)."""
    result = subprocess.run(["bash", str(SETUP), "--browser"], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"scripts/ci_audio_setup.sh --browser failed (Chromium is required):\n{result.stderr}")
    return dict(line.split("=", 1) for line in result.stdout.split() if "=" in line)["CHROMIUM"]


class DevTools:
    """A minimal Chrome DevTools protocol client on one browser WebSocket."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ids = count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.console: list[str] = []

    async def __aenter__(self) -> "DevTools":
        self.ws = await connect(self.url, max_size=None, proxy=None)
        self.reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.reader.cancel()
        await self.ws.close()

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if "id" in message and message["id"] in self.pending:
                self.pending.pop(message["id"]).set_result(message)
            elif message.get("method") == "Runtime.consoleAPICalled":
                self.console.append(" ".join(str(a.get("value", a.get("description")))
                                             for a in message["params"]["args"]))
            elif message.get("method") == "Runtime.exceptionThrown":
                self.console.append(json.dumps(message["params"]["exceptionDetails"])[:500])

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict:
        ident = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[ident] = future
        message = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        await self.ws.send(json.dumps(message))
        reply = await asyncio.wait_for(future, 60)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    async def evaluate(self, session: str, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", session, expression=expression, awaitPromise=True,
                                 returnByValue=True, userGesture=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}: {result['exceptionDetails']}")
        return result["result"].get("value")


def launch(binary: str, profile: Path, microphone: Path) -> tuple[subprocess.Popen, str]:
    """Headless Chromium with the WAV as its microphone; (process, browser DevTools URL)."""
    process = subprocess.Popen(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic", f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
         f"--use-file-for-fake-audio-capture={microphone}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not port_file.is_file() or len(port_file.read_text().split()) < 2:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"Chromium did not start: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)
    port, path = port_file.read_text().split()[:2]
    return process, f"ws://127.0.0.1:{port}{path}"


async def talk(devtools_url: str, page: str, mode: str, hops: int) -> dict:
    """Open the page, pick the mode, press talk, wait for `hops` replies, stop, dump."""
    async with DevTools(devtools_url) as tools:
        target = await tools.call("Target.createTarget", url=page)
        session = (await tools.call("Target.attachToTarget", targetId=target["targetId"],
                                    flatten=True))["sessionId"]
        await tools.call("Runtime.enable", session)
        ok = False
        for _ in range(200):
            ok = await tools.evaluate(session, "document.getElementById('talk')?.disabled === false")
            if ok:
                break
            await asyncio.sleep(0.1)
        assert ok, f"the page did not load its modes: {tools.console}"
        options = await tools.evaluate(
            session, "[...document.getElementById('mode').options].map(o => o.value)")
        assert mode in options and "default" in options
        await tools.evaluate(session, f"document.getElementById('mode').value = '{mode}'")
        await tools.evaluate(session, "document.getElementById('talk').click()")
        received = 0
        for _ in range(300):
            received = await tools.evaluate(session, "window.hopcodec.state.counters.received")
            if received >= hops:
                break
            await asyncio.sleep(0.1)
        status = await tools.evaluate(session, "document.getElementById('status').textContent")
        assert received >= hops, f"only {received} replies; status {status!r}; console {tools.console}"
        live = await tools.evaluate(session, "document.getElementById('r-total').textContent")
        dump = await tools.evaluate(session, "window.hopcodec.stop(), window.hopcodec.dump()")
        dump["live_total"] = live
        dump["console"] = tools.console
        return dump


def pcm(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), "<i2").astype(np.int64)


@pytest.fixture(scope="module")
def session(chromium: str, speech: np.ndarray) -> Iterator[dict]:
    """One talk session of about 3 s through a server with a token."""
    with tempfile.TemporaryDirectory() as folder, ServerProcess(Settings(token=TOKEN)) as server:
        microphone = Path(folder) / "speech.wav"
        soundfile.write(str(microphone), np.concatenate([np.zeros(SAMPLE_RATE // 2), speech]),
                        SAMPLE_RATE, subtype="PCM_16")
        process, url = launch(chromium, Path(folder) / "profile", microphone)
        try:
            yield asyncio.run(talk(url, f"{server.http}/?token={TOKEN}", "scalar-4000", hops=300))
        finally:
            process.kill()
            process.wait(10)


def test_page_sends_the_microphone_at_16k_in_10ms_hops(session, speech):
    sent = pcm(session["sent"]).astype(np.float64) / 32768
    assert session["counters"]["sent"] >= 300 and len(sent) == HOP * session["counters"]["sent"]
    # The fake microphone plays the WAV (resampled by Chromium to the context rate, and by the
    # page's worklet back to 16 kHz): the speech's loud 100 ms pieces are found in what was sent.
    # Piece by piece: when the machine starves Chromium's audio thread, a dropped buffer costs
    # only the pieces it touches (a whole second matched at 0.86 once in CI; 79 % of the pieces
    # were found in a CI run that took 13 min instead of 9). A wrong rate or hop loses far more:
    # this clip read at 44.1 kHz as 48 kHz (or back) leaves 0 % of the pieces, one sample lost
    # per hop 16 %, 10 ms lost in every 100 ms 37 %.
    found = found_fraction(speech[: 2 * SAMPLE_RATE], sent, 0.95)
    print(f"speech pieces found in what the page sent: {found:.0%}")
    assert found > 0.6, f"only {found:.0%} of the microphone's speech is in what the page sent"


def test_page_receives_exactly_the_codecs_output(session):
    sent = pcm(session["sent"])
    received = pcm(session["received"])
    assert len(received) >= 300 * HOP and len(received) % HOP == 0
    encoder, decoder = StreamEncoder("scalar-4000"), StreamDecoder(default_synthesizer())
    hops = (sent / 32768).reshape(-1, HOP)
    expected = np.concatenate([decoder.decode(p) for hop in hops for p in encoder.push(hop)])
    expected = np.clip(np.round(expected * 32768), -32768, 32767).astype(np.int64)
    assert np.abs(received - expected[: len(received)]).max() <= 1
    assert np.abs(received).max() > 1000  # speech, not silence


def test_page_plays_and_shows_live_latency(session):
    assert session["ready"]["mode"] == "scalar-4000" and not session["errors"], session["errors"]
    playback = session["playback"]
    assert playback["played"] > 2 * session["sampleRate"]  # more than 2 s reached the output
    latency = session["latency"]
    assert latency["algorithmic"] == pytest.approx(15.0, abs=5.0)
    # The round trip in milliseconds (not seconds or microseconds): 5 ms on loopback here, 308 ms
    # beside 8 busy processes, 672 ms once in CI; how short it is belongs to the bench.
    print(f"round trip shown by the page: {latency['rtt']} ms")
    assert 0 < latency["rtt"] < 5000
    assert latency["total"] > latency["algorithmic"] + latency["rtt"]
    assert session["live_total"].endswith(" ms")
    assert "mouth to ear" in session["readout"]
