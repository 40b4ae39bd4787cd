"""Speaker-group splits: every clip of a group lands in one split, so test speakers are never
trained on.

A group is the unit of splitting (a speaker, or several speakers that must stay together).
Its split comes, in order of precedence, from an explicit mapping, from the split its source
gave (a manifest's `split` column), or from a stable hash of the group name: `u = sha256(group)`
mapped to [0, 1); `u < test_frac` is test, `u < test_frac + valid_frac` is valid, else train.
The hash depends on the group name only, so adding data never moves an existing group. When
the hash leaves test (or valid) empty and at least three groups were hashed, the hashed group
with the smallest `u` still in train is moved there, so small corpora still get both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from models.data import DataError

SPLITS = ("train", "valid", "test")


def group_unit(group: str) -> float:
    """Stable position of `group` in [0, 1)."""
    return int(hashlib.sha256(group.encode()).hexdigest()[:13], 16) / 16**13


def assign_splits(rows: list[dict], split_map: Mapping[str, str] | None = None,
                  valid_frac: float = 0.1, test_frac: float = 0.1) -> None:
    """Set `row["split"]` for every row in place (see the module doc); raise DataError when a
    group or a speaker would land in two splits."""
    split_map = dict(split_map or {})
    bad = {s for s in split_map.values() if s not in SPLITS}
    if bad:
        raise DataError(f"unknown split(s) {sorted(bad)}: use {', '.join(SPLITS)}")
    given: dict[str, str] = {}
    for r in rows:
        g, s = r["group"], split_map.get(r["group"], r.get("split") or "")
        if s and s not in SPLITS:
            raise DataError(f"group {g!r}: unknown split {s!r}")
        if s and given.setdefault(g, s) != s:
            raise DataError(f"group {g!r} is given two splits: {given[g]} and {s}")
    hashed = sorted({r["group"] for r in rows} - set(given), key=group_unit)
    chosen = dict(given)
    for g in hashed:
        u = group_unit(g)
        chosen[g] = "test" if u < test_frac else "valid" if u < test_frac + valid_frac else "train"
    if len(hashed) >= 3:
        for split, frac in (("test", test_frac), ("valid", valid_frac)):
            spare = [g for g in hashed if chosen[g] == "train"]
            if frac > 0 and split not in chosen.values() and len(spare) > 1:
                chosen[spare[0]] = split
    for r in rows:
        r["split"] = chosen[r["group"]]
    check_no_leak(rows)


def check_no_leak(rows: list[dict]) -> None:
    """Raise DataError if a speaker or a group appears in more than one split."""
    for key in ("group", "speaker"):
        where: dict[str, set[str]] = {}
        for r in rows:
            where.setdefault(r[key], set()).add(r["split"])
        leaks = sorted(k for k, s in where.items() if len(s) > 1)
        if leaks:
            raise DataError(f"{key}(s) in several splits: {', '.join(leaks[:5])}"
                            + (" ..." if len(leaks) > 5 else ""))
