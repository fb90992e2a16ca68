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


SIZE = 16
"""Bytes of a digest."""
NONE = bytes(SIZE)
"""In place of the digest of a model that has none: never matched, the model is sent."""


class CheckDigests:
    """The daemon's digests of its running checks, kept while each check's model is the
    same object, so that each reload digests only the checks the previous one brought.

    Kept flat (the models in order and their digests end to end): 16 bytes and a
    reference a check, rather than a few small objects each that would outlive a reload.
    """

    def __init__(self, key: bytes = KEY) -> None:
        self.key = key
        self._models: tuple[Any, ...] = ()
        self._digests = b""

    def of(self, checks: Mapping[str, Any]) -> bytes:
        """The digests of `checks` in their order, `SIZE` bytes each (`NONE` for a model
        that has none)."""
        models, view = self._models, memoryview(self._digests)
        out = bytearray()
        for index, model in enumerate(checks.values()):
            if index < len(models) and models[index] is model:
                out += view[index * SIZE : (index + 1) * SIZE]
            else:
                out += digest(model, self.key) or NONE
        self._models, self._digests = tuple(checks.values()), bytes(out)
        return self._digests

    def payload(self, checks: Mapping[str, Any]) -> bytes:
        """What the child reads on its stdin: the key, the names of `checks` and their
        digests."""
        known = {"key": self.key, "names": list(checks), "digests": self.of(checks)}
        return pickle.dumps(known, protocol=pickle.HIGHEST_PROTOCOL)


def unchanged(checks: Mapping[str, Any], known: Mapping[str, Any]) -> set[str]:
    """Names of the checks of `checks` (the child's) whose digest is the daemon's for the
    same name (`known`: what `payload` wrote)."""
    key, names, digests = known["key"], known["names"], known["digests"]
    theirs = {name: digests[i * SIZE : (i + 1) * SIZE] for i, name in enumerate(names)}
    return {
        name
        for name, check in checks.items()
        if (d := theirs.get(name, NONE)) != NONE and digest(check, key) == d
    }


def well_formed(known: Any) -> bool:
    """Whether `known` is what `payload` writes."""
    if not isinstance(known, dict):
        return False
    key, names, digests = known.get("key"), known.get("names"), known.get("digests")
    return (
        isinstance(key, bytes)
        and isinstance(names, list)
        and all(isinstance(name, str) for name in names)
        and isinstance(digests, bytes)
        and len(digests) == SIZE * len(names)
    )
