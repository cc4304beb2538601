"""Schema: imported from a curated file (ImportSchemaGen) or inferred from statistics (SchemaGen).

Modules:
- `component`: both declarations, schema inference and its commented text.
"""

from components.schema_gen.component import ImportSchemaGen, ImportSchemaParams, SchemaGen, SchemaGenParams

__all__ = ["ImportSchemaGen", "ImportSchemaParams", "SchemaGen", "SchemaGenParams"]
