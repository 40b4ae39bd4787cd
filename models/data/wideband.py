"""Make a wideband-only view of a prepared corpus (same WAVs, filtered manifest).

    python -m models.data.wideband CORPUS OUT

Keeps clips recorded at 16 kHz or more whose measured bandwidth exceeds 5 kHz: the decoder
should learn to produce the whole 0-8 kHz band, and narrowband sources would teach it not to.
The WAV folder is linked, not copied.
"""

import csv
import sys
from pathlib import Path

MIN_RATE_HZ = 16000
MIN_BANDWIDTH_HZ = 5000.0


def make_wideband_view(corpus: Path, out: Path) -> int:
    """Write `out/manifest.csv` (wideband rows) and link `out/wav`; returns the rows kept."""
    with (corpus / "manifest.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        rows = [r for r in reader if int(float(r.get("native_rate") or 0)) >= MIN_RATE_HZ
                and float(r.get("bandwidth_hz") or 0) > MIN_BANDWIDTH_HZ]
    out.mkdir(parents=True, exist_ok=True)
    with (out / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    link = out / "wav"
    if not link.exists():
        link.symlink_to((corpus / "wav").resolve(), target_is_directory=True)
    return len(rows)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m models.data.wideband CORPUS OUT")
    print(f"{make_wideband_view(Path(sys.argv[1]), Path(sys.argv[2]))} wideband clips")
