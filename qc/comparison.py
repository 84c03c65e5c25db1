"""Each segmentation model's picture over a whole QC run: one row per (source, structure).

Why: the QC table answers "is this structure of this series right?". Reviewing a whole
collection (IDC's review of segmentation quality across models, e.g. over NLST) also
asks "where does each model go wrong?": which structures a source misses where the others
see them, how well it agrees with the rest, how often QC names it the outlier and which
rules its own masks fail. This module pools the QC table's per-member columns over all
series into that view; vectorised (the ';'-joined columns split as Arrow text, grouped by
integer codes), so 100,000 series x 60 structures take about 16 CPU seconds (``bench/report_scale.py``,
whose whole run, the 2 GiB table included, peaks at 7 GiB).

A **source** is a member name without its trailing " [augmentation]" (``Member.name``),
i.e. "source version", the text ``outlier_source`` uses: all augmentations of a source are
pooled. A **result** is one row of the QC table (one structure of one series). Results
that compare nothing are left out: status ``absent`` (no member has the structure, so no
model is wrong about it) and results with fewer than two members.

Columns of ``model_comparison`` (``COLUMNS``; shares in [0, 1], NaN where nothing counts):

- ``source``: "source version".
- ``structure``: schema name of the compared structure, or ``"*"`` for all structures pooled.
- ``series``: series in which the source took part at the structure (``"*"``: at any).
- ``results``: results in which the source took part (equals ``series`` for one structure).
- ``present_where_others_see``: over the source's member entries (one per member per
  result) where at least one other member has the structure, the share where this member
  has it too. Its complement is how often the model misses what another sees.
- ``present_alone``: over the source's member entries where the member has the structure,
  the share where no other member has it (what only this model sees).
- ``agreement_median``, ``agreement_p10``: median and 10th percentile (linear
  interpolation) of its members' agreement with the leave-one-out majority of the others
  (``member_agreement``; NaN values left out).
- ``outlier_named``: share of the results where ``outlier_source`` is this source.
- ``fails_<rule>`` for each rule of ``qc.score.RULES``: share of the results where at least
  one member of this source fails the rule on its own (a flag ``"rule@member"``). A flag
  ``"rule"`` without a member is the consensus failing it (all sources alike, e.g. a bone
  cut off by the field of view) and is no model's failure, so it is not counted; QC flags
  ``presence`` only so, so ``fails_presence`` stays 0: ``present_where_others_see`` shows it.

Presence comes from ``member_present``. Tables written before it existed lack it (or hold
""): there a result's presence is known only when every member has the structure
(``n_present == n_sources``); other results of such tables do not count towards the two
presence shares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from labels.schema import default_schema
from qc.results import ABSENT
from qc.score import RULES

ALL = "*"  # the structure of a source's row over all structures
COLUMNS = ["source", "structure", "series", "results", "present_where_others_see", "present_alone",
           "agreement_median", "agreement_p10", "outlier_named", *(f"fails_{rule}" for rule in RULES)]
NEEDED = ("series_uid", "bone", "status", "members", "member_agreement", "flags", "outlier_source", "n_sources",
          "n_present")
_TEXT = "large_string[pyarrow]"  # Arrow text: split and cast without a Python object per part
_AUGMENTATION = re.compile(r" \[[^\[\]]*\]$")


def source_of(member: str) -> str:
    """``Member.name`` without its " [augmentation]": "source version", as ``outlier_source`` names it."""
    return _AUGMENTATION.sub("", member)


@dataclass(frozen=True)
class MemberRows:
    """The compared results of a QC table, read once for any grouping of them (``summarise``)."""

    bones: np.ndarray  # per kept result: its structure
    members: pd.DataFrame  # per (result, member): result, source, present (1/0/NaN unknown), others_present, agreement
    sources: pd.DataFrame  # per (result, source): result, series, source, outlier, fails_<rule> (bools)
    names: pd.Index  # source names by code


def model_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (source, structure) and per source over all structures (``"*"`` first); columns ``COLUMNS``."""
    rows = member_rows(table)
    found = pd.concat([summarise(rows, np.full(len(rows.bones), ALL, dtype=object)), summarise(rows, rows.bones)])
    schema = default_schema()
    order = found["structure"].map(lambda name: -1 if name == ALL else schema[name].id)
    return found.assign(_order=order).sort_values(["source", "_order"]).drop(columns="_order").reset_index(drop=True)


