"""Recipe: the open corpus of real recorded speech that Debian packages ship.

    hopcodec data recipe --out data/open_corpus            # all sources, ~10 h
    hopcodec data recipe --out data/open_corpus --no-narrowband

Each source is a set of Debian packages (fetched with `apt-get download`, unpacked with
`dpkg-deb -x` into `OUT/_cache`, nothing installed) and a scanner that knows where the
speech is in them, which files are not speech, and who speaks. Decoding: G.722 with the
`G722` wheel, GSM 06.10, Vorbis and WAV with libsndfile. Splits are by speaker group
(`GROUP_SPLIT`); every group not listed there is train. See docs/data.md.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.data import DataError, debian
from models.data.convert import Clip, convert_clips, out_path, write_corpus
from models.data.layouts import audio_files
from models.data.splits import assign_splits

Unpacked = Callable[[str], Path]  # package name -> its unpacked root

#: Unseen speakers for test and valid. A group is a voice (Asterisk), a language of the
#: community recordings (Tux Paint, KLettres, KTuberling: one volunteer may record for
#: several of them), a language of Fish Fillets, or all of Hedgewars.
GROUP_SPLIT = {
    "asterisk_carlo": "test",  # it-IT, male, G.722
    "community_el": "test",
    "community_bg": "test",
    "hedgewars": "test",  # acted exclamations, en/es/pl/ru/uk
    "asterisk_ivrvoice": "valid",  # ru-RU, female, G.722
    "community_be": "valid",
    "community_uk": "valid",
    "asterisk_esco": "valid",  # es-CO, GSM, 8 kHz
}

# Asterisk: prompt-set package code -> (language, voice). en and es are both Allison Smith.
ASTERISK_G722 = {"en": ("en-US", "allison"), "es": ("es-MX", "allison"),
                 "fr": ("fr-CA", "june"), "it": ("it-IT", "carlo"), "ru": ("ru-RU", "ivrvoice")}
ASTERISK_NB = [  # package, file suffix, codec, coding, language, voice
    ("asterisk-prompt-it-menardi-wav", ".wav", "auto", "pcm", "it-IT", "menardi"),
    ("asterisk-prompt-es-co", ".gsm", "gsm", "gsm", "es-CO", "esco"),
    ("asterisk-prompt-fr-armelle", ".gsm", "gsm", "gsm", "fr-FR", "armelle"),
]
ASTERISK_NOT_SPEECH = re.compile(
    r"(^|/)silence/|(^|/)(beep|beeperr|ascending-2tone|descending-2tone|tt-monkeys)\.\w+$")
HEDGEWARS_NOT_SPEECH = re.compile(
    r"^(Firepunch\d|Hmm|Jump\d|Laugh|Ooff\d|Ow\d|PoisonCough|PoisonMoan)$")
HEDGEWARS_LANGUAGE = {"Default_es": "es", "Default_pl": "pl", "Default_ru": "ru",
                      "Default_uk": "uk", "Russian_pl": "pl"}
FILLETS_ROLE = {"m": "smallfish", "v": "bigfish"}


def language_tag(code: str) -> str:
    """"pt_BR" -> "pt-BR", "sr@latin" -> "sr"."""
    return code.split("@")[0].replace("_", "-") or "und"


def _clip(src: Path, root: Path, source: str, package: str, speaker: str, group: str,
          language: str, coding: str, license_: str, codec: str = "auto",
          from_artist: bool = False) -> Clip:
    rel = src.relative_to(root)
    return Clip(src=src, out=out_path(source, Path(package) / rel), speaker=speaker,
                group=group, source=source, codec=codec, speaker_from_artist=from_artist,
                extra={"language": language, "package": package, "coding": coding,
                       "license": license_, "origin": f"{package}:{rel.as_posix()}"})


def _coding(p: Path) -> str:
    return "vorbis" if p.suffix == ".ogg" else "pcm"


def scan_asterisk_g722(unpacked: Unpacked, lic: str) -> list[Clip]:
    """Asterisk core prompts, G.722 at 16 kHz, one group per voice."""
    clips = []
    for code, (lang, voice) in ASTERISK_G722.items():
        pkg = f"asterisk-core-sounds-{code}-g722"
        root = unpacked(pkg) / "usr/share/asterisk/sounds"
        for p in sorted(root.rglob("*.g722")):
            if not ASTERISK_NOT_SPEECH.search(p.relative_to(root).as_posix()):
                who = f"asterisk_{voice}"
                clips.append(_clip(p, root, "asterisk_g722", pkg, who, who, lang, "g722", lic,
                                   codec="g722"))
    return clips


def scan_asterisk_nb(unpacked: Unpacked, lic: str) -> list[Clip]:
    """Narrowband Asterisk prompt sets (8 kHz PCM or GSM), one group per voice."""
    clips = []
    for pkg, suffix, codec, coding, lang, voice in ASTERISK_NB:
        root = unpacked(pkg) / "usr/share/asterisk/sounds"
        for p in _files(root, (suffix,)):
            if not ASTERISK_NOT_SPEECH.search(p.relative_to(root).as_posix()):
                who = f"asterisk_{voice}"
                clips.append(_clip(p, root, "asterisk_nb", pkg, who, who, lang, coding, lic,
                                   codec=codec))
    return clips


def _files(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Regular files (no links) under `root` with one of `suffixes`."""
    if suffixes == (".gsm",):  # not an audio_files suffix
        return sorted(p for p in root.rglob("*.gsm") if p.is_file() and not p.is_symlink())
    return [p for p in audio_files(root) if p.suffix in suffixes]


