"""The history browser (`runner.py ui`): read-only web pages over a metadata store's runs, models,
lineage and impact, served by Flask on 127.0.0.1 by default.

- `app`: the Flask application (`create_app`) and `serve`; its routes are listed there;
- `queries`: what the pages read beyond `pipeline.history` (a page of runs, one run, one model),
  in queries whose cost does not grow with the history, and the read-only store;
- `graph`: lineage and run graphs laid out by igraph and drawn as SVG;
- `trend`: a metric across the models, blessed and not told apart.
"""

from pipeline.ui.app import create_app, serve

__all__ = ["create_app", "serve"]
