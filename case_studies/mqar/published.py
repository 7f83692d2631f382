"""The published MQAR numbers the parts set beside ours, with their source.

``PUBLISHED_BY_SETTING[(mixer, d_model, T, kv)]``: a published accuracy for one setting, where a source gives
one per setting; the main study's ``tables.PUBLISHED`` holds the reference sheet's one reading per
(mixer, d_model). See the README's "Published numbers" for what could and could not be traced.
"""

from __future__ import annotations

SOURCE = "none traced per setting; see the README"
PUBLISHED_BY_SETTING: dict[tuple[str, int, int, int], float] = {}