def member_rows(table: pd.DataFrame) -> MemberRows:
    """Explode the ';'-joined member columns of the compared results (see the module docstring)."""
    if missing := [c for c in NEEDED if c not in table.columns]:
        raise ValueError(f"QC table lacks columns {missing}")
    kept = table[(table["status"] != ABSENT) & (table["n_sources"] >= 2)]
    names, lengths = _split(kept["members"])
    result = np.repeat(np.arange(len(kept)), lengths)
    member_codes, member_names = pd.factorize(names)
    source_codes, sources = pd.factorize(pd.Index([source_of(str(n)) for n in member_names], dtype=object))
    source = source_codes[member_codes]
    values, counts = _split(kept["member_agreement"])
    if bad := np.flatnonzero(counts != lengths).tolist():
        raise ValueError(f"QC table: member_agreement of bone {kept['bone'].iloc[bad[0]]!r} of series "
                         f"{kept['series_uid'].iloc[bad[0]]} does not have one value per member")
    present = _presence(kept, lengths)
    others = np.bincount(result, weights=present, minlength=len(kept))[result] - present
    members = pd.DataFrame({"result": result, "source": source, "present": present, "others_present": others,
                            "agreement": _numbers(values)})
    return MemberRows(kept["bone"].to_numpy(dtype=object), members,
                      _source_results(kept, members, sources, member_names, source_codes), sources)


def summarise(rows: MemberRows, groups: np.ndarray) -> pd.DataFrame:
    """One row per (source, group) with ``COLUMNS``; ``groups[i]`` names the group of kept result ``i``."""
    codes, names = pd.factorize(np.asarray(groups, dtype=object))  # grouping by integers, not by text
    member_result, present, others = (rows.members[c].to_numpy() for c in ("result", "present", "others_present"))
    members = pd.DataFrame({
        "source": rows.members["source"].to_numpy(), "group": codes[member_result],
        "seen_here": np.where(others > 0, present, np.nan),
        "alone": np.where(present == 1, (others == 0).astype(float), np.nan),
        "agreement": rows.members["agreement"].to_numpy(),
    })
    by_member = members.groupby(["source", "group"], sort=False)
    sources = rows.sources.assign(group=codes[rows.sources["result"].to_numpy()])
    by_source = sources.groupby(["source", "group"], sort=False)
    found = pd.DataFrame({
        "series": by_source["series"].nunique(),
        "results": by_source.size(),
        "present_where_others_see": by_member["seen_here"].mean(),
        "present_alone": by_member["alone"].mean(),
        "agreement_median": by_member["agreement"].median(),
        "agreement_p10": by_member["agreement"].quantile(0.1),
        "outlier_named": by_source["outlier"].mean(),
        **{f"fails_{rule}": by_source[f"fails_{rule}"].mean() for rule in RULES},
    })
    if found.empty:
        return pd.DataFrame(columns=COLUMNS)
    found = found.reset_index()
    found["source"] = np.asarray(rows.names, dtype=object)[found["source"].to_numpy()]
    found["structure"] = np.asarray(names, dtype=object)[found["group"].to_numpy()]
    return found[COLUMNS]


def _split(column: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """A ';'-joined column as one flat series of its parts, and the number of parts per row ("" counts one)."""
    lists = column.fillna("").astype(_TEXT).str.split(";")
    return lists.list.flatten(), lists.list.len().to_numpy(dtype=np.int64)


def _numbers(parts: pd.Series) -> np.ndarray:
    return parts.astype("float64[pyarrow]").to_numpy(dtype=float, na_value=np.nan)


def _presence(kept: pd.DataFrame, lengths: np.ndarray) -> np.ndarray:
    """Per (result, member) 1.0 / 0.0 from ``member_present``; NaN where the table does not say (older tables)."""
    present = np.full(int(lengths.sum()), np.nan)
    if "member_present" in kept.columns:
        values, counts = _split(kept["member_present"])
        known = counts == lengths
        present[np.repeat(known, lengths)] = _numbers(values[np.repeat(known, counts)])
    else:
        known = np.zeros(len(kept), bool)
    everyone = ~known & (kept["n_present"].to_numpy() == kept["n_sources"].to_numpy())
    present[np.repeat(everyone, lengths)] = 1.0
    return present


def _source_results(kept: pd.DataFrame, members: pd.DataFrame, sources: pd.Index, member_names: pd.Index,
                    member_sources: np.ndarray) -> pd.DataFrame:
    """One row per (result, source taking part): its series, whether it is the outlier, which rules it fails."""
    count = max(len(sources), 1)
    key = pd.unique(members["result"].to_numpy() * count + members["source"].to_numpy())
    result, source = key // count, key % count
    series_codes, _ = pd.factorize(kept["series_uid"])
    outlier = sources.get_indexer(kept["outlier_source"].fillna(""))  # -1: none, or not a compared source
    found = pd.DataFrame({"result": result, "series": series_codes[result], "source": source,
                          "outlier": outlier[result] == source})
    flags, counts = _split(kept["flags"])
    by_member = flags.str.contains("@", regex=False).to_numpy(dtype=bool)
    parts = flags[by_member].str.split("@", n=1)
    member = member_names.get_indexer(parts.list[1]) if by_member.any() else np.zeros(0, np.int64)
    known = member >= 0  # a flag names one of the compared members; anything else is not counted
    rules = parts.list[0].to_numpy(dtype=object)[known]
    flag_key = np.repeat(np.arange(len(kept)), counts)[by_member][known] * count + member_sources[member[known]]
    for rule in RULES:
        found[f"fails_{rule}"] = np.isin(key, flag_key[rules == rule])
    return found
