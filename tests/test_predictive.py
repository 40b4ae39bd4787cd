"""The trained predictive quantizer: exact mirroring, bitrates, resets, loss, ONNX parity."""

import numpy as np
import pytest

from streaming_core.analysis import analyze_signal
from streaming_core.bitpack import BitReader, BitWriter
from streaming_core.bitstream import parse_packet
from streaming_core.codec import decode_features, encode_audio
from streaming_core.constants import NB_BANDS
from streaming_core.encoder import StreamEncoder
from streaming_core.loss import GilbertElliott, RandomLoss, drop_packets
from streaming_core.modes import RELEASED, get_mode, predictive_modes
from streaming_core.predictive import PredictiveQuantizer

MODES = [m.name for m in predictive_modes()]


def coded_bits(quantizer: PredictiveQuantizer, frames: np.ndarray) -> bytes:
    """The bits `quantizer` writes for `frames`, from a fresh state."""
    writer, state = BitWriter(), quantizer.new_state()
    for frame in frames:
        quantizer.encode(frame, writer, state)
    return writer.to_bytes()


def test_released_predictor_is_installed():
    assert len(MODES) >= 4, f"trained predictor missing from {RELEASED}"


@pytest.mark.parametrize("name", MODES)
def test_decoder_mirrors_encoder_exactly(speech, name):
    mode = get_mode(name)
    quantizer = mode.quantizer
    state = quantizer.new_state()
    features = analyze_signal(speech)
    reconstructed = []
    for frame in features[:100]:
        quantizer.start_packet(state)  # one frame per packet, as encode_audio below
        reconstructed.append(quantizer.encode(frame, BitWriter(), state))
    decoded, decoder = decode_features(encode_audio(speech[:16000], mode))
    np.testing.assert_array_equal(decoded[:100], np.stack(reconstructed))
    assert decoder.state.frames_concealed == 0


@pytest.mark.parametrize("name", MODES)
def test_measured_bitrate_matches_nominal(speech_clip, name):
    mode = get_mode(name)
    packets = encode_audio(speech_clip, mode, frames_per_packet=20)
    payload_bits = 8 * sum(len(parse_packet(p).payload) for p in packets)
    measured = payload_bits / (sum(parse_packet(p).frame_count for p in packets) * 0.01)
    assert measured == pytest.approx(mode.bitrate_bps, rel=0.05)


def test_ladder_spans_08_to_32_kbps():
    rates = sorted(get_mode(n).bitrate_bps for n in MODES)
    assert len(rates) >= 4 and rates[0] <= 900 and rates[-1] >= 3000


def test_more_bits_less_distortion(speech):
    reference = analyze_signal(speech)
    errors = []
    for name in MODES:
        decoded, _ = decode_features(encode_audio(speech, name))
        errors.append(np.mean((decoded[: len(reference), :18] - reference[:, :18]) ** 2))
    assert errors == sorted(errors, reverse=True)


def test_stream_resynchronises_after_loss(speech):
    """After losses, the first packet flagged RESET brings back the lossless decode exactly."""
    packets = encode_audio(speech, "hop-1600", frames_per_packet=2)
    clean, _ = decode_features(packets)
    lossy_packets = packets[:1] + drop_packets(packets[1:45], GilbertElliott(0.2, seed=3)) + packets[45:]
    lossy, decoder = decode_features(lossy_packets)
    assert decoder.state.frames_concealed > 0
    assert len(lossy) == len(clean)
    reset_frames = [parse_packet(p).sequence for p in packets if parse_packet(p).reset]
    after = next(f for f in reset_frames if f >= 90)
    assert after <= 100 + 2  # one reset per second of frames
    np.testing.assert_array_equal(lossy[after:], clean[after:])
    assert not np.array_equal(lossy[:after], clean[:after])


def test_late_joiner_is_silent_until_reset(speech):
    packets = encode_audio(speech, "hop-1200", frames_per_packet=1)
    clean, _ = decode_features(packets)
    joined, decoder = decode_features(packets[30:])
    assert decoder.state.frames_unsynced == 70  # frames 30..99 wait for the reset at frame 100
    np.testing.assert_array_equal(joined, clean[100:])


def test_switching_between_predictive_modes_keeps_the_predictor(speech):
    encoder = StreamEncoder("hop-800", frames_per_packet=5)
    packets = encoder.push(speech[:8000])
    encoder.set_mode("hop-3200")
    packets += encoder.push(speech[8000:16000]) + encoder.flush()
    resets = [parse_packet(p).sequence for p in packets if parse_packet(p).reset]
    assert resets == [0, 100]  # the stream start and the periodic reset; not the switch at 50
    decoded, decoder = decode_features(packets)
    assert decoder.state.frames_concealed == 0 and len(decoded) >= 100


