"""``shoal backfill`` and ``shoal reembed``: drive a running server's embedding jobs over HTTP.

The embedded stores (SQLite, Qdrant Edge) belong to the server process, so the work runs there;
the command follows the job's progress stream. Ctrl-C or ``kill`` (SIGTERM) asks the server to stop
the job cleanly and prints the summary; a second Ctrl-C leaves at once (the server still stops the
job, because the stream is gone). A rerun resumes where the job stopped.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Optional

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(stderr=True)

UrlOpt = Annotated[str, typer.Option("--url", envvar="SHOAL_URL", help="server base URL")]
KeyOpt = Annotated[Optional[str], typer.Option("--api-key", envvar="SHOAL_API_KEY", help="admin API key or JWT")]  # noqa: UP045
CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="collection name")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print each progress event as a JSON line on stdout")]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str) -> datetime:
    """An ISO date/time (UTC unless it says otherwise) or a look-back such as ``36h`` or ``7d``."""
    if match := _DURATION.match(value.strip()):
        return datetime.now(UTC) - timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r}: use an ISO date/time or a duration like 36h or 7d") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _client(url: str, api_key: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    # no read timeout: a page of a slow remote model may take long; heartbeats keep the stream alive
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=httpx.Timeout(30.0, read=None))


def _fail(response: httpx.Response) -> None:
    console.print(f"[red]{response.status_code}[/red] {response.text}")
    raise typer.Exit(1)


async def _follow(
    http: httpx.AsyncClient, path: str, body: dict[str, Any], collection: str, as_json: bool
) -> dict[str, Any]:
    """POST a job, show its progress until the final event, and stop it cleanly on a signal."""
    loop = asyncio.get_running_loop()
    signals = 0
    stopper: list[asyncio.Task[httpx.Response]] = []
    current = asyncio.current_task()

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            console.print("[yellow]stopping: the pages in flight are written first (again to quit now)[/yellow]")
            stopper.append(asyncio.ensure_future(http.delete(f"/v1/collections/{collection}/job")))
        elif current is not None:
            current.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    last: dict[str, Any] = {}
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} rec/s"),
            TextColumn("ETA {task.fields[eta]}"),
            TimeElapsedColumn(),
            console=console,
            disable=as_json,
        ) as progress:
            task = progress.add_task(path.rsplit("/", 1)[-1], total=None, rate="-", eta="-")
            async with http.stream("POST", path, json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    _fail(response)
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    last = json.loads(line)
                    if as_json:
                        sys.stdout.write(line + "\n")
                        sys.stdout.flush()
                    eta = last.get("eta_s")
                    progress.update(
                        task,
                        total=last.get("candidates") or None,
                        completed=last.get("processed", 0),
                        rate=f"{last.get('rate', 0):,.0f}",
                        eta="-" if eta is None else f"{eta:,.0f}s",
                        description=f"{last.get('target', '')} {last.get('model', '')}".strip() or "job",
                    )
    except asyncio.CancelledError:
        console.print("[red]left without waiting; the server stops the job because the stream closed[/red]")
        raise typer.Exit(130) from None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for pending in stopper:
            await asyncio.wait([pending])
    return last


def _summary(title: str, last: dict[str, Any]) -> None:
    table = Table(title=title)
    columns = ("state", "processed", "succeeded", "skipped", "failed", "duration_s", "avg_ms_per_record")
    for name in columns:
        table.add_column(name.replace("_", " "), justify="right")
    table.add_row(*(str(last.get(name, "")) for name in columns))
    console.print(table)
    if last.get("last_error") or last.get("error"):
        console.print(f"[red]last error:[/red] {last.get('last_error') or last.get('error')}")


def _exit_code(last: dict[str, Any]) -> int:
    state = last.get("state")
    if state == "done":
        return 1 if last.get("failed") else 0
    return 130 if state == "stopped" else 1


def backfill(
    collection: CollectionOpt,
    batch: Annotated[int, typer.Option(min=1, max=2048, help="records per page")] = 100,
    force: Annotated[bool, typer.Option(help="re-embed every record, even those already current")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count and estimate; write nothing")] = False,
    model: Annotated[Optional[str], typer.Option(help="the current model (default) or a switch's shadow model")] = None,  # noqa: UP045
    since: Annotated[Optional[str], typer.Option(help="only records with ts >= this (ISO, or 36h / 7d)")] = None,  # noqa: UP045
    limit: Annotated[Optional[int], typer.Option(min=1, help="stop after this many records")] = None,  # noqa: UP045
    url: UrlOpt = "http://127.0.0.1:8080",
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Embed records with no embedding, a failed one or another model's (all with --force)."""
    body: dict[str, Any] = {"batch": batch, "force": force, "dry_run": dry_run, "model": model, "limit": limit}
    if since:
        body["since"] = parse_since(since).isoformat()

    async def run() -> dict[str, Any]:
        async with _client(url, api_key) as http:
            if dry_run:
                r = await http.post(f"/v1/collections/{collection}/backfill", json=body)
                if r.status_code != 200:
                    _fail(r)
                estimate: dict[str, Any] = r.json()
                return estimate
            return await _follow(http, f"/v1/collections/{collection}/backfill", body, collection, as_json)

    result = asyncio.run(run())
    if dry_run:
        if as_json:
            sys.stdout.write(json.dumps(result) + "\n")
            return
        seconds = result.get("seconds")
        console.print(f"[bold]{result['count']}[/bold] records to embed with {result['model']} ({result['target']})")
        console.print(f"estimated time: {'unknown (not measured yet)' if seconds is None else f'{seconds:,.1f} s'}")
        if result.get("tokens") is not None:
            console.print(f"estimated tokens: {result['tokens']:,}; cost: {result['cost']:.4f}")
        return
    _summary(f"backfill of {collection!r}", result)
    raise typer.Exit(_exit_code(result))


