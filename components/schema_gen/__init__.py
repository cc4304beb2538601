"""Schema: imported from a curated file (ImportSchemaGen) or inferred from statistics (SchemaGen).

Modules:
- `component`: both declarations.
- `schema_io`: a Schema artifact's `schema.pbtxt`, read and written (every component that needs a
  schema reads it through `load_schema`), and what a feature allows (`allowed_non_finite`).
- `inference`: schema inference from statistics and its commented text.
- `columns`: what kind of values a string column holds (categories, free text, dates, ids).
"""

from components.schema_gen.component import ImportSchemaGen, ImportSchemaParams, SchemaGen, SchemaGenParams

__all__ = ["ImportSchemaGen", "ImportSchemaParams", "SchemaGen", "SchemaGenParams"]
