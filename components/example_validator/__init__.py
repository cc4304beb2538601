"""ExampleValidator: the data gate; statistics against the schema and the previous span.

Modules:
- `component`: the declaration and the gate's decision;
- `anomalies`: the checks, as TFDV's Anomalies proto;
- `page`: statistics.html.
"""

from components.example_validator.component import ExampleValidator, ExampleValidatorParams

__all__ = ["ExampleValidator", "ExampleValidatorParams"]
