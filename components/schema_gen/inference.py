"""Schema inference from statistics, as TFDV infers one, and the commented text it is written as:
each feature says what was decided and where to tighten it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class InferredSchema:
    """A Schema proto and, per feature, what inference decided and why (one line each)."""

    proto: Any  # schema_pb2.Schema
    notes: dict = field(default_factory=dict)
    kinds: dict = field(default_factory=dict)  # string feature -> columns.DATE, DATETIME, TEXT, ...

    def explanation(self) -> list[str]:
        return [f"{name}: {note}" for name, note in self.notes.items()]


def infer_schema(datasets, max_domain_size: int = 20) -> InferredSchema:
    """A Schema from the DatasetFeatureStatistics of one or more splits, as TFDV infers one, left
    open where the data cannot tell: a feature's type; required (present once in every example)
    or optional; a closed string domain (the union of the values seen) only for a string with few
    distinct values that repeat, never for free text or dates (`columns.value_kind`, recorded in
    `kinds`) nor ids; no numeric range. Where a
    person tightens it is written in the notes (and, by `schema_text`, in the file)."""
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tensorflow_metadata.proto.v0 import statistics_pb2 as stats_pb

    from components.statistics_gen.statistics import feature_stats

    datasets = datasets if isinstance(datasets, (list, tuple)) else [datasets]
    types = {
        stats_pb.FeatureNameStatistics.INT: schema_pb2.INT,
        stats_pb.FeatureNameStatistics.FLOAT: schema_pb2.FLOAT,
    }
    per_split = [feature_stats(d) for d in datasets]
    names = sorted({name for stats in per_split for name in stats})
    examples = sum(d.num_examples for d in datasets)
    inferred = InferredSchema(schema_pb2.Schema())
    for name in names:
        seen = [stats[name] for stats in per_split if name in stats]
        kinds = {types.get(s.type, schema_pb2.BYTES) for s in seen}
        kind = schema_pb2.BYTES if schema_pb2.BYTES in kinds else max(kinds)
        feature = inferred.proto.feature.add(name=name, type=kind)
        commons = [_common(s) for s in seen]
        present = sum(c.num_non_missing for c in commons)
        fewest = min(c.min_num_values for c in commons)
        most = max(c.max_num_values for c in commons)
        notes = []
        feature.presence.min_count = 1
        if present == examples and fewest == most == 1:
            feature.presence.min_fraction = 1.0
            feature.shape.dim.add(size=1)
            notes.append("required (in every example)")
        else:
            feature.value_count.min, feature.value_count.max = fewest, most
            notes.append(
                f"optional (missing in {examples - present} of {examples} examples; "
                "set presence.min_fraction to require a share)"
            )
        if kind == schema_pb2.BYTES:
            note, kind = _string_domain(inferred.proto, feature, seen, present, examples, max_domain_size)
            notes.append(note)
            if kind:
                inferred.kinds[name] = kind
        elif present:
            low = min(s.num_stats.min for s in seen if _common(s).num_non_missing)
            high = max(s.num_stats.max for s in seen if _common(s).num_non_missing)
            what = "int" if kind == schema_pb2.INT else "float"
            notes.append(
                f"{what}, seen from {low:g} to {high:g}; no range set (add "
                f"{what}_domain {{ min: ... max: ... }} to check one)"
            )
        inferred.notes[name] = "; ".join(notes)
    return inferred


def _common(stats):
    return stats.string_stats.common_stats if stats.HasField("string_stats") else stats.num_stats.common_stats


def _string_domain(schema, feature, seen, present: int, examples: int, max_domain_size: int):
    """Gives `feature` a closed domain when its values are few and repeat and are neither dates
    nor free text (`columns.value_kind`); returns the note and that kind (None for neither)."""
    from components.schema_gen.columns import value_kind

    counts: dict[str, int] = {}
    for s in seen:
        if s.HasField("string_stats"):
            for b in s.string_stats.rank_histogram.buckets:
                counts[b.label] = counts.get(b.label, 0) + int(b.sample_count)
    values = sorted(counts)
    distinct = max([len(values), *(s.string_stats.unique for s in seen if s.HasField("string_stats"))])
    kind = value_kind(counts, present, examples, distinct)
    if kind:
        return (
            f"string, open: {kind} ({distinct} distinct value(s), e.g. {values[0][:40]!r}); never a closed list",
            kind,
        )
    if 0 < distinct <= max_domain_size and distinct * 2 <= present:
        schema.string_domain.add(name=feature.name, value=values)
        feature.domain = feature.name
        return (
            f"string, closed domain of {distinct} value(s) (a new value is an anomaly; "
            "add it to string_domain to accept it)",
            None,
        )
    why = "too many to list" if distinct > max_domain_size else "most appear once"
    return f"string, open: {distinct} distinct value(s), {why} (free text or ids?); not a closed list", None


def schema_text(inferred: InferredSchema, source: str) -> str:
    """The schema in text format, each feature preceded by a comment saying what was inferred and
    where a person tightens it; `text_format` reads the comments as such."""
    from google.protobuf import text_format

    lines = [
        f"# Inferred from {source}: a start for a curated schema.",
        "# Nothing here is pinned to the extremes seen: numeric ranges and presence are left open and",
        "# only strings with few, repeating values get a closed domain. Tighten what you know.",
        "",
    ]
    if inferred.proto.default_environment:
        lines += [
            "# Environments, as TFDV's: every feature is expected in each of these, except where a",
            "# feature says not_in_environment (the label, in rows to score: SERVING).",
            *(f'default_environment: "{e}"' for e in inferred.proto.default_environment),
            "",
        ]
    for feature in inferred.proto.feature:
        lines.append(f"# {feature.name}: {inferred.notes.get(feature.name, '')}")
        body = text_format.MessageToString(feature, indent=2).rstrip("\n")
        lines += ["feature {", body, "}"]
    for domain in inferred.proto.string_domain:
        lines += ["string_domain {", text_format.MessageToString(domain, indent=2).rstrip("\n"), "}"]
    return "\n".join(lines) + "\n"
