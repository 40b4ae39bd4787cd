"""The service on a real uvicorn server (a `hopcodec serve` process) with real WebSocket clients:
every endpoint's output equals the offline codec's, HTTP endpoints, auth."""

import asyncio
import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile
import soxr
import websockets
from websockets.asyncio.client import ClientConnection

from hopcodec.cli import SAMPLES_DIR as SAMPLES
from hopcodec.cli import _decode_bytes
from server.config import Settings
from server.pcm import FULL_SCALE, float_to_pcm
from server.testing import ServerProcess
from streaming_core.audio_io import load_for_codec
from streaming_core.bitstream import FORMAT_VERSION, FileHeader, write_coded_file
from streaming_core.codec import encode_audio
from streaming_core.constants import SAMPLE_RATE
from streaming_core.decoder import StreamDecoder
from streaming_core.encoder import StreamEncoder
from streaming_core.modes import get_mode
from streaming_core.synthesizers import default_synthesizer

CLIPS = sorted(SAMPLES.glob("*.wav"))
TOKEN = "test-token-42"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """A server with a token and limits wide enough to send whole clips at once."""
    settings = Settings(token=TOKEN, rate_multiple=1000.0, rate_burst_seconds=600.0, max_streams=16)
    with ServerProcess(settings) as running:
        yield running


# --- references: the offline codec -------------------------------------------------------------

def offline_decode(packets: list[bytes], rate: int) -> np.ndarray:
    """What a StreamDecoder gives for these packets, resampled in one go (float)."""
    decoder = StreamDecoder(default_synthesizer())
    audio = np.concatenate([decoder.decode(p) for p in packets])
    return audio if rate == SAMPLE_RATE else soxr.resample(audio, SAMPLE_RATE, rate, quality="HQ")


def pcm_values(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.int64)


def assert_pcm_equal(received: bytes, reference: np.ndarray) -> None:
    """Equal sample for sample, 16-bit rounding aside (at most 1 LSB)."""
    got = pcm_values(received)
    expected = np.clip(np.round(reference.astype(np.float64) * FULL_SCALE), -32768, 32767)
    assert len(got) == len(expected)
    assert np.abs(got - expected).max() <= 1


def speech_at(rate: int, clip: str = "it_carlo_youarenext.wav") -> np.ndarray:
    """A bundled clip at `rate` as the s16 values a PCM client would send (float, full scale 1)."""
    signal = load_for_codec(SAMPLES / clip)[0]
    if rate != SAMPLE_RATE:
        signal = soxr.resample(signal, SAMPLE_RATE, rate, quality="HQ")
    return pcm_values(float_to_pcm(signal)).astype(np.float32) / FULL_SCALE


# --- client helpers ----------------------------------------------------------------------------

async def ready(ws: ClientConnection) -> dict:
    message = json.loads(await ws.recv())
    assert message["type"] == "ready", message
    return message


async def decode_stream(url: str, packets: list[bytes]) -> tuple[bytes, list[bytes], dict]:
    """Send packets one message each, then flush; all audio, the per-packet replies, the stats."""
    async with websockets.connect(url, additional_headers=AUTH) as ws:
        await ready(ws)
        replies: list[bytes] = []

        async def read() -> None:
            while len(replies) < len(packets):
                replies.append(await ws.recv())

        reader = asyncio.create_task(read())
        for packet in packets:
            await ws.send(packet)
        await reader
        await ws.send(json.dumps({"type": "flush"}))
        tail = []
        while isinstance(message := await ws.recv(), bytes):
            tail.append(message)
        assert json.loads(message) == {"type": "flushed"}
        await ws.send(json.dumps({"type": "stats"}))
        stats = json.loads(await ws.recv())
    return b"".join(replies + tail), replies, stats


async def pcm_stream(url: str, pcm: bytes, chunk_bytes: int, switch: tuple[int, str] | None = None
                     ) -> list[bytes]:
    """Send PCM in chunks, then flush; every binary message until `flushed`."""
    async with websockets.connect(url, additional_headers=AUTH) as ws:
        await ready(ws)
        out: list[bytes] = []

        async def read() -> None:
            while True:
                message = await ws.recv()
                if isinstance(message, str):
                    assert json.loads(message) == {"type": "flushed"}, message
                    return
                out.append(message)

        reader = asyncio.create_task(read())
        for start in range(0, len(pcm), chunk_bytes):
            if switch is not None and start == switch[0]:
                await ws.send(json.dumps({"type": "mode", "mode": switch[1]}))
            await ws.send(pcm[start:start + chunk_bytes])
        await ws.send(json.dumps({"type": "flush"}))
        await asyncio.wait_for(reader, 30)
    return out


