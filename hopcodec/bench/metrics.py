"""Quality metrics, each a function (ref, deg, sr=16000) -> float on delay-aligned audio.

The packages behind them are optional (the `bench` extra); :func:`require` raises a
:class:`MissingDependency` naming the package (so does calling a metric whose package is
missing), and the bench can leave any metric out (`--metrics`, `--skip-metrics`).
Every model-based metric runs on one thread.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from hopcodec.bench.audio import SR
from hopcodec.bench.compat import prepare_warpq
from hopcodec.bench.errors import BenchError, MissingDependency
from hopcodec.bench.pitch import f0_errors

MetricFn = Callable[[np.ndarray, np.ndarray, int], float]
PIP_HINT = "pip install 'hopcodec[bench]', or leave it out with --skip-metrics {name}"


@dataclass(frozen=True)
class Metric:
    """A metric: how to compute it, which way is better, and what it needs installed."""

    name: str
    label: str
    fn: MetricFn
    higher_is_better: bool
    modules: tuple[str, ...] = ()  # importable modules it needs
    package: str = ""  # the pip requirement that provides them
    intrusive: bool = True  # False: scores the decoded audio alone (DNSMOS)
    prepare: Callable[[], None] | None = None  # run before importing `modules` (shims)


# --- shared one-entry caches: several metrics come out of one computation -------------------

def _key(*arrays: np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
        h.update(b"|")
    return h.digest()


_last: dict[str, tuple[bytes, dict[str, float]]] = {}


def _memo(kind: str, key: bytes, compute: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Remember the last result of `kind`, so DNSMOS or F0 scores of one pair run once."""
    hit = _last.get(kind)
    if hit is None or hit[0] != key:
        _last[kind] = (key, compute())
    return _last[kind][1]


def _needs(package: str) -> Callable[[MetricFn], MetricFn]:
    """Turn an ImportError inside a metric into a :class:`MissingDependency` naming `package`."""

    def wrap(fn: MetricFn) -> MetricFn:
        @functools.wraps(fn)
        def metric(ref: np.ndarray, deg: np.ndarray, sr: int = SR) -> float:
            try:
                return fn(ref, deg, sr)
            except ImportError as exc:
                raise MissingDependency(
                    f"metric {fn.__name__}",
                    f"the Python package {package} (module {exc.name!r} is missing)",
                    PIP_HINT.format(name=fn.__name__),
                ) from exc

        return metric

    return wrap


# --- package-backed metrics --------------------------------------------------------------------

@_needs("pesq")
def pesq_wb(ref: np.ndarray, deg: np.ndarray, sr: int = SR) -> float:
    """PESQ wideband (ITU-T P.862.2) MOS-LQO, 1.0-4.64."""
    from pesq import pesq

    _need_16k(sr, "PESQ-WB")
    return float(pesq(sr, ref.astype(np.float32), deg.astype(np.float32), "wb"))


@_needs("pystoi")
def stoi(ref: np.ndarray, deg: np.ndarray, sr: int = SR) -> float:
    """Short-time objective intelligibility, 0-1."""
    from pystoi import stoi as _stoi

    return float(_stoi(ref, deg, sr, extended=False))


@_needs("pystoi")
def estoi(ref: np.ndarray, deg: np.ndarray, sr: int = SR) -> float:
    """Extended STOI, 0-1."""
    from pystoi import stoi as _stoi

    return float(_stoi(ref, deg, sr, extended=True))


@cache
def _visqol_api() -> object:
    from visqol import VisqolApi

    api = VisqolApi()
    api.create(mode="speech", use_lattice_model=True)
    return api


@_needs("visqol-python[lattice]")
def visqol(ref: np.ndarray, deg: np.ndarray, sr: int = SR) -> float:
    """ViSQOL v3 speech mode (lattice mapper) MOS-LQO, 1-5."""
    _need_16k(sr, "ViSQOL speech mode")
    api = _visqol_api()
    result = api.measure_from_arrays(ref.astype(np.float64), deg.astype(np.float64), sr)
    return float(result.moslqo)


@cache
def _warpq_metric() -> object:
    prepare_warpq()
    from warpq.core import warpqMetric

    return warpqMetric(sr=SR, n_jobs=1)


