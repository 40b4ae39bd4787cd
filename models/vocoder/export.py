"""Export a trained HopVocoder (and FeatureEnhancer) to the ONNX decoder graph and its metadata.

    python -m models.vocoder.export runs/vocoder/checkpoint.pt models/released/hopvocoder.onnx \
        --enhancer runs/enhancer/checkpoint.pt --version 6

The graph (see `HopDecoderGraph`) takes T hops of features, their noise and every state tensor,
and returns the excitation, the cepstrum for the LPC filter and the new states; T = 1 for a live
stream. `streaming_core.neural_synth` runs it.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from models.vocoder.enhancer import FeatureEnhancer
from models.vocoder.model import HARMONIC_BLOCK, HopDecoderGraph, HopVocoder
from streaming_core.constants import HOP, NB_BANDS, NB_FEATURES

INPUT_NAMES = ["features", "bitrate", "noise", "gru_state", "phase", "enhancer_state"]
OUTPUT_NAMES = ["excitation", "cepstrum", "gru_state_out", "phase_out", "enhancer_state_out"]


def load_checkpoint(path: Path, noise_pulse_depth: float | None = None,
                    voiced_noise_gain: float | None = None) -> HopVocoder:
    """The vocoder saved in a training checkpoint (constructor arguments travel with it);
    `noise_pulse_depth` and `voiced_noise_gain` replace the checkpoint's (run-time choices: no
    weights depend on them)."""
    saved = torch.load(path, weights_only=False, map_location="cpu")
    config = dict(saved["config"])
    if noise_pulse_depth is not None:
        config["noise_pulse_depth"] = noise_pulse_depth
    if voiced_noise_gain is not None:
        config["voiced_noise_gain"] = voiced_noise_gain
    model = HopVocoder(**config)
    model.load_weights(saved["model"])
    return model.eval()


def load_enhancer(path: Path) -> FeatureEnhancer:
    """The enhancer saved in a `train_enhancer` checkpoint."""
    saved = torch.load(path, weights_only=False, map_location="cpu")
    model = FeatureEnhancer(**saved["config"])
    model.load_state_dict(saved["model"])
    return model.eval()


def example_inputs(graph: HopDecoderGraph, batch: int = 1, hops: int = 2,
                   seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Plausible inputs for tracing and parity checks."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, hops, NB_FEATURES, generator=g)
    features[..., 0] = -6.0 + features[..., 0]
    features[..., NB_FEATURES - 2] = 60.0 + 100.0 * torch.rand(batch, hops, generator=g)
    features[..., NB_FEATURES - 1] = torch.rand(batch, hops, generator=g)
    bitrate = 0.8 + 4.0 * torch.rand(batch, hops, 1, generator=g)
    noise = torch.randn(batch, hops, HOP, generator=g)
    state = 0.1 * torch.randn(batch, graph.vocoder.hidden, generator=g)
    enhancer_state = 0.1 * torch.randn(batch, graph.enhancer.hidden, generator=g)
    phase = torch.rand(batch, 1, generator=g, dtype=torch.float64) * 6.0
    return features, bitrate, noise, state, phase, enhancer_state


def flops_per_hop(graph: HopDecoderGraph) -> int:
    """Floating-point operations of one hop of the graph (a multiply-add counts 2), counted
    from the layer sizes: the matrix products, the harmonic sum in blocks, the noise DFTs and
    the noise's pulse envelope."""
    vocoder = graph.vocoder
    conditioning, hidden = vocoder.config["conditioning"], vocoder.hidden
    harmonics, bins = vocoder.harmonics, HOP // 2 + 1
    flops = 2 * (NB_FEATURES * conditioning + conditioning * conditioning)  # conditioning MLP
    flops += 2 * 3 * hidden * (conditioning + hidden)  # GRU
    flops += 2 * (hidden + conditioning) * 2 * NB_BANDS  # band gains
    flops += 2 * harmonics * 4 * NB_BANDS  # harmonic amplitudes: triangle sides, weighted sum
    blocks = HOP // HARMONIC_BLOCK
    flops += 2 * (blocks + HARMONIC_BLOCK) * harmonics  # cosines and sines (counted once each)
    flops += 2 * blocks * harmonics + 2 * 2 * HOP * harmonics  # amplitudes, two block products
    flops += 2 * 2 * HOP * bins * 2 + 2 * NB_BANDS * bins  # noise: DFT, shaping, inverse DFT
    if vocoder.noise_pulse_depth > 0:
        flops += 7 * HOP  # pulse envelope: cosine, exponential, 5 multiplies and adds per sample
    width = graph.enhancer.hidden
    flops += 2 * 3 * width * (NB_FEATURES + 1 + width)  # enhancer GRU
    flops += 2 * (width + NB_FEATURES + 1) * (NB_BANDS - 1)  # its correction of c1..c17
    return flops


