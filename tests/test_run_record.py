"""The run record the enhancer training commands keep: curve history, log lines, running loss."""

import json

import pytest

from models.run_record import RunRecord


def test_the_record_keeps_the_curve_and_logs_each_validation(tmp_path):
    history = {"step": [], "train": [], "valid_step": [], "valid": []}
    record = RunRecord(tmp_path, history, steps=50, step=0, description="test")
    for step in range(1, 51):
        record.trained(step, 1.0 if step == 1 else 0.0)
    assert history["step"] == [25, 50]
    assert record.running == pytest.approx(0.98**49)  # the first loss, decayed 49 times
    record.validated(50, 0.5, train=record.running, valid=0.5, extra=3.0)
    record.close()
    assert history["valid_step"] == [50] and history["valid"] == [0.5]
    line = json.loads((tmp_path / "train.log").read_text())
    assert line["step"] == 50 and line["valid"] == 0.5 and line["extra"] == 3.0
    assert set(line) == {"step", "train", "valid", "extra", "elapsed_s"}