def scan_tuxpaint(unpacked: Unpacked, lic: str) -> list[Clip]:
    """Tux Paint stamp descriptions (`*_desc[_lang].ogg`); other stamp sounds are effects."""
    pkg = "tuxpaint-stamps-default"
    root = unpacked(pkg) / "usr/share/tuxpaint/stamps"
    desc = re.compile(r"_desc(?:_([A-Za-z@]+))?$")
    clips = []
    for p in _files(root, (".ogg", ".wav")):
        m = desc.search(p.stem)
        if m:
            lang = language_tag(m.group(1) or "en")
            clips.append(_clip(p, root, "tuxpaint", pkg, f"tuxpaint_{lang}",
                               f"community_{lang.split('-')[0]}", lang, _coding(p), lic,
                               from_artist=True))
    return clips


def _scan_per_language(pkg: str, sub: str, source: str, unpacked: Unpacked,
                       lic: str) -> list[Clip]:
    """Packages with one folder per language (KLettres, KTuberling)."""
    root = unpacked(pkg) / sub
    clips = []
    for p in _files(root, (".ogg", ".wav")):
        rel = p.relative_to(root)
        if len(rel.parts) > 1:
            lang = language_tag(rel.parts[0])
            clips.append(_clip(p, root, source, pkg, f"{source}_{lang}",
                               f"community_{lang.split('-')[0]}", lang, _coding(p), lic,
                               from_artist=True))
    return clips


def scan_klettres(unpacked: Unpacked, lic: str) -> list[Clip]:
    """KLettres letters and syllables, one volunteer per language."""
    return _scan_per_language("klettres-data", "usr/share/klettres", "klettres", unpacked, lic)


def scan_ktuberling(unpacked: Unpacked, lic: str) -> list[Clip]:
    """KTuberling single words, per language."""
    return _scan_per_language("ktuberling-data", "usr/share/ktuberling/sounds", "ktuberling",
                              unpacked, lic)


def scan_fillets(unpacked: Unpacked, lic: str) -> list[Clip]:
    """Fish Fillets dialogue (cs, nl); file `<level>-<role>-<line>.ogg` names the role."""
    clips = []
    for lang in ("cs", "nl"):
        pkg = f"fillets-ng-data-{lang}"
        root = unpacked(pkg) / "usr/share/games/fillets-ng/sound"
        for p in _files(root, (".ogg",)):
            parts = p.stem.split("-")
            role = FILLETS_ROLE.get(parts[1], f"char_{parts[1]}") if len(parts) >= 3 else "misc"
            clips.append(_clip(p, root, "fillets", pkg, f"fillets_{lang}_{role}",
                               f"fillets_{lang}", lang, "vorbis", lic))
    return clips


