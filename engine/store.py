"""What a state store is: the async interface every backend implements."""

from __future__ import annotations

from typing import ClassVar

from watchkeeper.schema.daemon import StoreOptions


class StateStore:
    """Base of state store plugins: a `type`, an `Options` model and the store's methods."""

    type: ClassVar[str]
    Options: ClassVar[type[StoreOptions]]
    shared: ClassVar[bool] = False
    """True when several daemons may share the store (replicas)."""