# --- WebSocket round trips ---------------------------------------------------------------------

@pytest.mark.parametrize("clip", [c.name for c in CLIPS])
@pytest.mark.parametrize(("rate", "mode", "frames_per_packet"), [
    pytest.param(16000, "scalar-2400", 1, id="16k-2400-1fpp"),
    pytest.param(48000, "scalar-4000", 3, id="48k-4000-3fpp"),
    pytest.param(22050, "scalar-2400", 20, id="22k-2400-20fpp"),
    pytest.param(16000, "default", 2, id="16k-default-2fpp"),
])
def test_decode_endpoint_equals_offline_decoder(server: ServerProcess, clip: str, rate: int, mode: str,
                                                frames_per_packet: int) -> None:
    packets = encode_audio(load_for_codec(SAMPLES / clip)[0], mode, frames_per_packet)
    audio, replies, stats = asyncio.run(decode_stream(f"{server.ws}/v1/decode?rate={rate}", packets))
    assert len(replies) == len(packets)
    assert_pcm_equal(audio, offline_decode(packets, rate))
    assert stats["frames_decoded"] == sum(p[4] for p in packets)
    assert stats["frames_concealed"] == 0


def _graph_counters(server: ServerProcess) -> dict[tuple[str, str], float]:
    """(counter, graph) -> value of hopcodec_graph_runs/calls and (counter, "") -> value of
    hopcodec_decode_passes/pass_messages in /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = http(server, "/metrics", token=None)[1].decode()
    return {(sample.name, sample.labels.get("graph", "")): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name.startswith(("hopcodec_graph_", "hopcodec_decode_pass"))}


def test_streams_decoded_at_once_equal_the_offline_decoder_and_are_counted(server: ServerProcess
                                                                           ) -> None:
    clips = ["it_carlo_youarenext.wav", *[c.name for c in sorted(SAMPLES.glob("*.wav"))][:2]]
    streams = [encode_audio(load_for_codec(SAMPLES / c)[0], "default", 1) for c in clips]
    before = _graph_counters(server)

    async def all_at_once() -> list:
        return await asyncio.gather(*(decode_stream(f"{server.ws}/v1/decode", p) for p in streams))

    for packets, (audio, _, stats) in zip(streams, asyncio.run(all_at_once()), strict=True):
        assert_pcm_equal(audio, offline_decode(packets, SAMPLE_RATE))
        assert stats["frames_concealed"] == 0
    after = _graph_counters(server)

    def grew(counter: str, graph: str) -> float:
        key = (f"hopcodec_graph_{counter}_total", graph)
        return after[key] - before.get(key, 0.0)

    for graph in ("decoder", "predictor"):
        assert 0 < grew("runs", graph) <= grew("calls", graph), graph
    assert grew("calls", "decoder") == sum(len(p) for p in streams)  # one call per 1-frame packet
    # Every packet (one message each) went through a decode pass of the hop threads.
    passes = after[("hopcodec_decode_passes_total", "")] - before[("hopcodec_decode_passes_total", "")]
    messages = (after[("hopcodec_decode_pass_messages_total", "")]
                - before[("hopcodec_decode_pass_messages_total", "")])
    assert messages == sum(len(p) for p in streams) and 0 < passes <= messages


@pytest.mark.parametrize(("rate", "mode"), [(16000, "scalar-4000"), (44100, "scalar-4000"),
                                            pytest.param(16000, "default", id="16000-default")])
def test_encode_endpoint_equals_offline_encoder(server: ServerProcess, rate: int, mode: str) -> None:
    signal = speech_at(rate)
    url = f"{server.ws}/v1/encode?mode={mode}&rate={rate}&frames_per_packet=2"
    got = asyncio.run(pcm_stream(url, float_to_pcm(signal), chunk_bytes=2 * 777))
    at_16k = signal if rate == SAMPLE_RATE else soxr.resample(signal, rate, SAMPLE_RATE, quality="HQ")
    assert got == encode_audio(at_16k, mode, frames_per_packet=2)


def test_encode_mode_switch_takes_effect_at_next_packet(server: ServerProcess) -> None:
    signal = speech_at(SAMPLE_RATE)
    pcm, switch_at = float_to_pcm(signal), 2 * 16000
    got = asyncio.run(pcm_stream(f"{server.ws}/v1/encode?mode=scalar-2400", pcm, 2 * 1000,
                                 (switch_at, "scalar-4000")))
    encoder = StreamEncoder("scalar-2400")
    expected = encoder.push(signal[: switch_at // 2])
    encoder.set_mode("scalar-4000")
    expected += encoder.push(signal[switch_at // 2 :]) + encoder.flush()
    assert got == expected
    assert {p[1] for p in got} == {get_mode("scalar-2400").id, get_mode("scalar-4000").id}


@pytest.mark.parametrize(("rate", "mode"), [(16000, "scalar-2400"), (48000, "default")])
def test_loopback_endpoint_equals_offline_codec(server: ServerProcess, rate: int, mode: str) -> None:
    signal = speech_at(rate, "en_allison_auth_incorrect.wav")
    got = asyncio.run(pcm_stream(f"{server.ws}/v1/loopback?rate={rate}&mode={mode}",
                                 float_to_pcm(signal), chunk_bytes=2 * 480))
    at_16k = signal if rate == SAMPLE_RATE else soxr.resample(signal, rate, SAMPLE_RATE, quality="HQ")
    assert_pcm_equal(b"".join(got), offline_decode(encode_audio(at_16k, mode), rate))


@pytest.mark.parametrize("endpoint", ["loopback", "decode"])
def test_flush_ends_a_stream_and_the_next_one_starts_afresh(server: ServerProcess, endpoint: str) -> None:
    """After a flush the encoder and decoder restart: the same input gives the same output."""
    if endpoint == "loopback":
        pcm = float_to_pcm(speech_at(48000)[:48000])
        messages = [pcm[i:i + 9600] for i in range(0, len(pcm), 9600)]
    else:
        messages = encode_audio(load_for_codec(CLIPS[0])[0][:8000], "scalar-2400")

    async def run() -> list[bytes]:
        async with websockets.connect(f"{server.ws}/v1/{endpoint}?rate=48000", additional_headers=AUTH) as ws:
            await ready(ws)
            rounds = []
            for _ in range(2):
                for message in messages:
                    await ws.send(message)
                await ws.send(json.dumps({"type": "flush"}))
                out = []
                while isinstance(reply := await ws.recv(), bytes):
                    out.append(reply)
                assert json.loads(reply) == {"type": "flushed"}
                rounds.append(b"".join(out))
            return rounds

    first, second = asyncio.run(run())
    assert first == second and len(first) > 0


def test_ready_message_describes_the_stream(server: ServerProcess) -> None:
    async def run() -> dict:
        async with websockets.connect(f"{server.ws}/v1/encode?rate=8000&mode=scalar-4000&frames_per_packet=5",
                                      additional_headers=AUTH) as ws:
            return await ready(ws)

    message = asyncio.run(run())
    assert message["endpoint"] == "encode" and message["sample_rate"] == 8000
    assert message["mode"] == "scalar-4000" and message["frames_per_packet"] == 5
    assert message["hop_ms"] == 10 and message["algorithmic_latency_ms"] == 15.0
    assert message["synthesizer"] == default_synthesizer().name and message["session"]


# --- HTTP --------------------------------------------------------------------------------------

def http(server: ServerProcess, path: str, body: bytes | None = None, token: str | None = TOKEN
         ) -> tuple[int, bytes]:
    method = "POST" if body is not None else "GET"
    request = urllib.request.Request(server.http + path, data=body, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_http_encode_and_decode_equal_the_cli(server: ServerProcess) -> None:
    wav = (SAMPLES / "en_allison_auth_incorrect.wav").read_bytes()
    status, coded = http(server, "/v1/encode?mode=scalar-4000", wav)
    assert status == 200
    signal, rate, length = load_for_codec(SAMPLES / "en_allison_auth_incorrect.wav")
    assert coded == write_coded_file(FileHeader(get_mode("scalar-4000"), rate, length),
                                     encode_audio(signal, "scalar-4000", frames_per_packet=20))
    for query, out_rate in (("", rate), ("?rate=48000", 48000)):
        status, body = http(server, "/v1/decode" + query, coded)
        assert status == 200
        audio, got_rate = soundfile.read(io.BytesIO(body), dtype="int16")
        expected, expected_rate, _ = _decode_bytes(coded, out_rate)
        assert got_rate == expected_rate == out_rate
        assert_pcm_equal(audio.astype("<i2").tobytes(), np.clip(expected, -1, 1))


@pytest.mark.parametrize(("path", "body", "status", "words"), [
    ("/v1/encode", b"this is not audio", 415, "not a readable audio file"),
    ("/v1/encode?mode=nonsense", b"RIFF", 422, "unknown mode"),
    ("/v1/encode", b"", 422, "empty body"),
    ("/v1/decode", b"HOPC" + bytes([FORMAT_VERSION, 1]), 422, "not a valid .hop file"),
    ("/v1/decode", b"HOPC" + bytes([FORMAT_VERSION + 1]) + bytes(13), 422,
     "unknown file format version"),
    ("/v1/decode?rate=5", b"HOPC", 422, "rate"),
])
def test_http_rejects_bad_uploads_clearly(server: ServerProcess, path: str, body: bytes, status: int,
                                          words: str) -> None:
    got, text = http(server, path, body)
    assert got == status
    assert words in text.decode()


def test_info_health_metrics_docs_and_page(server: ServerProcess) -> None:
    status, body = http(server, "/v1/info")
    info = json.loads(body)
    assert status == 200 and info["hop_ms"] == 10 and info["synthesizer"] == default_synthesizer().name
    assert {m["name"] for m in info["modes"]} >= {"scalar-2400", "scalar-4000"}
    assert "model_version" in info and info["auth"] is True
    assert json.loads(http(server, "/healthz", token=None)[1])["status"] == "ok"
    status, metrics = http(server, "/metrics", token=None)
    assert status == 200 and b"hopcodec_hop_processing_seconds_bucket" in metrics
    assert http(server, "/docs", token=None)[0] == 200
    status, page = http(server, "/", token=None)
    assert status == 200 and (b"<html" in page.lower() or b"<!doctype html" in page.lower())


# --- auth --------------------------------------------------------------------------------------

async def close_of(url: str, headers: dict[str, str] | None = None) -> tuple[int | None, str]:
    """Connect, wait for the server to close, return its code and reason."""
    async with websockets.connect(url, additional_headers=headers or {}) as ws:
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason


@pytest.mark.parametrize(("query", "headers"), [
    pytest.param("", {}, id="missing"),
    pytest.param("?token=wrong", {}, id="wrong-query"),
    pytest.param("", {"Authorization": "Bearer wrong"}, id="wrong-header"),
    pytest.param("", {"Authorization": f"Basic {TOKEN}"}, id="not-bearer"),
])
def test_websocket_without_the_right_token_is_closed_4401(server: ServerProcess, query: str,
                                                          headers: dict[str, str]) -> None:
    code, reason = asyncio.run(close_of(f"{server.ws}/v1/decode{query}", headers))
    assert code == 4401 and "token" in reason


@pytest.mark.parametrize(("query", "headers"), [
    pytest.param(f"?token={TOKEN}", {}, id="query"),
    pytest.param("", AUTH, id="header"),
])
def test_websocket_with_the_right_token_is_served(server: ServerProcess, query: str,
                                                  headers: dict[str, str]) -> None:
    async def run() -> dict:
        async with websockets.connect(f"{server.ws}/v1/loopback{query}", additional_headers=headers) as ws:
            return await ready(ws)

    assert asyncio.run(run())["endpoint"] == "loopback"


def test_http_v1_needs_the_token(server: ServerProcess) -> None:
    assert http(server, "/v1/info", token=None)[0] == 401
    assert http(server, "/v1/info", token="wrong")[0] == 401
    assert http(server, f"/v1/info?token={TOKEN}", token=None)[0] == 200
    assert http(server, "/v1/decode", b"HOPC", token=None)[0] == 401


# --- the command line --------------------------------------------------------------------------

def test_serve_with_two_workers_serves_streams() -> None:
    """--workers 2: each uvicorn worker builds the app from the HOPCODEC_* environment."""
    packets = encode_audio(load_for_codec(CLIPS[0])[0][:16000], "scalar-2400")
    with ServerProcess(Settings(token=TOKEN, max_streams=3), workers=2) as running:
        for _ in range(2):
            audio, _, _ = asyncio.run(decode_stream(f"{running.ws}/v1/decode", packets))
            assert_pcm_equal(audio, offline_decode(packets, SAMPLE_RATE))
        assert json.loads(http(running, "/healthz", token=None)[1])["max_streams"] == 3


@pytest.mark.parametrize(("argv", "words"), [
    (["--max-streams", "0"], "max_streams must be positive"),
    (["--workers", "0"], "--workers must be at least 1"),
    (["--hop-threads", "-1"], "hop_threads must be 0 or more"),
])
def test_serve_refuses_bad_settings_in_one_line(argv: list[str], words: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from hopcodec.cli import main

    assert main(["serve", *argv]) == 1
    assert words in capsys.readouterr().err