def scan_hedgewars(unpacked: Unpacked, lic: str) -> list[Clip]:
    """Hedgewars voice packs, minus the vocoded Robot pack and non-speech grunts."""
    pkg = "hedgewars-data"
    root = unpacked(pkg) / "usr/share/games/hedgewars/Data/Sounds/voices"
    clips = []
    for p in _files(root, (".ogg",)):
        pack = p.relative_to(root).parts[0]
        if pack != "Robot" and not HEDGEWARS_NOT_SPEECH.match(p.stem):
            clips.append(_clip(p, root, "hedgewars", pkg, f"hedgewars_{pack}", "hedgewars",
                               HEDGEWARS_LANGUAGE.get(pack, "en"), "vorbis", lic))
    return clips


@dataclass(frozen=True)
class Source:
    """A corpus source: its Debian packages, license, scanner and whether it is 8 kHz."""

    packages: tuple[str, ...]
    license: str
    scan: Callable[[Unpacked, str], list[Clip]]
    narrowband: bool = False


SOURCES: dict[str, Source] = {
    "asterisk_g722": Source(tuple(f"asterisk-core-sounds-{c}-g722" for c in ASTERISK_G722),
                            "CC-BY-SA-3.0 (en/es/fr/it), CC-BY-3.0 (ru)", scan_asterisk_g722),
    "tuxpaint": Source(("tuxpaint-stamps-default",), "GPL-2", scan_tuxpaint),
    "klettres": Source(("klettres-data",), "GPL-2+", scan_klettres),
    "ktuberling": Source(("ktuberling-data",), "GPL-2+", scan_ktuberling),
    "fillets": Source(("fillets-ng-data-cs", "fillets-ng-data-nl"), "GPL-2", scan_fillets),
    "hedgewars": Source(("hedgewars-data",), "GFDL-1.3", scan_hedgewars),
    "asterisk_nb": Source(tuple(p for p, *_ in ASTERISK_NB),
                          "CC-BY-SA-3.0-IT (it), GPL-2 (es-CO), BSD-like (fr)",
                          scan_asterisk_nb, narrowband=True),
}


def build_open_corpus(out: Path, *, sources: list[str] | None = None,
                      narrowband: bool = True, cache_dir: Path | None = None,
                      workers: int = 2, show_progress: bool = True) -> dict:
    """Download, unpack, convert and split the open Debian speech corpus into `out`; return
    the summary. `sources` picks from `SOURCES` (default: all); `narrowband=False` drops the
    8 kHz ones. Re-runs reuse the cached .debs, unpacked trees and converted clips."""
    names = list(sources or SOURCES)
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise DataError(f"unknown source(s) {', '.join(unknown)}; known: {', '.join(SOURCES)}")
    names = [n for n in names if narrowband or not SOURCES[n].narrowband]
    debian.require_tools()
    out = Path(out)
    cache = Path(cache_dir) if cache_dir else out / "_cache"
    debs = debian.download(sorted({p for n in names for p in SOURCES[n].packages}),
                           cache / "debs")

    def unpacked(pkg: str) -> Path:
        if pkg not in debs:
            raise DataError(f"Debian package {pkg} is not available")
        return debian.unpack(debs[pkg], cache / "unpacked" / pkg)

    clips: list[Clip] = []
    for n in names:
        try:
            clips.extend(SOURCES[n].scan(unpacked, SOURCES[n].license))
        except DataError as e:
            print(f"warning: source {n} skipped: {e}", file=sys.stderr)
    if not clips:
        raise DataError("no source could be fetched: check apt sources (apt-get update)")
    rows, dropped = convert_clips(clips, out, workers=workers, show_progress=show_progress)
    assign_splits(rows, GROUP_SPLIT, valid_frac=0.0, test_frac=0.0)
    return write_corpus(out, rows, dropped, {"recipe_sources": names})
