"""Collections: the named sets of records, with their model and the vector collection in use.

Reads are served from memory (every request checks its collection); changes go to the record
store first, then the vector store. A model switch (re-embed) swaps ``vector_name`` in one step.

A collection has up to three vector collections, one per model, never mixed: the current one
(``vector_name``, searched), a shadow being built for the next model (``shadow_vector_name``) and the
previous one kept warm for a rollback (``config["previous_vector_name"]``). A ``Collection`` is never
changed in place: every change replaces the object, so a search that read it keeps one consistent
(model, vector collection) pair until it finishes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shoal.errors import CollectionNotFound, Conflict, InvalidInput
from shoal.records import Collection, RecordStore
from shoal.vectors import VectorStore

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def vector_name_for(name: str, model: str) -> str:
    """Vector collection name for ``name`` embedded by ``model`` (one per model: no mixing)."""
    safe = re.sub(r"[^A-Za-z0-9]+", "-", model).strip("-").lower()
    return f"{name}__{safe}"


@dataclass(frozen=True, slots=True)
class Target:
    """One vector collection of a collection and the model whose vectors it holds."""

    vector_name: str
    model: str
    role: str
    """``current``, ``shadow`` or ``previous``."""


def targets(collection: Collection) -> list[Target]:
    """Every vector collection that new records must be written to, the current one first."""
    found = [Target(collection.vector_name, collection.model, "current")]
    if collection.shadow_vector_name and collection.shadow_model:
        found.append(Target(collection.shadow_vector_name, collection.shadow_model, "shadow"))
    previous, previous_model = collection.config.get("previous_vector_name"), collection.config.get("previous_model")
    if previous and previous_model and previous != collection.vector_name:
        found.append(Target(previous, previous_model, "previous"))
    return found


class Collections:
    def __init__(self, records: RecordStore, vectors: VectorStore, *, model: str, dim: int) -> None:
        self._records = records
        self._vectors = vectors
        self._model = model
        self._dim = dim
        self._by_name: dict[str, Collection] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def load(self) -> None:
        self._by_name = {c.name: c for c in await self._records.list_collections()}

    async def refresh(self, name: str) -> Collection | None:
        found = await self._records.get_collection(name)
        if found is None:
            self._by_name.pop(name, None)
        else:
            self._by_name[name] = found
        return found

    def cached(self, name: str) -> Collection | None:
        return self._by_name.get(name)

    async def get(self, name: str) -> Collection:
        """The collection, or ``CollectionNotFound`` (looked up again in the store on a miss, so a
        collection created by another process is found)."""
        found = self._by_name.get(name) or await self.refresh(name)
        if found is None:
            raise CollectionNotFound(f"collection {name!r} does not exist")
        return found

    def list(self) -> list[Collection]:
        return sorted(self._by_name.values(), key=lambda c: c.name)

    async def create(
        self, name: str, *, config: dict[str, Any] | None = None, sparse: bool = False, exist_ok: bool = False
    ) -> Collection:
        if not NAME_RE.match(name):
            raise InvalidInput(
                "name: must be 1-64 characters of letters, digits, '_', '-' or '.', starting with a letter or digit"
            )
        collection = Collection(
            name=name,
            dim=self._dim,
            model=self._model,
            created_at=datetime.now(UTC),
            vector_name=vector_name_for(name, self._model),
            config={**(config or {}), "sparse": sparse},
        )
        created = await self._records.create_collection(collection)
        if not created:
            if exist_ok:
                # Another process may have written the row and not yet (or never, if it died) the
                # vector collection: creating it is idempotent.
                existing = await self.get(name)
                await self._ensure_vectors(existing)
                return existing
            raise Conflict(f"collection {name!r} already exists")
        await self._vectors.create_collection(collection.vector_name, collection.dim, sparse=sparse)
        self._by_name[name] = collection
        return collection

    async def _ensure_vectors(self, collection: Collection) -> None:
        await self._vectors.create_collection(
            collection.vector_name, collection.dim, sparse=bool(collection.config.get("sparse"))
        )

    async def ensure(self, name: str, *, sparse: bool = False, config: dict[str, Any] | None = None) -> Collection:
        """Get ``name``, creating it on first use (features own collections such as ``tweets``)."""
        if (cached := self._by_name.get(name)) is not None:
            return cached
        found = await self.refresh(name)
        if found is not None:
            await self._ensure_vectors(found)  # the creator may have died before writing it
            return found
        return await self.create(name, sparse=sparse, config=config, exist_ok=True)

    async def update(self, collection: Collection) -> None:
        await self._records.update_collection(collection)
        self._by_name[collection.name] = collection

    async def delete(self, name: str) -> None:
        collection = await self.get(name)
        await self._records.delete_collection(name)
        for target in targets(collection):
            await self._vectors.drop_collection(target.vector_name)
        self._by_name.pop(name, None)

    # -- model switches -------------------------------------------------------------------------
    async def modify(self, name: str, change: Callable[[Collection], Collection]) -> Collection:
        """Apply ``change`` to the stored collection and save the result, one change at a time per
        collection (re-read first, so no change is lost to a stale copy)."""
        async with self._locks.setdefault(name, asyncio.Lock()):
            current = await self.refresh(name)
            if current is None:
                raise CollectionNotFound(f"collection {name!r} does not exist")
            changed = change(current)
            await self.update(changed)
            return changed

    async def start_shadow(self, name: str, model: str, dim: int) -> Collection:
        """Create (or resume) the shadow vector collection for ``model``.

        Raises:
            InvalidInput: ``model`` is already the current model.
            Conflict: a shadow for another model is being built.
        """
        collection = await self.get(name)
        if model == collection.model:
            raise InvalidInput(f"model: {name!r} already uses {model!r}")
        if collection.shadow_model not in (None, model):
            raise Conflict(f"{name!r} is switching to {collection.shadow_model!r}: finish it or roll it back first")
        vector_name = vector_name_for(name, model)
        await self._vectors.create_collection(vector_name, dim, sparse=bool(collection.config.get("sparse")))

        def change(c: Collection) -> Collection:
            config = dict(c.config, shadow_dim=dim)
            if config.get("previous_vector_name") == vector_name:
                # switching back to the previous model: its warm collection becomes the shadow
                for key in ("previous_vector_name", "previous_model", "previous_dim"):
                    config.pop(key, None)
            return dataclasses.replace(c, shadow_vector_name=vector_name, shadow_model=model, config=config)

        return await self.modify(name, change)

    async def promote(self, name: str) -> Collection:
        """Make the shadow current in one step; the old current becomes the previous (kept warm)."""

        def change(c: Collection) -> Collection:
            if not c.shadow_vector_name or not c.shadow_model:
                raise Conflict(f"{name!r} has no shadow to promote")
            config = dict(c.config)
            dim = int(config.pop("shadow_dim", c.dim))
            config.update(previous_vector_name=c.vector_name, previous_model=c.model, previous_dim=c.dim)
            return dataclasses.replace(
                c,
                vector_name=c.shadow_vector_name,
                model=c.shadow_model,
                dim=dim,
                shadow_vector_name=None,
                shadow_model=None,
                config=config,
            )

        return await self.modify(name, change)

    async def rollback(self, name: str) -> Collection:
        """Undo the last switch: swap current and previous in one step; with no previous but a shadow
        in progress, abandon the shadow (its vectors are dropped).

        Raises:
            Conflict: there is nothing to roll back.
        """
        dropped: list[str] = []

        def change(c: Collection) -> Collection:
            config = dict(c.config)
            previous = config.get("previous_vector_name")
            if previous and config.get("previous_model"):
                config.update(previous_vector_name=c.vector_name, previous_model=c.model, previous_dim=c.dim)
                return dataclasses.replace(
                    c,
                    vector_name=previous,
                    model=c.config["previous_model"],
                    dim=int(c.config.get("previous_dim", c.dim)),
                    config=config,
                )
            if c.shadow_vector_name:
                dropped.append(c.shadow_vector_name)
                config.pop("shadow_dim", None)
                return dataclasses.replace(c, shadow_vector_name=None, shadow_model=None, config=config)
            raise Conflict(f"{name!r} has no previous model and no switch in progress")

        changed = await self.modify(name, change)
        for vector_name in dropped:
            await self._vectors.drop_collection(vector_name)
        return changed

    async def drop_previous(self, name: str) -> Collection:
        """Stop keeping the previous model's vectors (no rollback after this)."""
        dropped: list[str] = []

        def change(c: Collection) -> Collection:
            config = dict(c.config)
            previous = config.pop("previous_vector_name", None)
            config.pop("previous_model", None)
            config.pop("previous_dim", None)
            if previous is None:
                raise Conflict(f"{name!r} keeps no previous model")
            dropped.append(previous)
            return dataclasses.replace(c, config=config)

        changed = await self.modify(name, change)
        for vector_name in dropped:
            await self._vectors.drop_collection(vector_name)
        return changed
