"""The ``shoal`` command line (typer)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shoal.errors import ConfigurationError, ShoalError

if TYPE_CHECKING:
    from shoal.settings import Settings

app = typer.Typer(help="Shoal: live streams of short text into meaning.", no_args_is_help=True)
console = Console(stderr=True)

UrlOpt = Annotated[str, typer.Option("--url", envvar="SHOAL_URL", help="server base URL")]
KeyOpt = Annotated[Optional[str], typer.Option("--api-key", envvar="SHOAL_API_KEY", help="API key or JWT")]  # noqa: UP045


def load_settings(**overrides: Any) -> Any:
    """Settings from the environment / .env, with command-line overrides; exits with the reason."""
    from shoal.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except (ValidationError, ConfigurationError) as exc:
        console.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc


def client(url: str, api_key: str | None, timeout: float = 60.0) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout)


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="bind address (default 127.0.0.1)")] = None,  # noqa: UP045
    port: Annotated[Optional[int], typer.Option(help="port (default 8080)")] = None,  # noqa: UP045
    role: Annotated[Optional[str], typer.Option(help="all | api | worker")] = None,  # noqa: UP045
    data_dir: Annotated[Optional[Path], typer.Option(help="where embedded data lives")] = None,  # noqa: UP045
) -> None:
    """Run the server (API and workers in one process by default)."""
    import uvicorn

    from shoal.allocator import limit_arenas
    from shoal.app import create_app
    from shoal.telemetry import configure_logging, flush_logs_on_sigterm

    settings = load_settings(host=host, port=port, role=role, data_dir=data_dir)
    configure_logging(settings.log_level, settings.log_json)
    flush_logs_on_sigterm()
    limit_arenas(settings.malloc_arena_max)  # before the app starts its threads
    uvicorn.run(create_app(settings), **uvicorn_options(settings))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How ``shoal serve`` runs uvicorn (benchmarks that build their own app run it the same way)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": int(settings.drain_timeout_s),
        "ws_ping_interval": 20,
        "ws_ping_timeout": 20,
        "ws_per_message_deflate": settings.ws_compression,
    }


@app.command()
def migrate() -> None:
    """Bring the database schema to the latest version (PostgreSQL; SQLite migrates at start)."""
    from shoal.records.sql import migrate as run_migrations

    settings = load_settings()
    asyncio.run(run_migrations(settings.resolved_database_url))
    console.print("[green]database schema is up to date[/green]")


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV, TSV, JSONL, JSON (optionally .gz)")],
    collection: Annotated[str, typer.Option("--collection", "-c")],
    url: UrlOpt = "http://127.0.0.1:8080",
    api_key: KeyOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="auto | csv | tsv | jsonl | json | pyliteral")] = "auto",
    id_field: Annotated[Optional[str], typer.Option(help="column holding the record id")] = None,  # noqa: UP045
    text_field: Annotated[list[str], typer.Option(help="column(s) joined into the text")] = ["text"],  # noqa: B006
    ts_field: Annotated[Optional[str], typer.Option(help="column holding the timestamp")] = None,  # noqa: UP045
    payload_field: Annotated[Optional[list[str]], typer.Option(help="payload columns (default: all others)")] = None,  # noqa: UP045
    batch: Annotated[int, typer.Option(min=1, max=1000)] = 500,
    limit: Annotated[Optional[int], typer.Option(help="stop after this many rows")] = None,  # noqa: UP045
    create: Annotated[bool, typer.Option(help="create the collection if missing")] = True,
) -> None:
    """Send records from a file to a running server, with a progress bar and a summary."""
    from shoal.importer import FieldMap, ImportSummary, batched, post_batch, read_rows

    mapping = FieldMap(id_field=id_field, text_fields=text_field, ts_field=ts_field, payload_fields=payload_field)
    summary = ImportSummary()

    def records() -> Any:
        for i, row in enumerate(read_rows(file, fmt)):
            if limit is not None and i >= limit:
                return
            summary.read += 1
            record = mapping.to_record(row, i)
            if record is None:
                summary.skipped += 1
                continue
            yield record

    async def run() -> None:
        async with client(url, api_key) as http:
            if create:
                r = await http.post("/v1/collections", json={"name": collection})
                if r.status_code not in (201, 409):
                    raise typer.BadParameter(f"cannot create collection: {r.status_code} {r.text}")
            with Progress(
                TextColumn("[bold]importing"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                task = progress.add_task("import", total=None, rate="")
                started = time.perf_counter()
                for chunk in batched(records(), batch):
                    try:
                        await post_batch(http, f"/v1/collections/{collection}/records", {"records": chunk})
                        summary.sent += len(chunk)
                    except httpx.HTTPStatusError as exc:
                        summary.failed += len(chunk)
                        summary.errors.append(exc.response.text[:300])
                    rate = summary.sent / max(time.perf_counter() - started, 1e-9)
                    progress.update(task, completed=summary.sent + summary.failed, rate=f"{rate:,.0f} rec/s")

    started = time.perf_counter()
    asyncio.run(run())
    table = Table(title=f"import of {file.name} into {collection!r}")
    for name in ("read", "sent", "skipped", "failed"):
        table.add_column(name, justify="right")
    table.add_column("seconds", justify="right")
    table.add_row(
        str(summary.read),
        str(summary.sent),
        str(summary.skipped),
        str(summary.failed),
        f"{time.perf_counter() - started:.1f}",
    )
    console.print(table)
    if summary.errors:
        console.print(f"[red]last error:[/red] {summary.errors[-1]}")
        raise typer.Exit(1)


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="what to look for")],
    collection: Annotated[str, typer.Option("--collection", "-c")],
    url: UrlOpt = "http://127.0.0.1:8080",
    api_key: KeyOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    filter: Annotated[Optional[str], typer.Option(help="filter as JSON")] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON answer")] = False,
) -> None:
    """Semantic search in a collection of a running server."""
    body: dict[str, Any] = {"text": text, "limit": limit}
    if filter:
        body["filter"] = json.loads(filter)

    async def run() -> dict[str, Any]:
        async with client(url, api_key) as http:
            r = await http.post(f"/v1/collections/{collection}/search", json=body)
            if r.status_code != 200:
                console.print(f"[red]{r.status_code}[/red] {r.text}")
                raise typer.Exit(1)
            result: dict[str, Any] = r.json()
            return result

    result = asyncio.run(run())
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    table = Table(title=f"{len(result['results'])} results ({result['took_ms']} ms, {result['model']})")
    table.add_column("score", justify="right")
    table.add_column("id")
    table.add_column("text")
    for hit in result["results"]:
        table.add_row(f"{hit['score']:.3f}", hit["id"], (hit.get("text") or "")[:100])
    Console().print(table)


def main() -> None:
    try:
        app()
    except ShoalError as exc:
        console.print(f"[red]{exc.code}:[/red] {exc}")
        sys.exit(2)


def _register_feature_commands() -> None:
    """Capabilities add their commands through a ``register(app)`` function of their own."""
    import importlib

    for module in _FEATURE_COMMANDS:
        importlib.import_module(module).register(app)


_FEATURE_COMMANDS: list[str] = [
    "shoal.deploy_cli",
    "shoal.embedops.cli",
    "shoal.insights.ingest_csv",
    "shoal.recommend.cli",
]
_register_feature_commands()
