"""Collections: the named sets of records, with their model and the vector collection in use.

Reads are served from memory (every request checks its collection); changes go to the record
store first, then the vector store. A model switch (re-embed) swaps ``vector_name`` in one step.
"""

from __future__ import annotations

import re
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


class Collections:
    def __init__(self, records: RecordStore, vectors: VectorStore, *, model: str, dim: int) -> None:
        self._records = records
        self._vectors = vectors
        self._model = model
        self._dim = dim
        self._by_name: dict[str, Collection] = {}

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
                return await self.get(name)
            raise Conflict(f"collection {name!r} already exists")
        await self._vectors.create_collection(collection.vector_name, collection.dim, sparse=sparse)
        self._by_name[name] = collection
        return collection

    async def ensure(self, name: str, *, sparse: bool = False, config: dict[str, Any] | None = None) -> Collection:
        """Get ``name``, creating it on first use (features own collections such as ``tweets``)."""
        found = self._by_name.get(name) or await self.refresh(name)
        if found is not None:
            return found
        return await self.create(name, sparse=sparse, config=config, exist_ok=True)

    async def update(self, collection: Collection) -> None:
        await self._records.update_collection(collection)
        self._by_name[collection.name] = collection

    async def delete(self, name: str) -> None:
        collection = await self.get(name)
        await self._records.delete_collection(name)
        for vector_name in {collection.vector_name, collection.shadow_vector_name} - {None}:
            assert vector_name is not None
            await self._vectors.drop_collection(vector_name)
        self._by_name.pop(name, None)