def export(graph: HopDecoderGraph, path: Path, version: str, notes: dict | None = None) -> dict:
    """Write the ONNX graph and `<path>.json` metadata; returns the metadata."""
    graph = graph.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    per_stream = {0: "streams"}
    per_hop = {0: "streams", 1: "hops"}
    torch.onnx.export(
        graph, example_inputs(graph), str(path), input_names=INPUT_NAMES,
        output_names=OUTPUT_NAMES,
        dynamic_axes={"features": per_hop, "bitrate": per_hop, "noise": per_hop, "excitation": per_hop,
                      "cepstrum": per_hop, **{name: per_stream for name in (
                          "gru_state", "phase", "enhancer_state", "gru_state_out", "phase_out",
                          "enhancer_state_out")}},
        opset_version=17, dynamo=False,
    )
    vocoder = graph.vocoder
    parameters = sum(p.numel() for p in graph.parameters())
    metadata = {
        "name": "hopvocoder",
        "version": version,
        "parameters": parameters,
        "flops_per_hop": flops_per_hop(graph),
        "config": vocoder.config,
        "inputs": {"features": [None, None, NB_FEATURES], "bitrate": [None, None, 1],
                   "noise": [None, None, HOP],
                   "gru_state": [None, vocoder.hidden], "phase": [None, 1],
                   "enhancer_state": [None, graph.enhancer.hidden]},
        "outputs": {"excitation": [None, None, HOP], "cepstrum": [None, None, NB_BANDS],
                    "gru_state_out": [None, vocoder.hidden], "phase_out": [None, 1],
                    "enhancer_state_out": [None, graph.enhancer.hidden]},
        "dtypes": "float32, but phase and phase_out are float64",
        "parity_max_abs_error": parity_error(graph, path),
        **(notes or {}),
    }
    path.with_suffix(".json").write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def parity_error(graph: HopDecoderGraph, path: Path, hops: int = 20) -> float:
    """Largest |torch - onnxruntime| over chained calls of random inputs (1 and 3 hops each)."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for length in (1, 3):
        inputs = list(example_inputs(graph, batch=3, hops=length, seed=1))
        onnx_states = [t.numpy() for t in inputs[3:]]
        with torch.no_grad():
            for hop in range(hops):
                features = inputs[0] + 0.1 * hop
                expected = graph(features, *inputs[1:])
                got = session.run(None, dict(zip(INPUT_NAMES, [
                    features.numpy(), inputs[1].numpy(), inputs[2].numpy(), *onnx_states],
                    strict=True)))
                errors = [float(np.max(np.abs(e.numpy() - g)))
                          for e, g in zip(expected, got, strict=True)]
                worst = max(worst, *errors)
                inputs[3:] = expected[2:]
                onnx_states = got[2:]
    return worst


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="HopVocoder training checkpoint")
    parser.add_argument("output", type=Path)
    parser.add_argument("--enhancer", type=Path,
                        help="FeatureEnhancer training checkpoint (default: none, an identity)")
    parser.add_argument("--version", default="1")
    parser.add_argument("--noise-pulse-depth", type=float, metavar="D",
                        help="pitch-synchronous modulation of the noise source in voiced frames, "
                        "0..1 (default: the checkpoint's own, 0 if it has none)")
    parser.add_argument("--voiced-noise-gain", type=float, metavar="S",
                        help="amplitude of the noise source in voiced frames, 0..1, with the "
                        "pulses (default: the checkpoint's own, 1 if it has none)")
    parser.add_argument("--torch-copies", action="store_true",
                        help="also write hopvocoder.pt (and enhancer.pt) beside the graph: the "
                        "weights alone, for the parity tests")
    args = parser.parse_args(argv)
    enhancer = load_enhancer(args.enhancer) if args.enhancer else FeatureEnhancer().eval()
    vocoder = load_checkpoint(args.checkpoint, args.noise_pulse_depth, args.voiced_noise_gain)
    graph = HopDecoderGraph(vocoder, enhancer)
    metadata = export(graph, args.output, args.version)
    if args.torch_copies:
        folder = args.output.parent
        torch.save({"config": graph.vocoder.config, "model": graph.vocoder.state_dict()},
                   folder / "hopvocoder.pt")
        torch.save({"config": {"hidden": enhancer.hidden}, "model": enhancer.state_dict()},
                   folder / "enhancer.pt")
    print(json.dumps(metadata, indent=2))


if __name__ == "__main__":
    main()
