"""``shoal ingest-conversations FILE``: post the Kaggle "Customer Support on Twitter" CSV (twcs) to a
running server.

Only inbound (customer) tweets are posted; each carries its thread (the root tweet reached by following
``in_response_to_tweet_id``) and the brand that answered, in ``raw_data``. Batches go to
``POST /api/v1/conversations``; a 429 is retried after its ``Retry-After``.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

TWITTER_TIME = "%a %b %d %H:%M:%S %z %Y"


@dataclass
class IngestSummary:
    rows: int = 0
    inbound: int = 0
    posted: int = 0
    threads: int = 0
    retries: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


def _clean_id(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    return value[:-2] if value.endswith(".0") else value or None


def read_rows(path: Path) -> list[dict[str, str]]:
    """The CSV's rows. Bare ``\\r`` inside texts (present in the original twcs.csv) are made spaces so
    they do not split rows."""
    raw = path.read_bytes().decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", " ")
    return list(csv.DictReader(io.StringIO(raw, newline="")))


def conversations(rows: list[dict[str, str]]) -> Iterator[dict[str, Any]]:
    """Inbound tweets as conversation bodies, with thread and brand in ``raw_data``."""
    parent = {_clean_id(r.get("tweet_id")): _clean_id(r.get("in_response_to_tweet_id")) for r in rows}
    author = {_clean_id(r.get("tweet_id")): r.get("author_id") for r in rows}
    for row in rows:
        if str(row.get("inbound", "")).strip().lower() != "true" or not (row.get("text") or "").strip():
            continue
        tweet = _clean_id(row.get("tweet_id"))
        root, seen = tweet, set()
        while (up := parent.get(root)) is not None and up in parent and up not in seen:
            seen.add(up)
            root = up
        replies = [_clean_id(x) for x in (row.get("response_tweet_id") or "").split(",") if x.strip()]
        brand = next((author[r] for r in replies if r in author and author[r] != row.get("author_id")), None)
        try:
            ts = datetime.strptime(row["created_at"], TWITTER_TIME).astimezone(UTC).isoformat()
        except (KeyError, ValueError):
            ts = None
        body: dict[str, Any] = {
            "text": row["text"],
            "author": row.get("author_id"),
            "raw_data": {
                "tweet_id": tweet,
                "thread_id": root,
                "in_response_to_tweet_id": _clean_id(row.get("in_response_to_tweet_id")),
                "response_tweet_ids": replies,
                "brand": brand,
                "source": "twcs",
            },
        }
        if ts:
            body["timestamp"] = ts
        yield body


def _post(client: httpx.Client, batch: list[dict[str, Any]], summary: IngestSummary, attempts: int = 8) -> None:
    for _ in range(attempts):
        response = client.post("/api/v1/conversations", json=batch)
        if response.status_code == 429:
            summary.retries += 1
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        if response.status_code == 202:
            summary.posted += len(batch)
        else:
            summary.failed += len(batch)
            summary.errors.append(f"{response.status_code}: {response.text[:200]}")
        return
    summary.failed += len(batch)
    summary.errors.append("rate limited: gave up after retries")


def ingest_conversations(
    file: Path,
    *,
    url: str = "http://127.0.0.1:8080",
    batch_size: int = 500,
    api_key: str | None = None,
    limit: int | None = None,
    console: Console | None = None,
) -> IngestSummary:
    """Post the inbound tweets of ``file`` to the server at ``url``; returns what happened."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    rows = read_rows(file)
    bodies = list(conversations(rows))[:limit]
    summary = IngestSummary(rows=len(rows), inbound=len(bodies))
    summary.threads = len({b["raw_data"]["thread_id"] for b in bodies})
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    progress = Progress(
        TextColumn("[bold]conversations"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client, progress:
        task = progress.add_task("post", total=len(bodies))
        for start in range(0, len(bodies), batch_size):
            batch = bodies[start : start + batch_size]
            _post(client, batch, summary)
            progress.advance(task, len(batch))
    summary.seconds = time.perf_counter() - started
    table = Table(title=f"ingest-conversations {file.name}")
    for name in ("rows", "inbound", "threads", "posted", "failed", "retries"):
        table.add_column(name, justify="right")
    table.add_column("per second", justify="right")
    table.add_row(
        *(str(getattr(summary, n)) for n in ("rows", "inbound", "threads", "posted", "failed", "retries")),
        f"{summary.posted / summary.seconds:.0f}" if summary.seconds else "-",
    )
    console.print(table)
    for error in summary.errors[:5]:
        console.print(f"[red]{error}")
    return summary


def cli(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="twcs CSV file")],
    url: Annotated[str, typer.Option(help="server base URL")] = "http://127.0.0.1:8080",
    batch_size: Annotated[int, typer.Option(min=1, max=1000)] = 500,
    api_key: Annotated[str | None, typer.Option(envvar="SHOAL_API_KEY", help="bearer key if auth is on")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="post at most this many")] = None,
) -> None:
    """Post customer tweets from the Kaggle twcs CSV to a running server for analysis."""
    summary = ingest_conversations(file, url=url, batch_size=batch_size, api_key=api_key, limit=limit)
    if summary.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``shoal ingest-conversations`` to the command line."""
    app.command("ingest-conversations")(cli)