def reembed(
    collection: CollectionOpt,
    model: Annotated[Optional[str], typer.Option(help="the new model, e.g. local:minilm-fp32")] = None,  # noqa: UP045
    rollback: Annotated[bool, typer.Option("--rollback", help="go back to the previous model")] = False,
    drop_previous: Annotated[bool, typer.Option("--drop-previous", help="forget the previous model")] = False,
    batch: Annotated[int, typer.Option(min=1, max=2048)] = 100,
    url: UrlOpt = "http://127.0.0.1:8080",
    api_key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Switch a collection to another model without downtime (or --rollback, --drop-previous)."""
    if sum([model is not None, rollback, drop_previous]) != 1:
        raise typer.BadParameter("give exactly one of --model, --rollback, --drop-previous")

    async def run() -> dict[str, Any]:
        async with _client(url, api_key) as http:
            if rollback or drop_previous:
                path = f"/v1/collections/{collection}/reembed/" + ("rollback" if rollback else "previous")
                r = await (http.post(path) if rollback else http.delete(path))
                if r.status_code != 200:
                    _fail(r)
                answer: dict[str, Any] = r.json()
                return answer
            body = {"model": model, "batch": batch}
            return await _follow(http, f"/v1/collections/{collection}/reembed", body, collection, as_json)

    result = asyncio.run(run())
    if rollback or drop_previous:
        console.print(f"{collection!r} now searches with [bold]{result['model']}[/bold]")
        return
    _summary(f"switch of {collection!r} to {model}", result)
    if result.get("promoted"):
        console.print(f"[green]{collection!r} now searches with {model}[/green] (rollback: shoal reembed --rollback)")
    raise typer.Exit(_exit_code(result))


def register(app: typer.Typer) -> None:
    """Add ``backfill`` and ``reembed`` to the ``shoal`` command."""
    app.command("backfill")(backfill)
    app.command("reembed")(reembed)


def main() -> None:
    """``python -m shoal.embedops.cli``: the two commands without the rest of ``shoal``."""
    app = typer.Typer(no_args_is_help=True)
    register(app)
    app()


if __name__ == "__main__":
    main()