def test_loss_channels_hit_their_rates():
    for channel in (RandomLoss(0.1, seed=1), GilbertElliott(0.1, seed=1)):
        lost = np.array([channel.lost() for _ in range(20000)])
        assert lost.mean() == pytest.approx(0.1, abs=0.015)


def test_gilbert_elliott_losses_come_in_bursts():
    def mean_run(channel) -> float:
        lost = np.array([channel.lost() for _ in range(20000)], dtype=int)
        edges = np.diff(np.r_[0, lost, 0])
        return float(np.mean(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)))

    assert mean_run(GilbertElliott(0.1, mean_burst=4, seed=2)) > 1.5 * mean_run(RandomLoss(0.1, seed=2))


def test_onnx_predictor_matches_torch(speech):
    """The released ONNX graph and the released torch weights agree on real speech, hop by hop."""
    torch = pytest.importorskip("torch", reason="parity needs torch: pip install torch==2.13.0")
    from models.quantizer.model import FeaturePredictor, FeaturePredictorStep
    from streaming_core.predictive import CURRENT_PITCH, OnnxPredictor

    saved = torch.load(RELEASED / "predictor.pt", weights_only=False)
    model = FeaturePredictor(**saved["config"])
    model.load_state_dict(saved["model"])
    step = FeaturePredictorStep(model).eval()
    onnx = OnnxPredictor(RELEASED / "predictor.onnx")
    features = analyze_signal(speech)
    state_t = torch.zeros(1, model.hidden)
    state_o = np.zeros((1, model.hidden), np.float32)
    worst = 0.0
    with torch.no_grad():
        for previous, frame in zip(features[:200], features[1:201], strict=True):
            current = frame[None, CURRENT_PITCH]
            expected, state_t = step(torch.from_numpy(previous[None]), torch.from_numpy(current),
                                     state_t)
            got, state_o = onnx(previous[None], current, state_o)
            worst = max(worst, float(np.abs(expected.numpy() - got).max()))
    assert worst < 1e-4


def test_prediction_uses_the_frames_own_pitch_and_voicing(speech):
    """Format 6: the predictor also reads the frame's decoded pitch and voicing; on real speech
    that lowers the prediction error against the same predictor told every frame is unvoiced
    at the previous pitch (which is what the decoder would know without them)."""
    from streaming_core.constants import CORR_INDEX, PERIOD_INDEX
    from streaming_core.predictive import NEUTRAL_FRAME, OnnxPredictor

    predictor = OnnxPredictor(RELEASED / "predictor.onnx")
    features = analyze_signal(speech)[:300]
    previous = np.vstack([NEUTRAL_FRAME, features[:-1]]).astype(np.float32)
    told = features[:, [PERIOD_INDEX, CORR_INDEX]].astype(np.float32)
    untold = np.stack([previous[:, PERIOD_INDEX], np.full(len(features), 0.1)], axis=1)
    errors = {}
    for name, current in (("told", told), ("untold", untold)):
        state = np.zeros((1, predictor.hidden), np.float32)
        error = 0.0
        for t in range(len(features)):
            prediction, state = predictor(previous[t : t + 1], current[t : t + 1], state)
            error += float(((prediction[0] - features[t, :NB_BANDS]) ** 2).sum())
        errors[name] = error
    assert errors["told"] < 0.9 * errors["untold"]


@pytest.mark.parametrize("name", ["hop-800", "hop-2400"])  # hop-1200, hop-1600: test_tiered.py
def test_unvoiced_frames_carry_no_pitch_bits_and_onsets_code_pitch_absolutely(speech, name):
    """Frame sizes follow the frame's own voicing: unvoiced frames skip the pitch field; a voicing
    onset takes the escape code plus an absolute pitch, and lands near the true pitch."""
    from streaming_core.constants import CORR_INDEX, PERIOD_INDEX
    from streaming_core.predictive import VOICED

    quantizer = get_mode(name).quantizer
    allocation = quantizer.allocation
    state = quantizer.new_state()
    seen = {"unvoiced": 0, "onset": 0}
    for frame in analyze_signal(speech):
        was_voiced = state.previous[CORR_INDEX] >= VOICED
        writer = BitWriter()
        decoded = quantizer.encode(frame, writer, state)
        transient = BitReader(writer.to_bytes()).read(1)  # the flag is the frame's first bit
        vq = quantizer.transient_vq_bits if transient else quantizer.steady_vq_bits
        bits = writer.bit_count - 1 - allocation.voicing_bits - vq
        if decoded[CORR_INDEX] < VOICED:
            assert bits == 0
            seen["unvoiced"] += 1
        elif not was_voiced:
            assert bits in (allocation.pitch_bits, allocation.pitch_bits + allocation.onset_pitch_bits)
            if bits > allocation.pitch_bits:
                seen["onset"] += 1
                assert abs(np.log(decoded[PERIOD_INDEX] / frame[PERIOD_INDEX])) < 0.04  # < 70 cents
    assert seen["unvoiced"] > 10 and seen["onset"] > 2


