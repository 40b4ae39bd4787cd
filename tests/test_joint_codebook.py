"""hop-1600's joint 12-bit codebook (bitstream format 8) and the command that trains it."""

import numpy as np
import pytest

from streaming_core.analysis import analyze_signal
from streaming_core.constants import NB_BANDS
from streaming_core.modes import RELEASED, get_mode
from streaming_core.predictive import (
    JOINT_BOOK,
    JOINT_INIT_STAGES,
    JOINT_MODES,
    LADDER,
    rvq_encode,
    search_weights,
)
from streaming_core.spectrum import log_energies_from_cepstrum

pytest.importorskip("tqdm", reason="the train extra is not installed")
from models.quantizer.joint import joint_frames, lloyd_step, main, pair_sums  # noqa: E402


def test_the_joint_book_is_used_by_the_joint_modes_transient_frames_only():
    assert JOINT_MODES == ("hop-1600",)
    for _, allocation in LADDER.values():
        assert JOINT_BOOK not in allocation.steady_stages
        assert JOINT_BOOK not in allocation.transient_stages or allocation.transient_stages == (
            JOINT_BOOK,)  # the whole 12-bit path, never a stage among others
    quantizer = get_mode("hop-1600").quantizer
    assert quantizer.transient_index_bits == [12] and quantizer.steady_index_bits == [6]
    assert quantizer.codebooks[JOINT_BOOK].shape == (4096, NB_BANDS)


def test_the_sums_of_two_stages_are_the_two_stage_book_searched_exhaustively(speech):
    """Started as `pair_sums`, the joint book codes every frame as the exhaustive two-stage
    search would: the same weighted error, index i*64 + j for stages (i, j)."""
    books = [get_mode("hop-1200").quantizer.codebooks[name] for name in JOINT_INIT_STAGES]
    joint = pair_sums(*books)
    assert joint.shape == (64 * 64, NB_BANDS)
    np.testing.assert_array_equal(joint[5 * 64 + 17], books[0][5] + books[1][17])

    features = analyze_signal(speech)[::4, :NB_BANDS].astype(np.float32)
    residual = features - features.mean(axis=0)
    weights = search_weights(features)
    two_stage = rvq_encode(residual, books, beam=64, weights=weights)
    one = rvq_encode(residual, [joint], weights=weights)[:, 0]

    def weighted(quantized: np.ndarray) -> np.ndarray:
        return (weights * log_energies_from_cepstrum(residual - quantized) ** 2).sum(-1)

    np.testing.assert_allclose(
        weighted(joint[one]), weighted(books[0][two_stage[:, 0]] + books[1][two_stage[:, 1]]),
        rtol=1e-4, atol=1e-6)


def test_a_lloyd_step_lowers_the_weighted_error_of_real_speech_frames(speech):
    """The frames hop-1600 codes with the joint book, recorded closed loop: a Lloyd step moves
    the codewords they use to their weighted means (lower error, given the assignment) and
    leaves the others where they were."""
    frames = analyze_signal(speech)
    targets, weights = joint_frames(frames[None], "test")
    assert len(targets) > 0.5 * len(frames)  # most frames of speech are transient frames
    book = get_mode("hop-1600").quantizer.codebooks[JOINT_BOOK]
    bands = log_energies_from_cepstrum(book.astype(np.float64))

    def error(candidate: np.ndarray) -> float:
        distances = (weights[:, None] * (targets[:, None] - candidate[None]) ** 2).sum(-1)
        return float(distances.min(axis=1).mean())

    new, before = lloyd_step(targets, weights, bands, min_uses=1)
    assert before == pytest.approx(error(bands), rel=1e-4)
    assert error(new) < before
    unused = (new == bands).all(axis=1)
    assert 0 < unused.sum() < len(bands)  # one clip uses some codewords, not all


def test_resume_needs_a_joint_book_to_go_on_from(tmp_path, capsys):
    stored = dict(np.load(RELEASED / "codebooks.npz"))
    del stored[JOINT_BOOK]
    np.savez(tmp_path / "codebooks.npz", **stored)
    with pytest.raises(SystemExit):
        main(["--cache", str(tmp_path / "no-cache"), "--release", str(tmp_path),
              "--out", str(tmp_path / "out"), "--resume"])
    assert f"has no '{JOINT_BOOK}'" in capsys.readouterr().err


def test_a_release_folder_with_another_predictor_is_refused(tmp_path, capsys):
    """The joint book is fitted to the residuals of the installed predictor only."""
    (tmp_path / "predictor.onnx").write_bytes(b"another predictor")
    with pytest.raises(SystemExit):
        main(["--cache", str(tmp_path / "no-cache"), "--release", str(tmp_path),
              "--out", str(tmp_path / "out")])
    assert "is not the installed predictor" in capsys.readouterr().err


def test_a_release_without_the_joint_book_is_refused_by_name(tmp_path, monkeypatch):
    """Codebooks of format 7 (no 'j12') cannot code format 8: the ladder is not built from them,
    and the error names the missing book."""
    import shutil

    from streaming_core import modes
    from streaming_core.errors import HopcodecError

    shutil.copy(RELEASED / "predictor.onnx", tmp_path / "predictor.onnx")
    stored = dict(np.load(RELEASED / "codebooks.npz"))
    del stored[JOINT_BOOK]
    np.savez(tmp_path / "codebooks.npz", **stored)
    monkeypatch.setattr(modes, "RELEASED", tmp_path)
    with pytest.raises(HopcodecError, match=f"lacks the codebooks {JOINT_BOOK} "):
        modes.predictive_modes.__wrapped__()
