"""models.quantizer.field_entropy: the fields a frame writes, entropies and Huffman lengths."""

from collections import Counter

import pytest

from models.quantizer.field_entropy import (
    conditional_entropy,
    entropy,
    field_reports,
    huffman_bits,
    huffman_lengths,
    joint_header_report,
    markdown,
    record_frames,
)
from streaming_core.modes import get_mode, predictive_modes
from streaming_core.predictive import VOICED

pytestmark = pytest.mark.skipif(not predictive_modes(), reason="released predictor not installed")


def test_huffman_lengths_of_a_dyadic_source_equal_its_information():
    counts = Counter({"a": 8, "b": 4, "c": 2, "d": 1, "e": 1})
    lengths = huffman_lengths(counts)
    assert lengths == {"a": 1, "b": 2, "c": 3, "d": 4, "e": 4}
    assert huffman_bits(counts) == pytest.approx(entropy(counts))
    assert sum(2.0 ** -n for n in lengths.values()) == pytest.approx(1.0)  # a complete code


def test_conditional_entropy_is_zero_for_a_symbol_its_context_decides():
    pairs = Counter({(0, "x"): 5, (1, "y"): 7})
    assert conditional_entropy(pairs) == pytest.approx(0.0, abs=1e-12)
    independent = Counter({(c, s): 3 for c in (0, 1) for s in "xy"})
    assert conditional_entropy(independent) == pytest.approx(1.0)


def test_recorded_fields_account_for_every_bit_the_frames_write(speech):
    """The parser reads each frame's fields in the encoder's order: the recorded frame sizes are
    the sizes written, the stage count follows the flag, pitch fields only in voiced frames."""
    from streaming_core.bitstream import parse_packet
    from streaming_core.codec import encode_audio

    quantizer = get_mode("hop-2400").quantizer
    frames = record_frames([speech], "hop-2400")
    assert len(frames) == -(-len(speech) // 160)  # the last hop zero-padded
    for frame in frames:
        stages = len(quantizer.transient_books if frame.transient else quantizer.steady_books)
        assert len(frame.indices) == stages
        assert (frame.pitch is None) == (quantizer.voicing[frame.voicing] < VOICED)
        assert (frame.absolute_pitch is not None) == (frame.pitch == len(quantizer.pitch_deltas))
    # the encoder writes the same frames: its packets hold the recorded bits, byte-padded
    packets = [parse_packet(p) for p in encode_audio(speech, "hop-2400", frames_per_packet=20)]
    sizes = [f.bits for f in frames]
    for number, packet in enumerate(packets):
        bits = sum(sizes[20 * number : 20 * number + packet.frame_count])
        assert len(packet.payload) == -(-bits // 8)


def test_report_rows_are_bounded_by_their_raw_bits(speech):
    quantizer = get_mode("hop-2400").quantizer
    frames = record_frames([speech], "hop-2400")
    rows = field_reports(frames, quantizer)
    joint = joint_header_report(frames, quantizer)
    names = [row.name for row in rows]
    assert names[:3] == ["transient flag", "voicing", "pitch code"]
    assert {"VQ index (s1)", "VQ index (s2)"} <= set(names)  # every stage apart
    bits = {row.name: row.raw_bits for row in rows}
    assert bits["VQ index (s1)"] == 6 and bits["VQ index (s2)"] == 6
    for row in [*rows, joint]:  # the raw fields are a prefix code too: no better than Huffman's
        assert 0 <= row.entropy - 1e-9 <= row.huffman <= row.raw_bits + 1e-9
        assert row.huffman < row.entropy + 1
        if row.conditional_entropy is not None:
            assert row.conditional_entropy <= row.entropy + 1e-9
    assert joint.conditional_huffman < joint.raw_bits  # the header fields are predictable
    text = markdown(rows, joint, frames, "hop-2400")
    assert "bits per frame as coded" in text and "one symbol" in text


def test_scalar_and_prefix_coded_modes_are_refused(speech):
    with pytest.raises(ValueError, match="not a predictive mode"):
        record_frames([speech[:1600]], "scalar-2400")
    with pytest.raises(ValueError, match="prefix-coded fields"):
        record_frames([speech[:1600]], "hop-1600")


def test_contexts_start_afresh_at_every_clip(speech):
    """A clip twice gives the same conditional figures as once: the second copy's first frame
    is counted in the coder's initial context, not after the first copy's last frame."""
    quantizer = get_mode("hop-2400").quantizer
    voiced = [i for i, f in enumerate(record_frames([speech], "hop-2400")) if f.pitch is not None]
    clip = speech[: 160 * (voiced[len(voiced) // 2] + 1)]  # ends inside voiced speech
    once = record_frames([clip], "hop-2400")
    assert once[-1].voicing != 0  # so a context carried across the clips would differ
    twice = record_frames([clip, clip], "hop-2400")
    assert [f.starts_clip for f in twice] == [f.starts_clip for f in once] * 2
    for single, double in zip(field_reports(once, quantizer), field_reports(twice, quantizer),
                              strict=True):
        assert double.uses == 2 * single.uses
        if single.conditional_entropy is not None:
            assert double.conditional_entropy == pytest.approx(single.conditional_entropy,
                                                               abs=1e-12)
    assert joint_header_report(twice, quantizer).conditional_entropy == pytest.approx(
        joint_header_report(once, quantizer).conditional_entropy, abs=1e-12)
