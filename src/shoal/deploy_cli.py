"""``shoal export``: a collection's records from a running server to JSON Lines (optionally gzip).

Each line is one record in the shape ``shoal import`` reads back unchanged::

    {"id": "r1", "text": "...", "ts": "2025-01-20T10:00:00+00:00", "lang": "en", ...}

The payload's keys sit beside ``id``, ``text`` and ``ts`` (``shoal import --id-field id --ts-field ts``
turns every other column back into the payload). A payload key that collides with ``id`` or ``text``
is written with a leading ``_``, which ``shoal import`` strips (user payload keys never start with
``_``). ``--vectors`` adds each record's current vector under ``_vector`` for other tools.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Optional

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shoal.cli import KeyOpt, UrlOpt, client, console

TOP_LEVEL = frozenset({"id", "text", "ts"})
VECTOR_KEY = "_vector"


def export_line(record: dict[str, Any]) -> bytes:
    """One exported record (as ``GET /v1/collections/{c}/records`` returns it) as a JSONL line."""
    row: dict[str, Any] = {"id": record["id"], "text": record["text"], "ts": record["ts"]}
    for key, value in record["payload"].items():
        row[f"_{key}" if key in TOP_LEVEL else key] = value
    if record.get("vector") is not None:
        row[VECTOR_KEY] = record["vector"]
    return orjson.dumps(row) + b"\n"


def open_output(path: Path) -> gzip.GzipFile | io.BufferedWriter:
    """``path`` for writing; gzip-compressed when it ends in ``.gz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        return gzip.GzipFile(path, "wb")
    return path.open("wb")


async def pages(
    url: str, api_key: str | None, collection: str, *, page_size: int, vectors: bool
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every record of ``collection`` in id order, one page at a time (keyset pagination)."""
    async with client(url, api_key) as http:
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": page_size, "with_vectors": str(vectors).lower()}
            if after is not None:
                params["after"] = after
            r = await http.get(f"/v1/collections/{collection}/records", params=params)
            if r.status_code != 200:
                console.print(f"[red]{r.status_code}[/red] {r.text[:300]}")
                raise typer.Exit(1)
            page = r.json()
            if page["records"]:
                yield page["records"]
            after = page["next"]
            if after is None:
                return


async def count(url: str, api_key: str | None, collection: str) -> int | None:
    async with client(url, api_key) as http:
        r = await http.get(f"/v1/collections/{collection}/stats")
        return int(r.json()["count"]) if r.status_code == 200 else None


def export(
    collection: Annotated[str, typer.Option("--collection", "-c", help="collection to export")],
    out: Annotated[Path, typer.Option("--out", "-o", dir_okay=False, help="FILE.jsonl or FILE.jsonl.gz")],
    url: UrlOpt = "http://127.0.0.1:8080",
    api_key: KeyOpt = None,
    vectors: Annotated[bool, typer.Option("--vectors", help="add each record's vector under _vector")] = False,
    page_size: Annotated[int, typer.Option(min=1, max=1000, help="records per request")] = 500,
    limit: Annotated[Optional[int], typer.Option(help="stop after this many records")] = None,  # noqa: UP045
) -> None:
    """Write a collection's records (text, payload, ts) from a running server to JSON Lines."""

    async def run() -> int:
        written = 0
        total = await count(url, api_key, collection)
        with (
            open_output(out) as fh,
            Progress(
                TextColumn("[bold]exporting"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as progress,
        ):
            task = progress.add_task("export", total=total if limit is None else min(limit, total or limit))
            async for page in pages(url, api_key, collection, page_size=page_size, vectors=vectors):
                for record in page[: None if limit is None else limit - written]:
                    fh.write(export_line(record))
                    written += 1
                progress.update(task, completed=written)
                if limit is not None and written >= limit:
                    break
        return written

    started = time.perf_counter()
    written = asyncio.run(run())
    console.print(
        f"[green]exported {written} records of {collection!r} to {out}[/green] "
        f"in {time.perf_counter() - started:.1f} s — re-import with: "
        f"shoal import {out} -c {collection} --id-field id --ts-field ts"
    )


def register(app: typer.Typer) -> None:
    """Add ``shoal export`` to the command line."""
    app.command("export")(export)
