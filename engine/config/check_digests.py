"""Digests of check models, so that a reload's child sends only the checks that changed.

A reload of ten thousand checks of which five changed used to send, unpickle and drop
ten thousand models: the daemon kept its running ones anyway, and the churn left memory
behind each time. The daemon now hands the child a digest of each running check; the
child digests the checks it validated with the same function and sends, in place of a
check whose digest matches, a mark that means "the one you run".

A digest covers everything a model holds, secrets included (a changed password is a
changed check), and is keyed with a random key of the daemon process: it means nothing
outside the daemon and its child, and tells nothing about a secret. Equal digests mean
equal models; unequal digests only mean the model is sent, as it always was (a field
that holds a set of strings may hash in another order in another process: sent, not
wrongly kept).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from collections.abc import Mapping
from typing import Any

KEY = os.urandom(16)
"""This process's key: the daemon's, handed to its child with the digests."""


def _model(*parts: Any) -> None:
    """Stands in for a model in a digest's pickle (never called)."""


def _type(*parts: Any) -> None:
    """Stands in for a class in a digest's pickle (never called)."""


class _DigestPickler(pickle.Pickler):
    """Pickles a model as its class's name, its fields in order and the names of the fields
    set (sorted: a set's order differs between processes), classes by name (a config's
    check classes are made per file, under the same names)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type):
            return _type, (obj.__module__, obj.__qualname__)
        fields_set = getattr(obj, "__pydantic_fields_set__", None)
        if fields_set is not None and not isinstance(obj, type):
            return _model, (
                type(obj),
                tuple(sorted(fields_set)),
                obj.__dict__,
                obj.__pydantic_extra__,
                getattr(obj, "__pydantic_private__", None),
            )
        return NotImplemented


def digest(model: Any, key: bytes = KEY) -> bytes | None:
    """The digest of a check model under `key`; None if it cannot be taken (then the
    model is always sent)."""
    buffer = io.BytesIO()
    pickler = _DigestPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    # no memo: an object two fields share is written twice, so that equal models digest
    # alike however their values came to be shared (`_Sharer` in the child)
    pickler.fast = True
    try:
        pickler.dump(model)
    except Exception:  # a value pickle cannot write: compared the old way, as a model
        return None
    return hashlib.blake2b(buffer.getvalue(), key=key, digest_size=16).digest()


class CheckDigests:
    """The daemon's digests of its running checks, kept while a check's model is the same
    object, so that each reload digests only the checks the previous one brought."""

    def __init__(self, key: bytes = KEY) -> None:
        self.key = key
        self._known: dict[str, tuple[Any, bytes | None]] = {}

    def of(self, checks: Mapping[str, Any]) -> dict[str, bytes]:
        """Check name -> digest of every check of `checks` that has one."""
        known, kept = self._known, {}
        for name, model in checks.items():
            entry = known.get(name)
            if entry is None or entry[0] is not model:
                entry = (model, digest(model, self.key))
            kept[name] = entry
        self._known = kept
        return {name: d for name, (_, d) in kept.items() if d is not None}

    def payload(self, checks: Mapping[str, Any]) -> bytes:
        """What the child reads on its stdin: the key and the digests of `checks`."""
        return pickle.dumps(
            {"key": self.key, "digests": self.of(checks)}, protocol=pickle.HIGHEST_PROTOCOL
        )
