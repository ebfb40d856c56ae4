"""One module per dataset; importing this package registers every one of them.

Each module here (except ``base``) implements one dataset type of ajepa.config and
registers it with :func:`~ajepa.data.sources.base.register`. The modules are found by
listing this folder, so a new dataset is its module plus its config type, nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil

from ajepa.data.sources.base import SOURCES, DatasetSource, Source, TaskSpec, register, source_for

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["SOURCES", "DatasetSource", "Source", "TaskSpec", "register", "source_for"]
