"""Bitstream formats 9 and 10: prefix codes and the tiered frames of hop-1600 and hop-1200
(streaming_core/tiered.py), and the command that fits the codes (models/quantizer/tiers.py)."""

from dataclasses import replace

import numpy as np
import pytest

from models.quantizer.tiers import count_fields, fitted_code, fitted_codes
from streaming_core.analysis import analyze_signal
from streaming_core.bitpack import BitReader, BitWriter
from streaming_core.bitstream import parse_packet
from streaming_core.codec import decode_features, encode_audio
from streaming_core.constants import NB_BANDS
from streaming_core.encoder import RESET_INTERVAL
from streaming_core.errors import BitstreamError, HopcodecError
from streaming_core.modes import get_mode, predictive_modes
from streaming_core.predictive import TIERED_MODES
from streaming_core.prefix_code import PrefixCode
from streaming_core.tiered import RESET_CREDIT, TieredQuantizer

needs_release = pytest.mark.skipif(not predictive_modes(), reason="released predictor not installed")


def test_fitted_prefix_code_round_trips_and_is_complete():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 1000, 64) * (rng.random(64) < 0.7)  # some symbols never seen
    code = fitted_code(counts)
    assert np.sum(2.0 ** -code.lengths) == pytest.approx(1.0)  # every bit string decodes
    assert code.lengths[np.argmax(counts)] <= code.lengths[np.argmin(counts)]
    symbols = rng.integers(0, 64, 500)
    writer = BitWriter()
    for symbol in symbols:
        code.write(writer, int(symbol))
    assert writer.bit_count == int(code.lengths[symbols].sum())
    reader = BitReader(writer.to_bytes())
    assert [code.read(reader) for _ in symbols] == list(symbols)
    truncated = BitReader(writer.to_bytes()[:3])
    with pytest.raises(BitstreamError, match="truncated"):
        for _ in symbols:
            code.read(truncated)


def test_prefix_code_refuses_impossible_lengths_and_unmatched_bits():
    with pytest.raises(HopcodecError, match="Kraft"):
        PrefixCode(np.array([1, 1, 2]))
    with pytest.raises(HopcodecError, match="lengths must lie"):
        PrefixCode(np.array([0, 1]))
    incomplete = PrefixCode(np.array([2, 2, 2]))  # '11' starts no codeword
    with pytest.raises(BitstreamError, match="no codeword"):
        incomplete.read(BitReader(b"\xc0"))


def test_the_tiered_modes_are_the_two_low_modes():
    """The tests below run over `TIERED_MODES`: they must not shrink unnoticed."""
    assert TIERED_MODES == ("hop-1200", "hop-1600")


@needs_release
@pytest.mark.parametrize("name", TIERED_MODES)
def test_the_tiered_modes_carry_the_released_codes(name):
    quantizer = get_mode(name).quantizer
    assert isinstance(quantizer, TieredQuantizer)
    assert quantizer.codes is not None, "models/released/codebooks.npz lacks the tier codes"
    assert quantizer.tier_names == ((), ("s1",), ("j12",), ("j12", "s3"))
    assert quantizer.min_bits <= 3 and quantizer.max_bits > 30


@needs_release
@pytest.mark.parametrize("name", TIERED_MODES)
def test_tiered_decoder_mirrors_its_encoder_at_the_modes_rate(speech, name):
    """The released codes on a clip of an unseen speaker: the packets decode to exactly the
    encoder's frames, at no more than the mode's rate, with every tier in use."""
    mode = get_mode(name)
    assert mode.quantizer.counts is None  # the released modes count nothing
    packets = encode_audio(speech, name, frames_per_packet=20)
    decoded, _ = decode_features(packets)
    frames = len(analyze_signal(speech))
    bits = sum(8 * len(parse_packet(p).payload) for p in packets) / frames
    target = mode.quantizer.allocation.target_bits
    assert target - 3.0 < bits < target + 0.5  # payload bytes: each packet pads its last byte
    mirror = TieredQuantizer(mode.quantizer.allocation, mode.quantizer.codebooks,
                             mode.quantizer.predictor, mode.quantizer.codes)
    mirror.counts = mirror.new_counts()
    state = mirror.new_state()
    expected = []
    for n, frame in enumerate(analyze_signal(speech)[:100]):
        if n % 20 == 0:
            mirror.start_packet(state)  # the prefix-code context starts afresh with each packet
        expected.append(mirror.encode(frame, BitWriter(), state))
    np.testing.assert_array_equal(decoded[:100], np.stack(expected))
    assert np.all(mirror.counts.tiers > 0)  # every tier in use


