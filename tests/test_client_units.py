"""Client building blocks without network or sound card: jitter buffer, concealment, playout,
protocol helpers, backoff, close-code errors, and the engine on a simulated audio clock."""

import json
import random

import numpy as np
import pytest

from client.backoff import Backoff
from client.concealment import RepeatConcealer, pitch_period
from client.engine import DuplexEngine
from client.errors import ClientError, ServerError, StreamClosed
from client.jitter import JitterBuffer, JitterConfig
from client.local_link import LocalLink
from client.playout import DecoderPlayout, PcmPlayout
from client.protocol import Ready, control, endpoint_url, http_url, parse_text
from streaming_core.constants import HOP
from streaming_core.decoder import StreamDecoder
from streaming_core.encoder import StreamEncoder

# --- jitter buffer --------------------------------------------------------------------------


def run_buffer(buffer: JitterBuffer, lags: list[int], ticks: int) -> list[tuple[int, str, object]]:
    """Frame k arrives lags[k] ticks after its capture; returns (tick, event, item) per tick."""
    arrivals: dict[int, list[int]] = {}
    for frame, lag in enumerate(lags):
        arrivals.setdefault(frame + lag, []).append(frame)
    out = []
    for tick in range(ticks):
        for frame in arrivals.get(tick, []):
            buffer.put(frame, frame, float(tick - frame))
        event, item = buffer.pop(tick)
        out.append((tick, event, item))
    return out


def test_constant_lag_plays_every_frame_in_order_at_that_delay():
    buffer = JitterBuffer(JitterConfig(max_delay=10))
    events = run_buffer(buffer, [3] * 100, 103)
    played = [(tick, item) for tick, event, item in events if event == "play"]
    assert [item for _, item in played] == list(range(len(played)))
    assert all(tick - item == 3 for tick, item in played)
    assert buffer.state.concealed == 0 and buffer.state.late == 0
    assert buffer.state.target == 3


def test_zero_lag_plays_in_the_capture_tick():
    buffer = JitterBuffer()
    events = run_buffer(buffer, [0] * 20, 20)
    assert all(event == "play" and item == tick for tick, event, item in events)


def test_jitter_raises_the_target_to_cover_late_frames():
    rng = random.Random(1)
    lags = [rng.choice([1, 1, 1, 2, 4]) for _ in range(400)]
    buffer = JitterBuffer(JitterConfig(max_delay=10))
    run_buffer(buffer, lags, 404)
    assert buffer.state.target == 4
    # Once the target covers the worst lag, nothing is concealed any more.
    assert buffer.state.concealed <= 3


def test_max_delay_caps_the_target_and_late_frames_are_concealed():
    buffer = JitterBuffer(JitterConfig(max_delay=2))
    run_buffer(buffer, [5] * 50, 60)
    assert buffer.state.target == 2
    assert buffer.state.concealed > 0 and buffer.state.late > 0
    assert buffer.state.played == 0


def test_delay_shrinks_when_the_network_calms_down():
    buffer = JitterBuffer(JitterConfig(max_delay=10, window=50, shrink_every=2))
    lags = [6] * 60 + [1] * 200
    events = run_buffer(buffer, lags, 270)
    assert buffer.state.target == 1
    assert buffer.delay(270) <= buffer.state.target + buffer.config.hysteresis
    assert buffer.state.dropped > 0
    plays = [item for _, event, item in events if event == "play"]
    assert plays == sorted(plays)


def test_late_frame_after_its_turn_is_discarded():
    buffer = JitterBuffer()
    buffer.put(0, "a", 0.0)
    assert buffer.pop(0) == ("play", "a")
    assert buffer.pop(1) == ("conceal", None)
    assert not buffer.put(1, "b", 1.0)
    assert buffer.state.late == 1


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="min_delay"):
        JitterConfig(min_delay=5, max_delay=2)


# --- concealment and playout ----------------------------------------------------------------


def test_concealer_continues_the_pitch_and_fades():
    period = 100
    t = np.arange(6 * HOP)
    voiced = np.sin(2 * np.pi * t / period).astype(np.float32)
    assert pitch_period(voiced.astype(np.float64)) == period
    concealer = RepeatConcealer(decay=0.5)
    for hop in voiced.reshape(-1, HOP)[:3]:
        concealer.played_real(hop)
    first = concealer.conceal()
    expected = np.sin(2 * np.pi * (t[3 * HOP : 4 * HOP]) / period)
    # The continuation is in phase with the signal it continues (before the fade bites).
    assert np.corrcoef(first, expected)[0, 1] > 0.95
    energies = [float(np.sum(concealer.conceal() ** 2)) for _ in range(4)]
    assert all(b < a for a, b in zip(energies, energies[1:], strict=False))


