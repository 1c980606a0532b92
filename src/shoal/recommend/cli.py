"""``shoal import-items FILE --preset amazon-csv|snap|jsonl``: load a catalog into ``items``.

Registered by ``shoal.cli`` through ``register(app)``. Items go through a running server's records
API, like ``shoal import``, so they are durable, validated and embedded by the same pipeline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shoal.importer import ImportSummary, Row, batched, post_batch, read_rows
from shoal.recommend.catalog import PRESETS, preset_mapping


def item_records(path: Path, preset: str, summary: ImportSummary, limit: int | None = None) -> Iterator[Row]:
    """Records of the catalog file; rows without text and repeated ids (first one wins) are skipped."""
    mapping, fmt = preset_mapping(preset)
    ids: set[str] = set()
    for i, row in enumerate(read_rows(path, fmt)):
        if limit is not None and i >= limit:
            return
        summary.read += 1
        record = mapping.to_record(row, i)
        if record is None or record["id"] in ids:
            summary.skipped += 1
            continue
        ids.add(record["id"])
        yield record


async def import_items(
    http: httpx.AsyncClient,
    path: Path,
    preset: str,
    *,
    collection: str = "items",
    batch: int = 500,
    limit: int | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Send the catalog to the server behind ``http``; returns counts (read, sent, skipped, failed)."""
    summary = ImportSummary()
    r = await http.post("/v1/collections", json={"name": collection})
    if r.status_code not in (201, 409):
        raise typer.BadParameter(f"cannot create collection {collection!r}: {r.status_code} {r.text}")
    task = progress.add_task("import", total=None, rate="") if progress is not None else None
    started = time.perf_counter()
    for chunk in batched(item_records(path, preset, summary, limit), batch):
        try:
            await post_batch(http, f"/v1/collections/{collection}/records", {"records": chunk})
            summary.sent += len(chunk)
        except httpx.HTTPStatusError as exc:
            summary.failed += len(chunk)
            summary.errors.append(exc.response.text[:300])
        if progress is not None and task is not None:
            rate = summary.sent / max(time.perf_counter() - started, 1e-9)
            progress.update(task, completed=summary.sent + summary.failed, rate=f"{rate:,.0f} items/s")
    return summary


def import_items_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="catalog file (optionally .gz)")],
    preset: Annotated[str, typer.Option("--preset", "--format", help=f"one of {', '.join(PRESETS)}")] = "amazon-csv",
    collection: Annotated[str, typer.Option("--collection", "-c")] = "items",
    url: Annotated[str, typer.Option("--url", envvar="SHOAL_URL", help="server base URL")] = "http://127.0.0.1:8080",
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="SHOAL_API_KEY")] = None,  # noqa: UP045
    batch: Annotated[int, typer.Option(min=1, max=1000)] = 500,
    limit: Annotated[Optional[int], typer.Option(help="stop after this many rows")] = None,  # noqa: UP045
) -> None:
    """Load catalog items (id, title, category, price, ... as payload) into a collection."""
    from shoal.cli import client, console

    if preset not in PRESETS:
        raise typer.BadParameter(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    columns = (TextColumn("[bold]items"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"))

    async def run() -> ImportSummary:
        async with client(url, api_key) as http:
            with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
                return await import_items(
                    http, file, preset, collection=collection, batch=batch, limit=limit, progress=progress
                )

    started = time.perf_counter()
    summary = asyncio.run(run())
    table = Table(title=f"{file.name} → {collection!r} ({preset})")
    for name in ("read", "sent", "skipped", "failed", "seconds"):
        table.add_column(name, justify="right")
    seconds = f"{time.perf_counter() - started:.1f}"
    table.add_row(str(summary.read), str(summary.sent), str(summary.skipped), str(summary.failed), seconds)
    console.print(table)
    if summary.errors:
        console.print(f"[red]last error:[/red] {summary.errors[-1]}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("import-items")(import_items_command)
