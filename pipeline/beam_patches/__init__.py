"""Speed patches to Apache Beam, each a small module with the measurement that justifies it and
the change to offer upstream. They are applied only on the Beam version they were written and
tested for (`PATCHED_FOR`): on any other the pipeline runs on Beam as it is, slower, and
`tests/test_beam_patches.py` fails, saying to check each patch against the new version.

- `dofn_specs`: `userstate.get_dofn_specs` once per DoFn class (2.4 s of a cold run).
- `option_views`: `PipelineOptions.view_as` keeps its views (15% of Transform's time).
"""

from __future__ import annotations

PATCHED_FOR = "2.77.0"


def apply_all() -> bool:
    """Applies every patch if the installed Beam is `PATCHED_FOR`; returns whether it did."""
    import apache_beam

    if apache_beam.__version__ != PATCHED_FOR:
        return False
    from pipeline.beam_patches import dofn_specs, option_views

    dofn_specs.apply()
    option_views.apply()
    return True
