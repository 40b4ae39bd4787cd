"""Training data: corpus preparation, the open Debian speech corpus recipe, feature cache, loader.

Modules, one idea each:

- `audio`: read any speech file, mix to mono, resample to 16 kHz, silence test, 16-bit WAV out.
- `convert`: convert a list of clips in parallel with reuse, write `manifest.csv`.
- `splits`: speaker-group splits (given mapping or stable hash) and the no-leak check.
- `layouts`: find clips and speakers in flat, LibriSpeech-like, VCTK-like or manifest folders.
- `prepare`: `prepare_corpus`, the `hopcodec data prepare` pipeline.
- `debian`, `recipe`: the open corpus of real recordings shipped in Debian packages.
- `augment`: deterministic signal augmentations (level, EQ, noise, reverb).
- `features_cache`: features and signal of a whole corpus in memory-mapped arrays.
- `loader`: random (batch, seq_len) windows from the cache, numpy only.
- `cli`: the `hopcodec data ...` commands.
"""


class DataError(Exception):
    """A user-facing data problem (bad folder, bad manifest, missing tool); one line to print."""
