"""Fetch and unpack Debian packages without installing them (`apt-get download`,
`dpkg-deb -x`), with a cache so a re-run touches the network and the disk only once."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from models.data import DataError


def require_tools() -> None:
    """Raise DataError unless apt-get and dpkg-deb are on PATH."""
    missing = [t for t in ("apt-get", "dpkg-deb") if shutil.which(t) is None]
    if missing:
        raise DataError(f"the Debian recipe needs {' and '.join(missing)} (Debian or Ubuntu)")


def _cached_deb(debdir: Path, package: str) -> Path | None:
    debs = sorted(debdir.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
    return debs[-1] if debs else None


def _apt_download(packages: list[str], debdir: Path) -> bool:
    """`apt-get download` into `debdir`; its chatter is shown only when it fails."""
    r = subprocess.run(["apt-get", "download", "-q", *packages], cwd=debdir,
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr.strip()[-500:], file=sys.stderr)
    return r.returncode == 0


def download(packages: list[str], debdir: Path) -> dict[str, Path]:
    """Map each package to its .deb in `debdir`, downloading the missing ones. On failure runs
    `apt-get update` once and retries one package at a time; packages that still fail are left
    out with a warning on stderr."""
    debdir.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if _cached_deb(debdir, p) is None]
    if missing and not _apt_download(missing, debdir):
        subprocess.run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL)
        for p in missing:
            if _cached_deb(debdir, p) is None:
                _apt_download([p], debdir)
    found = {}
    for p in packages:
        deb = _cached_deb(debdir, p)
        if deb is None:
            print(f"warning: could not download Debian package {p}", file=sys.stderr)
        else:
            found[p] = deb
    return found


def unpack(deb: Path, dest: Path) -> Path:
    """Unpack `deb` into `dest` (once: a `.from` stamp names the unpacked .deb)."""
    stamp = dest / ".from"
    if stamp.is_file() and stamp.read_text() == deb.name:
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    r = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True)
    if r.returncode != 0:
        raise DataError(f"dpkg-deb -x {deb.name} failed: {r.stderr.strip()[:200]}")
    stamp.write_text(deb.name)
    return dest
