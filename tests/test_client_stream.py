"""The client library against the real service (uvicorn on loopback, in a thread): every
endpoint's output equals the offline codec's, and every failure is a clear, typed error;
reconnection with backoff; the example script."""

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from client.backoff import Backoff
from client.errors import ServerError, ServerUnreachable, StreamClosed
from client.local_server import LocalServer
from client.stream import DecodeStream, EncodeStream, LoopbackStream
from hopcodec.cli import DEFAULT_SAMPLE, main
from streaming_core.bitstream import FORMAT_VERSION
from streaming_core.codec import encode_audio
from streaming_core.constants import HOP
from streaming_core.decoder import StreamDecoder
from streaming_core.encoder import StreamEncoder
from streaming_core.synthesizers import default_synthesizer

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "client-test-token"
ONE_LSB = 1.5 / 32768
FAST = Backoff(initial=0.05, maximum=0.2, attempts=3)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    """An open server with limits wide enough to send clips faster than real time."""
    with LocalServer(rate_multiple=1000.0, rate_burst_seconds=600.0) as running:
        yield running


def offline_decode(packets: list[bytes]) -> np.ndarray:
    decoder = StreamDecoder(default_synthesizer())
    return np.concatenate([decoder.decode(p) for p in packets])


def test_decode_stream_equals_offline_decoder(server, speech):
    packets = encode_audio(speech, "scalar-4000")

    async def run() -> np.ndarray:
        async with DecodeStream(server.url) as stream:
            assert stream.ready.sample_rate == 16000 and stream.ready.hop_ms == 10
            blocks = [await stream.decode(p) for p in packets]
            stats = await stream.stats()
        assert stats["frames_decoded"] == len(packets)
        return np.concatenate(blocks)

    decoded = asyncio.run(run())
    np.testing.assert_allclose(decoded, offline_decode(packets), atol=ONE_LSB)


def test_encode_and_loopback_streams_equal_offline_codec(server, speech):
    clip = speech[: 200 * HOP]
    hops = clip.reshape(-1, HOP)
    reference = StreamEncoder("scalar-2400")
    expected_packets = [p for hop in hops for p in reference.push(hop)]

    async def run() -> tuple[list[bytes], np.ndarray]:
        async with EncodeStream(server.url, mode="scalar-2400") as encode:
            for hop in hops:
                await encode.send_pcm(hop)
            packets = [await encode.receive_packet(5) for _ in hops]
        async with LoopbackStream(server.url, mode="scalar-2400") as loop:
            blocks = []
            for hop in hops:
                await loop.send_pcm(hop)
                blocks.append(await loop.receive_pcm(5))
        return packets, np.concatenate(blocks)

    packets, looped = asyncio.run(run())
    # The server codes the 16-bit version of the clip.
    quantized = np.round(clip * 32768) / 32768
    quantized_packets = encode_audio(quantized, "scalar-2400")[: len(hops)]
    assert packets == quantized_packets
    assert len(packets) == len(expected_packets)
    np.testing.assert_allclose(looped, offline_decode(packets), atol=ONE_LSB)


def test_wrong_or_missing_token_is_a_clear_unauthorized_error():
    async def attempt(token: str | None) -> None:
        async with DecodeStream(server.url, token=token, backoff=FAST) as stream:
            await stream.decode(encode_audio(np.zeros(HOP))[0])

    with LocalServer(token=TOKEN) as server:
        for token in (None, "wrong"):
            with pytest.raises(StreamClosed, match="4401: unauthorized") as caught:
                asyncio.run(attempt(token))
            assert not caught.value.retryable
        asyncio.run(attempt(TOKEN))


def test_bad_query_names_the_parameter(server):
    async def attempt() -> None:
        async with DecodeStream(server.url, rate=3):
            pass

    with pytest.raises(StreamClosed, match="4400.*rate=3 out of range"):
        asyncio.run(attempt())


def test_malformed_packet_is_a_server_error_and_the_stream_goes_on(server):
    async def run() -> None:
        async with DecodeStream(server.url) as stream:
            await stream.send_packet(bytes([FORMAT_VERSION << 4, 1, 0]))
            with pytest.raises(ServerError, match="bad_packet: packet truncated"):
                await stream.receive_pcm(5)
            audio = await stream.decode(encode_audio(np.zeros(HOP))[0])
            assert len(audio) == HOP

    asyncio.run(run())


def test_unreachable_server_fails_after_retries():
    with LocalServer() as gone:
        url = gone.url

    async def attempt() -> None:
        await DecodeStream(url, backoff=FAST).connect()

    with pytest.raises(ServerUnreachable, match="cannot reach ws://127.0.0.1"):
        asyncio.run(attempt())


def test_full_server_is_retried_with_backoff_until_a_slot_frees():
    async def run() -> None:
        first = DecodeStream(server.url)
        await first.connect()
        with pytest.raises(StreamClosed, match="1013: the server is full"):
            await DecodeStream(server.url, backoff=FAST).connect()
        second = DecodeStream(server.url, backoff=Backoff(initial=0.2, attempts=5, jitter=0))
        connecting = asyncio.create_task(second.connect())
        await asyncio.sleep(0.1)
        await first.close()
        await connecting
        assert second.counters.connects == 1
        await second.close()

    with LocalServer(max_streams=1) as server:
        asyncio.run(run())


def test_reconnect_after_idle_close(speech):
    packets = encode_audio(speech[: 50 * HOP])

    async def run() -> None:
        async with DecodeStream(server.url, backoff=FAST) as stream:
            await stream.decode(packets[0])
            with pytest.raises(StreamClosed, match="4408: idle timeout") as caught:
                await stream.receive(3)
            assert caught.value.retryable
            await stream.reconnect()
            audio = await stream.decode(packets[0])
            assert len(audio) == HOP and stream.counters.connects == 2

    with LocalServer(idle_timeout=0.3) as server:
        asyncio.run(run())


def test_example_decodes_a_file_like_the_cli(server, tmp_path):
    coded, reference = tmp_path / "clip.hop", tmp_path / "reference.wav"
    assert main(["encode", str(DEFAULT_SAMPLE), str(coded)]) == 0
    assert main(["decode", str(coded), str(reference)]) == 0
    out = tmp_path / "served.wav"
    result = subprocess.run([sys.executable, str(ROOT / "client" / "examples" / "decode_file.py"),
                             str(coded), str(out), "--server", server.url],
                            capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    served, rate = soundfile.read(str(out))
    expected, expected_rate = soundfile.read(str(reference))
    assert rate == expected_rate and len(served) == len(expected)
    np.testing.assert_allclose(served, expected, atol=ONE_LSB)
