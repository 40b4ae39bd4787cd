"""Export a trained HopVocoder checkpoint to the per-hop ONNX graph and its metadata.

    python -m models.vocoder.export runs/vocoder/checkpoint.pt models/released/hopvocoder.onnx

The graph (see `HopVocoderStep`) takes one hop's features, the hop's noise and every state
tensor, and returns the excitation and the new states; `streaming_core.neural_synth` runs it.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from models.vocoder.model import HopVocoder, HopVocoderStep
from streaming_core.constants import HOP, NB_FEATURES

INPUT_NAMES = ["features", "noise", "gru_state", "phase"]
OUTPUT_NAMES = ["excitation", "gru_state_out", "phase_out"]


def load_checkpoint(path: Path) -> HopVocoder:
    """The model saved in a training checkpoint (constructor arguments travel with it)."""
    saved = torch.load(path, weights_only=False, map_location="cpu")
    model = HopVocoder(**saved["config"])
    model.load_state_dict(saved["model"])
    return model.eval()


def example_inputs(model: HopVocoder, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Plausible inputs for tracing and parity checks."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, NB_FEATURES, generator=g)
    features[:, 0] = -6.0 + features[:, 0]
    features[:, NB_FEATURES - 2] = 60.0 + 100.0 * torch.rand(batch, generator=g)
    features[:, NB_FEATURES - 1] = torch.rand(batch, generator=g)
    noise = torch.randn(batch, HOP, generator=g)
    state = 0.1 * torch.randn(batch, model.hidden, generator=g)
    return features, noise, state, torch.rand(batch, 1, generator=g) * 6.0


def export(model: HopVocoder, path: Path, version: str, notes: dict | None = None) -> dict:
    """Write the ONNX graph and `<path>.json` metadata; returns the metadata."""
    step = HopVocoderStep(model).eval()
    inputs = example_inputs(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        step, inputs, str(path), input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
        dynamic_axes={name: {0: "streams"} for name in INPUT_NAMES + OUTPUT_NAMES},
        opset_version=17, dynamo=False,
    )
    metadata = {
        "name": "hopvocoder",
        "version": version,
        "parameters": model.parameter_count(),
        "config": model.config,
        "inputs": {"features": [None, NB_FEATURES], "noise": [None, HOP],
                   "gru_state": [None, model.hidden], "phase": [None, 1]},
        "outputs": {"excitation": [None, HOP], "gru_state_out": [None, model.hidden],
                    "phase_out": [None, 1]},
        "parity_max_abs_error": parity_error(step, path),
        **(notes or {}),
    }
    path.with_suffix(".json").write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def parity_error(step: HopVocoderStep, path: Path, hops: int = 20) -> float:
    """Largest |torch - onnxruntime| over a few chained hops of random inputs."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    features, noise, state, phase = example_inputs(step.model, batch=3, seed=1)
    onnx_state, onnx_phase = state.numpy(), phase.numpy()
    worst = 0.0
    with torch.no_grad():
        for hop in range(hops):
            features_hop = features + 0.1 * hop
            expected = step(features_hop, noise, state, phase)
            got = session.run(None, {"features": features_hop.numpy(), "noise": noise.numpy(),
                                     "gru_state": onnx_state, "phase": onnx_phase})
            errors = [float(np.max(np.abs(e.numpy() - g))) for e, g in zip(expected, got, strict=True)]
            worst = max(worst, *errors)
            _, state, phase = expected
            _, onnx_state, onnx_phase = got
    return worst


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--version", default="1")
    args = parser.parse_args(argv)
    metadata = export(load_checkpoint(args.checkpoint), args.output, args.version)
    print(json.dumps(metadata, indent=2))


if __name__ == "__main__":
    main()
