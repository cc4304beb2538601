"""Patch: `PipelineOptions.view_as` keeps the views it made instead of building each anew.

Beam 2.77 asks the pipeline's options for their `TypeOptions` view on every transform it applies
and in every type-hint check (`typehints.is_consistent_with`), and each `view_as` builds the view
anew: an argparse parser of every registered option, parsing the flags again (0.26 ms here). TF
Transform's pipeline makes thousands of such checks: 15% of Transform's time on the embedded data
(py-spy). A view holds no state of its own (its values live in the `_all_options` dict it shares
with the object it came from), so each object keeps the views it made, one per class (outside the
object, which gets pickled), while it shares that dict.

Upstream (apache/beam, sdks/python/apache_beam/options/pipeline_options.py): cache views in
`PipelineOptions.view_as` keyed by class while `_all_options` and `_flags` are unchanged, or build
the argparse parser once per set of registered option classes.
"""

from __future__ import annotations

import weakref


def apply() -> None:
    """Replaces `PipelineOptions.view_as` (once; later calls do nothing)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    original = PipelineOptions.view_as
    if getattr(original, "memoized", False):
        return

    made: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def view_as(self, cls):
        try:
            views = made.setdefault(self, {})
        except TypeError:  # not weakly referable or not hashable: as Beam does
            return original(self, cls)
        view = views.get(cls)
        if view is None or view._all_options is not self._all_options or view._flags is not self._flags:
            view = views[cls] = original(self, cls)
        return view

    view_as.memoized = True  # type: ignore[attr-defined]  # marks the patch as applied
    view_as.original = original  # type: ignore[attr-defined]
    view_as.__doc__ = original.__doc__
    PipelineOptions.view_as = view_as
