"""Torch model definitions, data preparation, training and ONNX export (training extra)."""