def test_decoder_playout_uses_the_decoders_concealment():
    encoder = StreamEncoder("scalar-2400")
    packets = encoder.push(0.1 * np.random.default_rng(0).standard_normal(10 * HOP))
    decoder = StreamDecoder()
    playout = DecoderPlayout(decoder)
    for packet in packets[:5]:
        assert playout.hop("play", packet).shape == (HOP,)
    assert playout.hop("conceal", None).shape == (HOP,)
    assert decoder.state.frames_concealed == 1
    # The frame after the concealed one decodes without a gap.
    playout.hop("play", packets[6])
    assert decoder.state.frames_concealed == 1 and decoder.state.packets_dropped == 0


def test_pcm_playout_keeps_the_last_hop_of_a_longer_reply():
    playout = PcmPlayout()
    reply = np.arange(3 * HOP, dtype=np.float32)
    np.testing.assert_array_equal(playout.hop("play", reply), reply[-HOP:])
    assert np.all(playout.hop("idle", None) == 0)


def test_engine_with_local_link_equals_the_offline_codec(speech):
    """The engine on a simulated clock: played audio == encoder+decoder run offline, hop for hop."""
    engine = DuplexEngine(JitterBuffer(), DecoderPlayout(StreamDecoder()), record=True)
    link = LocalLink(StreamEncoder("scalar-4000"), engine.deliver)
    engine.capture = link.capture
    hops = speech[: len(speech) // HOP * HOP].reshape(-1, HOP)
    played = np.concatenate([engine.process(hop) for hop in hops])
    encoder, decoder = StreamEncoder("scalar-4000"), StreamDecoder()
    offline = np.concatenate([decoder.decode(p) for hop in hops for p in encoder.push(hop)])
    np.testing.assert_array_equal(played, offline)
    assert engine.state.events["play"] == len(hops)
    assert link.traffic.payload_bits == 40 * len(hops)


def test_engine_records_what_it_played_at_each_tick():
    """The recording names each played hop's event: a frame missing at its turn is concealed."""
    engine = DuplexEngine(JitterBuffer(), PcmPlayout(), record=True)
    engine.capture = lambda tick, hop: tick != 5 and engine.deliver(tick, hop + 1, 0.0)
    for _ in range(10):
        engine.process(np.zeros(HOP, np.float32))
    assert engine.state.played_events == ["play"] * 5 + ["conceal"] + ["play"] * 4
    assert len(engine.state.played) == 10 and np.all(engine.state.played[6] == 1)


# --- protocol, errors, backoff --------------------------------------------------------------


@pytest.mark.parametrize(("server", "expected"), [
    pytest.param("ws://h:1", "ws://h:1/v1/decode?rate=16000", id="ws"),
    pytest.param("http://h:1/", "ws://h:1/v1/decode?rate=16000", id="http"),
    pytest.param("https://h/base", "wss://h/base/v1/decode?rate=16000", id="https-path"),
    pytest.param("h:1", "ws://h:1/v1/decode?rate=16000", id="bare"),
])
def test_endpoint_url(server, expected):
    assert endpoint_url(server, "decode", rate=16000, mode=None) == expected
    assert http_url(server, "/v1/info").endswith("/v1/info")


def test_bad_server_address_and_endpoint():
    with pytest.raises(ClientError, match="bad server address"):
        endpoint_url("ftp://h", "decode")
    with pytest.raises(ClientError, match="unknown endpoint"):
        endpoint_url("ws://h", "transcode")


def test_server_messages():
    ready = Ready.from_message({"type": "ready", "session": "s", "sample_rate": 16000, "hop_ms": 10,
                                "mode": None, "algorithmic_latency_ms": 15.0, "synthesizer": "dsp",
                                "limits": {}})
    assert ready.sample_rate == 16000 and ready.extra == {"limits": {}}
    with pytest.raises(ClientError, match="malformed ready"):
        Ready.from_message({"type": "ready"})
    with pytest.raises(ServerError, match="bad_packet: packet truncated"):
        parse_text(json.dumps({"type": "error", "code": "bad_packet", "detail": "packet truncated"}))
    with pytest.raises(ClientError, match="not JSON"):
        parse_text("hello")
    assert json.loads(control("mode", mode="scalar-4000")) == {"type": "mode", "mode": "scalar-4000"}


@pytest.mark.parametrize(("code", "retryable", "words"), [
    pytest.param(4401, False, "unauthorized", id="4401"),
    pytest.param(4429, True, "faster than the server allows", id="4429"),
    pytest.param(4408, True, "idle timeout", id="4408"),
    pytest.param(1013, True, "server is full", id="1013"),
    pytest.param(None, True, "dropped without a close frame", id="abnormal"),
])
def test_close_codes_become_clear_errors(code, retryable, words):
    error = StreamClosed(code, "detail from server")
    assert words in str(error) and error.retryable is retryable


def test_backoff_grows_to_its_cap_and_stops():
    delays = list(Backoff(initial=0.1, factor=2, maximum=0.5, attempts=5, jitter=0).delays())
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert list(Backoff(attempts=0).delays()) == []
