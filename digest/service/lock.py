"""One `digest run` per state store (the lock itself lives in :mod:`digest.store.lock`)."""

from __future__ import annotations

from digest.store.lock import ServiceLock, acquire, holder, lock_path

__all__ = ["ServiceLock", "acquire", "holder", "lock_path"]