def test_beam_search_finds_the_best_stage_combination(speech):
    """On the residuals real speech leaves, a beam as wide as a codebook is the exhaustive
    two-stage search, and a narrower beam is never worse than the greedy one."""
    from streaming_core.predictive import rvq_encode

    quantizer = get_mode("hop-1200").quantizer
    books = quantizer.transient_books  # s1, s2
    features = analyze_signal(speech)[::4, :NB_BANDS].astype(np.float32)
    residual = features - features.mean(axis=0)  # spread like the predictor's residuals
    errors = {}
    for beam in (1, 8, len(books[0])):
        chosen = rvq_encode(residual, books, beam)
        quantized = books[0][chosen[:, 0]] + books[1][chosen[:, 1]]
        errors[beam] = ((residual - quantized) ** 2).sum(-1)
    pairs = books[0][:, None, :] + books[1][None, :, :]  # every combination of the two stages
    exhaustive = ((residual[:, None, None, :] - pairs[None]) ** 2).sum(-1).reshape(len(residual), -1)
    np.testing.assert_allclose(errors[len(books[0])], exhaustive.min(axis=1), rtol=1e-4, atol=1e-5)
    assert np.all(errors[8] <= errors[1] + 1e-5)
    assert errors[8].mean() < errors[1].mean()


def test_weighted_search_minimises_the_weighted_band_error(speech):
    """Equal band weights leave the search as it is (the DCT is orthonormal); loudness weights
    make the exhaustive search take the combination with the least weighted band error."""
    from streaming_core.predictive import loudness_weights, rvq_encode
    from streaming_core.spectrum import log_energies_from_cepstrum

    books = get_mode("hop-1200").quantizer.transient_books  # s1, s2
    features = analyze_signal(speech)[::4, :NB_BANDS].astype(np.float32)
    residual = features - features.mean(axis=0)
    plain = rvq_encode(residual, books, 8)
    uniform = rvq_encode(residual, books, 8, np.ones_like(residual))
    assert (plain == uniform).mean() > 0.99  # float rounding may flip a near tie
    loudness = log_energies_from_cepstrum(features)
    weights = 10.0 ** (0.15 * (loudness - loudness.max(axis=1, keepdims=True)))
    np.testing.assert_allclose(loudness_weights(features, 0.15), weights, rtol=1e-6)
    chosen = rvq_encode(residual, books, len(books[0]), weights)
    pairs = books[0][:, None, :] + books[1][None, :, :]
    band_errors = log_energies_from_cepstrum(residual[:, None, None, :] - pairs[None])
    weighted = (weights[:, None, None, :] * band_errors**2).sum(-1).reshape(len(residual), -1)
    assert np.all(chosen[:, 0] * len(books[1]) + chosen[:, 1] == weighted.argmin(axis=1))
    unweighted = rvq_encode(residual, books, len(books[0]))
    assert (chosen != unweighted).any(axis=1).mean() > 0.1  # the weights do change the choice


def test_high_band_weight_scales_the_search_weights_above_5_khz(speech):
    """The search weights are the loudness weights times 1 below 5 kHz and the high-band weight
    above; with a weight of 0 the exhaustive search takes the combination with the least error
    in the bands up to 4.8 kHz, whatever it leaves above."""
    from streaming_core.constants import BAND_EDGES_200HZ
    from streaming_core.predictive import loudness_weights, rvq_encode, search_weights
    from streaming_core.spectrum import log_energies_from_cepstrum

    features = analyze_signal(speech)[::4, :NB_BANDS].astype(np.float32)
    high = np.array(BAND_EDGES_200HZ) * 200 > 5000
    assert high.sum() == 3  # the bands centred at 5.6, 6.8 and 8 kHz
    tilted = search_weights(features, 0.15, 0.3)
    np.testing.assert_allclose(tilted[:, ~high], loudness_weights(features, 0.15)[:, ~high])
    np.testing.assert_allclose(tilted[:, high], 0.3 * loudness_weights(features, 0.15)[:, high])

    books = get_mode("hop-1200").quantizer.transient_books  # s1, s2
    residual = features - features.mean(axis=0)
    weights = search_weights(features, 0.15, 0.0)
    chosen = rvq_encode(residual, books, len(books[0]), weights)
    pairs = books[0][:, None, :] + books[1][None, :, :]
    band_errors = log_energies_from_cepstrum(residual[:, None, None, :] - pairs[None])
    low_error = (weights[:, None, None, ~high] * band_errors[..., ~high] ** 2).sum(-1)
    assert np.all(chosen[:, 0] * len(books[1]) + chosen[:, 1]
                  == low_error.reshape(len(residual), -1).argmin(axis=1))
    assert (chosen != rvq_encode(residual, books, len(books[0]), search_weights(features, 0.15, 1.0))
            ).any(axis=1).mean() > 0.05  # the high bands did count before