@_needs("warpq")
def warpq(ref: np.ndarray, deg: np.ndarray, sr: int = SR) -> float:
    """WARP-Q raw score (lower is better; identical signals score about 0.5)."""
    import warnings

    _need_16k(sr, "WARP-Q")
    # its VAD (pyvad) rejects samples outside [-1, 1]: scale both alike (MFCCs are normalised)
    peak = max(1.0, float(np.abs(ref).max(initial=0.0)), float(np.abs(deg).max(initial=0.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _warpq_metric().evaluate((ref / peak).astype(np.float32),
                                       (deg / peak).astype(np.float32), arr_sr=sr)
    return float(out["raw_warpq_score"])


@cache
def _dnsmos_model() -> object:
    """speechmos' DNSMOS, with its two ONNX sessions on one thread."""
    import onnxruntime as ort
    from speechmos import dnsmos as dm

    class _SingleThreadDNSMOS(dm.DNSMOS):
        def __init__(self, primary_model_path: str, p808_model_path: str) -> None:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            providers = ["CPUExecutionProvider"]
            self.primary_model_path = primary_model_path
            self.onnx_sess = ort.InferenceSession(primary_model_path, opts, providers=providers)
            self.p808_onnx_sess = ort.InferenceSession(p808_model_path, opts, providers=providers)

    here = os.path.dirname(os.path.abspath(dm.__file__))
    return _SingleThreadDNSMOS(os.path.join(here, "dnsmos_models", "sig_bak_ovr.onnx"),
                               os.path.join(here, "dnsmos_models", "model_v8.onnx"))


def _dnsmos_all(deg: np.ndarray, sr: int) -> dict[str, float]:
    _need_16k(sr, "DNSMOS")

    def compute() -> dict[str, float]:
        clipped = np.clip(deg.astype(np.float32), -1.0, 1.0)
        out = _dnsmos_model()(clipped, sr, False)  # type: ignore[operator]
        return {k: float(out[k]) for k in ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")}

    return _memo("dnsmos", _key(deg), compute)


@_needs("speechmos")
def dnsmos_ovrl(ref: np.ndarray, deg: np.ndarray, sr: int = SR) -> float:
    """DNSMOS P.835 overall quality (non-intrusive: `ref` unused)."""
    return _dnsmos_all(deg, sr)["ovrl_mos"]


@_needs("speechmos")
def dnsmos_sig(ref: np.ndarray, deg: np.ndarray, sr: int = SR) -> float:
    """DNSMOS P.835 speech-signal quality (non-intrusive)."""
    return _dnsmos_all(deg, sr)["sig_mos"]


@_needs("speechmos")
def dnsmos_bak(ref: np.ndarray, deg: np.ndarray, sr: int = SR) -> float:
    """DNSMOS P.835 background quality (non-intrusive)."""
    return _dnsmos_all(deg, sr)["bak_mos"]


@_needs("speechmos")
def dnsmos_p808(ref: np.ndarray, deg: np.ndarray, sr: int = SR) -> float:
    """DNSMOS P.808 MOS (non-intrusive)."""
    return _dnsmos_all(deg, sr)["p808_mos"]


# --- own metrics (numpy only) ------------------------------------------------------------------

LSD_FRAME, LSD_HOP = 512, 160
LSD_ACTIVE_DB = 40.0  # frames of the reference within this of its loudest frame are scored
LSD_FLOOR_DB = 80.0  # power floor below the reference's peak, so empty bands stay finite


def log_spectral_distance(ref: np.ndarray, deg: np.ndarray, sr: int = SR,
                          f_max: float = 8000.0) -> float:
    """Mean over active frames of the RMS difference (dB) of the log power spectra, 0..f_max Hz."""
    n = min(len(ref), len(deg))
    if n < LSD_FRAME:
        return float("nan")
    window = np.hanning(LSD_FRAME)
    starts = np.arange(0, n - LSD_FRAME + 1, LSD_HOP)
    idx = starts[:, None] + np.arange(LSD_FRAME)[None, :]
    p_ref = np.abs(np.fft.rfft(ref[:n][idx] * window, axis=1)) ** 2
    p_deg = np.abs(np.fft.rfft(deg[:n][idx] * window, axis=1)) ** 2
    band = np.fft.rfftfreq(LSD_FRAME, 1.0 / sr) <= f_max
    floor = p_ref.max() * 10 ** (-LSD_FLOOR_DB / 10) + 1e-20
    db_ref = 10 * np.log10(p_ref[:, band] + floor)
    db_deg = 10 * np.log10(p_deg[:, band] + floor)
    frame_db = 10 * np.log10(p_ref.sum(axis=1) + 1e-20)
    active = frame_db > frame_db.max() - LSD_ACTIVE_DB
    per_frame = np.sqrt(np.mean((db_ref - db_deg) ** 2, axis=1))
    return float(per_frame[active].mean())


def lsd_8k(ref: np.ndarray, deg: np.ndarray, sr: int = SR) -> float:
    """Log-spectral distance over 0-8 kHz, dB."""
    return log_spectral_distance(ref, deg, sr, 8000.0)


def lsd_4k(ref: np.ndarray, deg: np.ndarray, sr: int = SR) -> float:
    """Log-spectral distance over 0-4 kHz (fair to narrowband codecs), dB."""
    return log_spectral_distance(ref, deg, sr, 4000.0)


def _f0(ref: np.ndarray, deg: np.ndarray, sr: int) -> dict[str, float]:
    return _memo("f0", _key(ref, deg), lambda: f0_errors(ref, deg, sr))


def f0_rmse(ref: np.ndarray, deg: np.ndarray, sr: int = SR) -> float:
    """F0 RMSE in Hz over frames voiced in both signals, gross errors left out."""
    return _f0(ref, deg, sr)["f0_rmse_hz"]


def f0_gross(ref: np.ndarray, deg: np.ndarray, sr: int = SR) -> float:
    """Gross F0 errors (more than 20 % off), % of frames voiced in both."""
    return _f0(ref, deg, sr)["f0_gross_pct"]


def voicing_error(ref: np.ndarray, deg: np.ndarray, sr: int = SR) -> float:
    """Voicing decision error, % of frames."""
    return _f0(ref, deg, sr)["voicing_err_pct"]


def _need_16k(sr: int, what: str) -> None:
    if sr != SR:
        raise BenchError(f"{what} is computed at {SR} Hz here, got {sr} Hz")


# --- registry ----------------------------------------------------------------------------------

METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("pesq_wb", "PESQ-WB", pesq_wb, True, ("pesq",), "pesq"),
        Metric("stoi", "STOI", stoi, True, ("pystoi",), "pystoi"),
        Metric("estoi", "ESTOI", estoi, True, ("pystoi",), "pystoi"),
        Metric("visqol", "ViSQOL", visqol, True, ("visqol", "ai_edge_litert"),
               "visqol-python[lattice]"),
        Metric("warpq", "WARP-Q", warpq, False, ("librosa", "warpq.core"), "warpq",
               prepare=prepare_warpq),
        Metric("dnsmos_ovrl", "DNSMOS OVRL", dnsmos_ovrl, True, ("speechmos", "librosa"),
               "speechmos (+ librosa)", intrusive=False),
        Metric("dnsmos_sig", "DNSMOS SIG", dnsmos_sig, True, ("speechmos", "librosa"),
               "speechmos (+ librosa)", intrusive=False),
        Metric("dnsmos_bak", "DNSMOS BAK", dnsmos_bak, True, ("speechmos", "librosa"),
               "speechmos (+ librosa)", intrusive=False),
        Metric("dnsmos_p808", "DNSMOS P.808", dnsmos_p808, True, ("speechmos", "librosa"),
               "speechmos (+ librosa)", intrusive=False),
        Metric("lsd_8k", "LSD 0-8k (dB)", lsd_8k, False),
        Metric("lsd_4k", "LSD 0-4k (dB)", lsd_4k, False),
        Metric("f0_rmse_hz", "F0 fine RMSE (Hz)", f0_rmse, False),
        Metric("f0_gross_pct", "F0 gross (%)", f0_gross, False),
        Metric("voicing_err_pct", "Voicing err (%)", voicing_error, False),
    )
}

FAMILIES: dict[str, tuple[str, ...]] = {
    "pesq": ("pesq_wb",),
    "stoi": ("stoi", "estoi"),
    "dnsmos": ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"),
    "lsd": ("lsd_8k", "lsd_4k"),
    "f0": ("f0_rmse_hz", "f0_gross_pct", "voicing_err_pct"),
    "fast": ("pesq_wb", "stoi", "estoi", "lsd_8k", "lsd_4k", "f0_rmse_hz", "f0_gross_pct",
             "voicing_err_pct"),
}


def select(names: list[str] | None = None, skip: list[str] | None = None) -> list[str]:
    """Metric names from names or families (`pesq`, `stoi`, `dnsmos`, `lsd`, `f0`, `fast`,
    `all`), minus those in `skip`, in registry order. Unknown names raise a BenchError."""

    def expand(items: list[str]) -> set[str]:
        out: set[str] = set()
        for item in items:
            if item == "all":
                out |= set(METRICS)
            elif item in METRICS:
                out.add(item)
            elif item in FAMILIES:
                out |= set(FAMILIES[item])
            else:
                known = ", ".join([*METRICS, *FAMILIES, "all"])
                raise BenchError(f"unknown metric {item!r} (known: {known})")
        return out

    chosen = expand(names or ["all"]) - expand(skip or [])
    if not chosen:
        raise BenchError("no metrics left to compute")
    return [m for m in METRICS if m in chosen]


def require(name: str) -> None:
    """Raise :class:`MissingDependency` naming the package if metric `name` cannot run here."""
    metric = METRICS[name]
    hint = PIP_HINT.format(name=name)
    module = ""
    try:
        if metric.prepare is not None:
            metric.prepare()
        for module in metric.modules:
            importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        raise MissingDependency(f"metric {name}", f"the Python package {metric.package} "
                                f"(module {missing!r} is missing)", hint) from exc
    except Exception as exc:  # a broken install: say so rather than crash later
        raise MissingDependency(f"metric {name}", f"a working {metric.package} "
                                f"({type(exc).__name__}: {exc})", hint) from exc
