"""Shims that let WARP-Q's old dependencies import on a current stack.

- numpy 2 removed `numpy.lib.pad`, which `warpq.utils` and `pyvad` call: alias it to `numpy.pad`.
- `webrtcvad` (under `pyvad`) reads its version through `pkg_resources`, which setuptools 81+
  no longer ships: import it once with a stand-in `pkg_resources` that answers from
  `importlib.metadata`, then take the stand-in away again.
"""

from __future__ import annotations

import importlib
import sys
import types
from importlib import metadata

import numpy as np


def _alias_numpy_pad() -> None:
    import numpy.lib

    if not hasattr(numpy.lib, "pad"):
        numpy.lib.pad = np.pad  # type: ignore[attr-defined]


def _import_webrtcvad() -> None:
    try:
        importlib.import_module("webrtcvad")
    except ModuleNotFoundError as exc:
        if exc.name != "pkg_resources":
            raise
        stand_in = types.ModuleType("pkg_resources")
        stand_in.get_distribution = (  # type: ignore[attr-defined]
            lambda name: types.SimpleNamespace(version=metadata.version(name))
        )
        sys.modules["pkg_resources"] = stand_in
        try:
            importlib.import_module("webrtcvad")
        finally:
            del sys.modules["pkg_resources"]


def prepare_warpq() -> None:
    """Apply both shims; call before importing `warpq`."""
    _alias_numpy_pad()
    _import_webrtcvad()
