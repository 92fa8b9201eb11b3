"""The catalogue watcher: keeps `persistence.CatalogueVersions` fed with what changed.

Composition: start `catalogue_watcher_spec(url, versions)` in the system and hand the
same `CatalogueVersions` to whatever caches what it derives from users' agents and flows.
"""

from __future__ import annotations

from ._watcher import CatalogueWatcher as CatalogueWatcher
from ._watcher import catalogue_watcher_spec as catalogue_watcher_spec

__all__ = ["CatalogueWatcher", "catalogue_watcher_spec"]