@needs_release
def test_tiered_decoder_refuses_a_header_whose_pitch_contradicts_its_voicing():
    quantizer = get_mode("hop-1600").quantizer
    state = quantizer.new_state()
    unvoiced_with_pitch = 1 * quantizer.contexts + quantizer._pair(0, 3)  # voicing 0: unvoiced
    writer = BitWriter()
    quantizer.codes.header[state.context].write(writer, unvoiced_with_pitch)
    writer.write(0, 32)
    with pytest.raises(BitstreamError, match="does not match the frame's voicing"):
        quantizer.read_frame(BitReader(writer.to_bytes()), state)


@needs_release
def test_fitting_codes_on_speech_buys_larger_tiers_at_the_same_rate(speech):
    """What `models.quantizer.tiers` does, on one clip: with codes fitted to the fixed-width
    pass's counts the encoder holds the same rate and spends the bits saved on more frames of
    the largest tier ('j12' + 's3')."""
    mode = get_mode("hop-1600")
    fixed, fixed_bits = count_fields(mode, None, [speech])
    assert fixed.header.sum() == fixed.tiers.sum() > 300
    coded, coded_bits = count_fields(mode, fitted_codes(fixed), [speech])
    assert abs(coded_bits - fixed_bits) < 0.5
    assert coded.tiers[3] > 1.2 * fixed.tiers[3]
    quantizer = TieredQuantizer(mode.quantizer.allocation, mode.quantizer.codebooks,
                                mode.quantizer.predictor, None)
    assert quantizer.max_bits == 3 + 3 + 5 + 18  # tier, voicing, pitch, onset pitch, j12 + s3


@needs_release
@pytest.mark.parametrize("name", TIERED_MODES)
def test_tiered_bucket_bounds_the_bits_of_every_reset_interval(speech, name):
    """From each reset the bucket starts at RESET_CREDIT and may not run behind, so no
    interval between resets spends more than its frames' target plus that credit; the credit
    is spent at once (the first frames after a reset may take more than the target)."""
    quantizer = get_mode(name).quantizer
    target = quantizer.allocation.target_bits
    frames = analyze_signal(speech)
    bits = []
    writer = BitWriter()
    for n, frame in enumerate(frames):
        if n % RESET_INTERVAL == 0:
            state = quantizer.new_state()
            assert state.credit == RESET_CREDIT
        quantizer.start_packet(state)
        before = writer.bit_count
        quantizer.encode(frame, writer, state)
        bits.append(writer.bit_count - before)
    intervals = [bits[n:n + RESET_INTERVAL] for n in range(0, len(bits), RESET_INTERVAL)]
    assert all(sum(i) <= len(i) * target + RESET_CREDIT for i in intervals)
    assert max(i[0] for i in intervals) > target


@needs_release
def test_error_feedback_makes_hop_1600s_coding_error_change_slowly(speech):
    """hop-1600's search set to repeat half the last frame's error in steady frames
    (`Allocation.error_feedback`, an encoder option hop-1600 uses since decoder version 13;
    measured in models/README.md): on real speech the coded envelope's error then changes less
    from frame to frame, relative to its size, than the nearest-codeword search leaves it (the
    decoder knows nothing of it: `test_tiered_decoder_mirrors_its_encoder_at_the_modes_rate`), at
    the same rate, in the steady frames where it acts."""
    mode = get_mode("hop-1600")
    allocation = replace(mode.quantizer.allocation, error_feedback_change=0.3)

    def coded(feedback: float) -> tuple[float, float]:
        quantizer = TieredQuantizer(replace(allocation, error_feedback=feedback),
                                    mode.quantizer.codebooks, mode.quantizer.predictor,
                                    mode.quantizer.codes)
        frames = analyze_signal(speech)
        state, writer, decoded = quantizer.new_state(), BitWriter(), []
        for frame in frames:
            quantizer.start_packet(state)
            decoded.append(quantizer.encode(frame, writer, state))
        error = (frames - np.stack(decoded))[:, :NB_BANDS]
        change = np.sqrt(np.mean(np.diff(frames[:, :NB_BANDS], axis=0) ** 2, axis=1))
        steady = change < allocation.error_feedback_change  # where the feedback acts
        assert steady.sum() > 50
        roughness = float(np.mean(np.diff(error, axis=0)[steady] ** 2)
                          / np.mean(error[1:][steady] ** 2))
        return roughness, writer.bit_count / len(frames)

    plain_roughness, plain_bits = coded(0.0)
    roughness, bits = coded(0.5)
    assert roughness < 0.9 * plain_roughness
    assert abs(bits - plain_bits) < 1.0
