"""Each segmentation model's picture over a whole QC run: one row per (source, structure).

Why: the QC table answers "is this structure of this series right?". Reviewing a whole
collection (IDC's review of segmentation quality across models, e.g. over NLST) also
asks "where does each model go wrong?": which structures a source misses where the others
see them, how well it agrees with the rest, how often QC names it the outlier and which
rules its own masks fail. This module pools the QC table's per-member columns over all
series into that view; vectorised (the ';'-joined columns split as Arrow text, grouped by
integer codes). A QC run's table is kept in shards by series, so the comparison is built from
additive per-shard aggregates (``aggregate``, ``combine``, ``comparison_from``) that give exactly
the whole table's numbers (``bench/report_scale.py`` measures both ways at 100,000 series).

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
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from labels.schema import default_schema
from qc.results import ABSENT
from qc.score import RULES

ALL = "*"  # the structure of a source's row over all structures
OVERALL, STRUCTURE, REGION = "overall", "structure", "region"  # groupings of ``aggregate``: all, each structure, each region
GROUPINGS = (OVERALL, STRUCTURE, REGION)
KEYS = ["grouping", "source", "group"]
COLUMNS = ["source", "structure", "series", "results", "present_where_others_see", "present_alone",
           "agreement_median", "agreement_p10", "outlier_named", *(f"fails_{rule}" for rule in RULES)]
NEEDED = ("series_uid", "bone", "status", "members", "member_agreement", "flags", "outlier_source", "n_sources",
          "n_present")
COUNTS = ["series", "results", "seen", "seen_n", "alone", "alone_n", "outlier", *(f"fails_{rule}" for rule in RULES)]
_TEXT = "large_string[pyarrow]"  # Arrow text: split and cast without a Python object per part
_AUGMENTATION = re.compile(r" \[[^\[\]]*\]$")


def source_of(member: str) -> str:
    """``Member.name`` without its " [augmentation]": "source version", as ``outlier_source`` names it."""
    return _AUGMENTATION.sub("", member)


@dataclass(frozen=True)
class MemberRows:
    """The compared results of a QC table, read once for any grouping of them (``aggregate``)."""

    bones: np.ndarray  # per kept result: its structure
    members: pd.DataFrame  # per (result, member): result, source, present (1/0/NaN unknown), others_present, agreement
    sources: pd.DataFrame  # per (result, source): result, series, source, outlier, fails_<rule> (bools)
    names: pd.Index  # source names by code


@dataclass(frozen=True)
class Aggregates:
    """Additive partial aggregates of a QC table, per (grouping, source, group); ``combine`` adds them up.

    ``counts``: ``KEYS`` + ``COUNTS`` (series, results, sums and counts behind each share); ``agreement``:
    ``KEYS`` + agreement value + how often it occurs, per structure only (the median and 10th percentile need
    every value; a region's or all structures' values are their structures' added up).
    Parts of tables with disjoint series add up to the aggregates of the whole (``series`` counts
    distinct series), so each shard of the QC table keeps its own and the comparison needs no re-read.
    """

    counts: pd.DataFrame
    agreement: pd.DataFrame


def model_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (source, structure) and per source over all structures (``"*"`` first); columns ``COLUMNS``."""
    return comparison_from(aggregate(table))


def comparison_from(parts: Aggregates) -> pd.DataFrame:
    """``model_comparison`` from the (combined) aggregates of the table."""
    found = pd.concat([summary(parts, OVERALL), summary(parts, STRUCTURE)])
    schema = default_schema()
    order = found["structure"].map(lambda name: -1 if name == ALL else schema[name].id)
    return found.assign(_order=order).sort_values(["source", "_order"]).drop(columns="_order").reset_index(drop=True)


def aggregate(table: pd.DataFrame) -> Aggregates:
    """The table's ``Aggregates`` over every grouping of ``GROUPINGS``."""
    rows = member_rows(table)
    groups = {OVERALL: np.full(len(rows.bones), ALL, dtype=object), STRUCTURE: rows.bones, REGION: regions(rows.bones)}
    found = [_aggregate(rows, grouping, groups[grouping]) for grouping in GROUPINGS]
    return Aggregates(pd.concat([c for c, _ in found], ignore_index=True),
                      pd.concat([a for _, a in found], ignore_index=True))


def combine(parts: Sequence[Aggregates]) -> Aggregates:
    """The sum of the aggregates of tables with disjoint series (an empty sequence: no results)."""
    counts = pd.concat([_counts_frame(), *(p.counts for p in parts if len(p.counts))], ignore_index=True)
    agreement = pd.concat([_agreement_frame(), *(p.agreement for p in parts if len(p.agreement))], ignore_index=True)
    return Aggregates(counts.groupby(KEYS, sort=False, as_index=False)[COUNTS].sum(),
                      agreement.groupby([*KEYS, "agreement"], sort=False, as_index=False)["count"].sum())


def summary(parts: Aggregates, grouping: str) -> pd.DataFrame:
    """One row per (source, group) of ``grouping`` with ``COLUMNS`` (the group in ``structure``)."""
    counts = parts.counts[parts.counts["grouping"] == grouping]
    if counts.empty:
        return pd.DataFrame(columns=COLUMNS)
    values = parts.agreement
    if grouping != STRUCTURE:
        group = np.full(len(values), ALL, dtype=object) if grouping == OVERALL else regions(values["group"].to_numpy())
        values = values.assign(group=group).groupby(["source", "group", "agreement"], sort=False, as_index=False)["count"].sum()
    median, p10 = _quantiles(values, counts)
    results = counts["results"].astype(float)
    found = pd.DataFrame({
        "source": counts["source"].to_numpy(dtype=object), "structure": counts["group"].to_numpy(dtype=object),
        "series": counts["series"].to_numpy(dtype=np.int64), "results": counts["results"].to_numpy(dtype=np.int64),
        "present_where_others_see": _share(counts["seen"], counts["seen_n"]),
        "present_alone": _share(counts["alone"], counts["alone_n"]),
        "agreement_median": median, "agreement_p10": p10,
        "outlier_named": _share(counts["outlier"], results),
        **{f"fails_{rule}": _share(counts[f"fails_{rule}"], results) for rule in RULES},
    })
    return found[COLUMNS]


def regions(bones: np.ndarray) -> np.ndarray:
    """Each structure's region: the node right below the schema's root (the root itself stays itself)."""
    schema = default_schema()
    codes, names = pd.factorize(np.asarray(bones, dtype=object))
    found = []
    for name in names:
        chain = [schema[name], *schema.ancestors(name)]
        found.append(chain[-2].name if len(chain) > 1 else chain[-1].name)
    return np.asarray(found, dtype=object)[codes]


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


def _aggregate(rows: MemberRows, grouping: str, groups: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(counts, agreement values) per (source, group); ``groups[i]`` names the group of kept result ``i``."""
    codes, names = pd.factorize(np.asarray(groups, dtype=object))  # grouping by integers, not by text
    member_result, present, others = (rows.members[c].to_numpy() for c in ("result", "present", "others_present"))
    members = pd.DataFrame({
        "source": rows.members["source"].to_numpy(), "group": codes[member_result],
        "seen": np.where(others > 0, present, np.nan),
        "alone": np.where(present == 1, (others == 0).astype(float), np.nan),
        "agreement": rows.members["agreement"].to_numpy(),
    })
    by_member = members.groupby(["source", "group"], sort=False)
    sources = rows.sources.assign(group=codes[rows.sources["result"].to_numpy()])
    by_source = sources.groupby(["source", "group"], sort=False)
    counts = pd.DataFrame({
        "series": by_source["series"].nunique(), "results": by_source.size(),
        "seen": by_member["seen"].sum(), "seen_n": by_member["seen"].count(),
        "alone": by_member["alone"].sum(), "alone_n": by_member["alone"].count(),
        "outlier": by_source["outlier"].sum(), **{f"fails_{rule}": by_source[f"fails_{rule}"].sum() for rule in RULES},
    })
    if grouping != STRUCTURE:  # the values of every other grouping are those of its structures (``summary``)
        return _named(counts.reset_index(), rows, names, grouping), _agreement_frame()
    agreement = members.dropna(subset=["agreement"]).groupby(["source", "group", "agreement"], sort=False).size()
    return _named(counts.reset_index(), rows, names, grouping), _named(agreement.rename("count").reset_index(), rows, names, grouping)


def _named(frame: pd.DataFrame, rows: MemberRows, names: pd.Index, grouping: str) -> pd.DataFrame:
    """Source and group codes replaced by their names (codes differ between tables; names add up)."""
    if frame.empty:
        return _counts_frame() if "results" in frame.columns else _agreement_frame()
    frame.insert(0, "grouping", grouping)
    frame["source"] = np.asarray(rows.names, dtype=object)[frame["source"].to_numpy()]
    frame["group"] = np.asarray(names, dtype=object)[frame["group"].to_numpy()]
    return frame


def _counts_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c in KEYS else float) for c in [*KEYS, *COUNTS]})


def _agreement_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c in KEYS else float) for c in [*KEYS, "agreement", "count"]})


def _share(part: pd.Series, whole: pd.Series) -> np.ndarray:
    """part / whole as pandas' mean gives it (sums of 0/1 are exact), NaN where nothing counts."""
    part, whole = part.to_numpy(dtype=float), whole.to_numpy(dtype=float)
    found = np.full(len(part), np.nan)
    np.divide(part, whole, out=found, where=whole > 0)
    return found


def _quantiles(agreement: pd.DataFrame, counts: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Median and 10th percentile (linear) of each (source, group)'s agreement values, as pandas computes them."""
    key = pd.MultiIndex.from_frame(counts[["source", "group"]])
    median, p10 = np.full(len(counts), np.nan), np.full(len(counts), np.nan)
    ordered = agreement.sort_values("agreement", kind="stable")
    for (source, group), values in ordered.groupby(["source", "group"], sort=False):
        at = key.get_loc((source, group))
        value, cumulative = values["agreement"].to_numpy(dtype=float), np.cumsum(values["count"].to_numpy(dtype=np.int64))
        n = int(cumulative[-1])

        def nth(rank: int) -> float:
            return float(value[np.searchsorted(cumulative, rank, side="right")])

        median[at] = nth(n // 2) if n % 2 else (nth(n // 2) + nth(n // 2 - 1)) / 2
        position = 0.1 * (n - 1)
        low, fraction = int(position), position % 1
        p10[at] = nth(low) if fraction == 0.0 else nth(low) + (nth(low + 1) - nth(low)) * fraction
    return median, p10


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
