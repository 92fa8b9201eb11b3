"""The catalogue watcher: keeps `persistence.CatalogueVersions` fed with what changed.

Composition: start `catalogue_watcher_spec(url, versions)` in the system and hand the
same `CatalogueVersions` to whatever caches what it derives from users' agents and flows.
`ChannelWatcher` is its listening machinery, for other channels (the log relay's).
"""

from __future__ import annotations

from ._watcher import CatalogueWatcher as CatalogueWatcher
from ._watcher import ChannelWatcher as ChannelWatcher
from ._watcher import catalogue_watcher_spec as catalogue_watcher_spec

__all__ = ["CatalogueWatcher", "ChannelWatcher", "catalogue_watcher_spec"]
