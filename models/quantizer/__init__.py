"""The predictive quantizer's training: GRU feature predictor and residual VQ codebooks."""
