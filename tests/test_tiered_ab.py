"""scripts/tiered_ab.py: the tiered candidate's prefix codes and quantizer on real speech."""

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streaming_core.analysis import analyze_signal
from streaming_core.bitpack import BitReader, BitWriter
from streaming_core.bitstream import parse_packet
from streaming_core.codec import decode_features, encode_audio
from streaming_core.errors import BitstreamError
from streaming_core.modes import get_mode, predictive_modes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import tiered_ab  # noqa: E402

pytestmark = pytest.mark.skipif(not predictive_modes(), reason="released predictor not installed")


@pytest.fixture
def restored() -> Iterator[None]:
    """hop-1600 gets its released quantizer back whatever the test does."""
    yield
    tiered_ab.restore()
    assert not isinstance(get_mode("hop-1600").quantizer, tiered_ab.TieredQuantizer)


def test_prefix_code_round_trips_and_is_complete():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 1000, 64) * (rng.random(64) < 0.7)  # some symbols never seen
    code = tiered_ab.PrefixCode.fitted(counts)
    assert np.sum(2.0 ** -code.lengths) == pytest.approx(1.0)  # every bit string decodes
    assert code.lengths[np.argmax(counts)] <= code.lengths[np.argmin(counts)]
    symbols = rng.integers(0, 64, 500)
    writer = BitWriter()
    for symbol in symbols:
        code.write(writer, int(symbol))
    reader = BitReader(writer.to_bytes())
    assert [code.read(reader) for _ in symbols] == list(symbols)
    truncated = BitReader(writer.to_bytes()[:3])
    with pytest.raises(BitstreamError):
        for _ in symbols:
            code.read(truncated)


@pytest.mark.parametrize("tiers", sorted(tiered_ab.TIER_SETS))
def test_candidate_decoder_mirrors_its_encoder_at_the_modes_rate(speech, restored, tiers):
    """Codes fitted on the clip's own frames, then the clip coded with them: the decoder of the
    packets rebuilds exactly the encoder's frames, at about hop-1600's rate, using every tier."""
    fitting = tiered_ab.install(None, tiers)
    encode_audio(speech, "hop-1600")
    codes = fitting.fitted_codes()
    quantizer = tiered_ab.install(codes)
    state = quantizer.new_state()
    features = analyze_signal(speech)
    expected = np.stack([quantizer.encode(f, BitWriter(), state) for f in features[:100]])
    packets = encode_audio(speech, "hop-1600", frames_per_packet=20)
    decoded, _ = decode_features(packets)
    np.testing.assert_array_equal(decoded[:100], expected)
    bits = sum(8 * len(parse_packet(p).payload) for p in packets) / len(features)
    assert 14.0 < bits < 17.0
    assert np.all(quantizer.tier_counts > 0)
    assert quantizer.tier_names == tiered_ab.TIER_SETS[tiers]
    with pytest.raises(ValueError, match="codes fitted for the tiers"):
        tiered_ab.TieredQuantizer(fitting, codes, next(t for t in tiered_ab.TIER_SETS if t != tiers))


def test_candidate_refuses_a_header_whose_pitch_contradicts_its_voicing(speech, restored):
    fitting = tiered_ab.install(None, "joint")
    encode_audio(speech[:32000], "hop-1600")
    quantizer = tiered_ab.install(fitting.fitted_codes())
    unvoiced_with_pitch = quantizer._header(1, 0, 3)  # voicing index 0 is unvoiced
    writer = BitWriter()
    state = quantizer.new_state()
    quantizer.codes.header[state.context].write(writer, unvoiced_with_pitch)
    writer.write(0, 32)
    with pytest.raises(BitstreamError, match="does not match the frame's voicing"):
        quantizer.read_frame(BitReader(writer.to_bytes()), state)