@pytest.mark.parametrize("mode_name", ["hop-800", "hop-1600"])
def test_the_modes_search_with_their_high_band_weight(speech, mode_name):
    """hop-800 codes as a search that weighs every band alike; the other modes code differently
    from it (their high bands count less)."""
    from streaming_core.predictive import high_band_weight_of

    released = get_mode(mode_name).quantizer
    frames = analyze_signal(speech)
    untilted = PredictiveQuantizer(released.allocation, released.codebooks, released.predictor,
                                   released.threshold, high_band_weight=1.0)
    assert released.high_band_weight == high_band_weight_of(mode_name)
    assert ((coded_bits(released, frames) == coded_bits(untilted, frames))
            == (mode_name == "hop-800"))


@pytest.mark.parametrize("mode_name", ["hop-800", "hop-1600"])
def test_a_quantizer_built_from_a_ladder_entry_takes_that_modes_high_band_weight(mode_name):
    """Built by hand from a ladder allocation, a quantizer searches as the released mode does
    (hop-800 weighs every band alike); an explicit weight overrides the allocation's."""
    from streaming_core.predictive import HIGH_BAND_SEARCH_WEIGHT, LADDER

    released = get_mode(mode_name).quantizer
    allocation = LADDER[mode_name][1]
    by_hand = PredictiveQuantizer(allocation, released.codebooks, released.predictor,
                                  released.threshold)
    assert by_hand.high_band_weight == released.high_band_weight
    assert by_hand.high_band_weight == (1.0 if mode_name == "hop-800" else HIGH_BAND_SEARCH_WEIGHT)
    overridden = PredictiveQuantizer(allocation, released.codebooks, released.predictor,
                                     released.threshold, high_band_weight=0.5)
    assert overridden.high_band_weight == 0.5


def test_codebook_refinement_lowers_the_weighted_error_of_the_searchs_paths(speech):
    """`models.quantizer.refine`: recording the search while real speech is coded sees every
    frame's residual, stages and codewords; moving the codewords to their weighted centroids
    lowers the weighted error of those same paths, and the released books are left alone."""
    pytest.importorskip("tqdm", reason="the train extra is not installed")
    from models.quantizer.refine import TO_BANDS, SearchRecord, recording_search, refine_stages
    from streaming_core import predictive

    quantizer = get_mode("hop-2400").quantizer  # s1 + s2 in steady frames, + s3 in transient ones
    released = {name: book.copy() for name, book in quantizer.codebooks.items()}
    search = predictive.rvq_encode
    record = SearchRecord()
    state = quantizer.new_state()
    with recording_search(record):
        for frame in analyze_signal(speech):
            quantizer.encode(frame, BitWriter(), state)
    assert predictive.rvq_encode is search  # the search is itself again after the block
    assert len(record.residuals) == len(analyze_signal(speech))
    allocation = quantizer.allocation
    assert set(record.stages) <= {allocation.steady_stages, allocation.transient_stages}

    def weighted_error(books: dict) -> float:
        total = 0.0
        for residual, stages, indices, weights in zip(record.residuals, record.stages,
                                                      record.indices, record.weights, strict=True):
            quantized = sum(books[s][indices[j]] for j, s in enumerate(stages))
            total += float(weights @ (((residual - quantized) @ TO_BANDS) ** 2))
        return total

    books = {name: book.copy() for name, book in quantizer.codebooks.items()}
    before = weighted_error(books)
    refine_stages(books, record, min_uses=3)  # one short clip: few frames per codeword
    # Each codeword moves to the weighted centroid of its frames' targets, which can only lower
    # their error, given the paths; the stages this mode does not use stay
    # (a codeword with fewer than `min_uses` frames stays, so a rarely used stage may not move)
    used = {name for stages in record.stages for name in stages}
    moved = {name for name in books if not np.array_equal(books[name], quantizer.codebooks[name])}
    assert {"s1", "s2"} <= moved <= used
    assert weighted_error(books) < before
    for name, book in quantizer.codebooks.items():
        np.testing.assert_array_equal(book, released[name])


