"""Pusher: a blessed model that passes a smoke check, copied atomically to TF Serving's layout.

Modules:
- `component`: the declaration, the versioned copy;
- `smoke`: the smoke check, run as a script in a fresh process.
"""

from components.pusher.component import Pusher, PusherParams

__all__ = ["Pusher", "PusherParams"]
