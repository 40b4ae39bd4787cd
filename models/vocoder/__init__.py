"""The neural decoder: a frame-rate GRU that drives a harmonic-plus-noise excitation for the
LPC synthesis filter (a neural source-filter vocoder). Model, training, export side by side."""