def test_refine_refuses_a_release_folder_with_another_predictor(tmp_path, capsys):
    """The refine command codes with the installed predictor; codebooks for another one would be
    fitted to the wrong residuals, so such a `--release` folder is refused by name."""
    pytest.importorskip("tqdm", reason="the train extra is not installed")
    from models.quantizer.refine import main

    (tmp_path / "predictor.onnx").write_bytes(b"another predictor")
    with pytest.raises(SystemExit):
        main(["--cache", str(tmp_path / "no-cache"), "--release", str(tmp_path),
              "--out", str(tmp_path / "out")])
    assert "is not the installed predictor" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_installed_codebooks_are_what_every_mode_codes_with(speech):
    """`install_codebooks` (the fitting commands' `--release` books): the live modes, tiered
    hop-1600 included, then code exactly as a quantizer built on those books; a stored file
    missing a book is refused by name; reinstalling the released books restores the bits."""
    pytest.importorskip("tqdm", reason="the train extra is not installed")
    from models.quantizer.refine import install_codebooks
    from streaming_core.tiered import TieredQuantizer

    live = get_mode("hop-1600").quantizer
    released = {name: book.copy() for name, book in live.codebooks.items()}
    frames = analyze_signal(speech)[:200]
    before = coded_bits(live, frames)
    rng = np.random.default_rng(5)
    other = {name: book + 0.3 * rng.standard_normal(book.shape).astype(book.dtype)
             for name, book in released.items()}
    try:
        with pytest.raises(ValueError, match="lack j12"):
            install_codebooks({n: b for n, b in other.items() if n != "j12"})
        install_codebooks(other)
        fresh = TieredQuantizer(live.allocation, other, live.predictor, live.codes)
        assert coded_bits(live, frames) == coded_bits(fresh, frames) != before
    finally:
        install_codebooks(released)
    assert coded_bits(live, frames) == before


def test_the_search_follows_codebooks_changed_in_place(speech):
    """The weighted search keeps the codebooks as band energies too; after the books change in
    place (as `models.quantizer.refine` changes them between rounds), `codebooks_changed` makes
    the search choose as a quantizer built on the new books does. Without it the search chose
    by the old books' band energies and added the new books' codewords."""
    mode = get_mode("hop-1600")
    released = mode.quantizer
    rng = np.random.default_rng(3)
    books = {name: book.copy() for name, book in released.codebooks.items()}
    quantizer = PredictiveQuantizer(released.allocation, books, released.predictor,
                                    released.threshold)
    frames = analyze_signal(speech)

    before = coded_bits(quantizer, frames)
    for book in books.values():
        book += 0.3 * rng.standard_normal(book.shape).astype(book.dtype)
    stale = coded_bits(quantizer, frames)
    quantizer.codebooks_changed()
    fresh = PredictiveQuantizer(released.allocation, books, released.predictor, released.threshold)
    assert coded_bits(quantizer, frames) == coded_bits(fresh, frames)
    assert coded_bits(quantizer, frames) != stale
    assert before != coded_bits(fresh, frames)


def test_a_predictor_graph_of_the_older_layout_is_refused(tmp_path):
    """A format-5 predictor graph (inputs previous and gru_state, no `current`) is refused with
    a message that names the inputs, not run with the wrong meaning."""
    onnx = pytest.importorskip("onnx", reason="building a graph needs onnx (the train extra)")
    from onnx import TensorProto, helper

    from streaming_core.errors import HopcodecError
    from streaming_core.predictive import OnnxPredictor

    graph = helper.make_graph(
        [helper.make_node("Slice", ["previous", "starts", "ends", "axes"], ["prediction"]),
         helper.make_node("Identity", ["gru_state"], ["gru_state_out"])],
        "old_predictor",
        [helper.make_tensor_value_info("previous", TensorProto.FLOAT, [None, 20]),
         helper.make_tensor_value_info("gru_state", TensorProto.FLOAT, [None, 128])],
        [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None, NB_BANDS]),
         helper.make_tensor_value_info("gru_state_out", TensorProto.FLOAT, [None, 128])],
        [helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
         helper.make_tensor("ends", TensorProto.INT64, [1], [NB_BANDS]),
         helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    path = tmp_path / "predictor.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(HopcodecError, match="previous, gru_state.*needs previous, current, gru_state"):
        OnnxPredictor(path)
