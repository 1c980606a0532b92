"""Reading records from files (CSV, JSONL, JSON arrays, gzip of any) and sending them to a server.

The CLI talks to a running server over HTTP so that every record goes through the same durable,
validated ingest path as any client (and through auth when it is on)."""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

Row = dict[str, Any]


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline="")
    return path.open("r", encoding="utf-8", errors="replace", newline="")


def detect_format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    for suffix, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json")):
        if name.endswith(suffix):
            return fmt
    raise ValueError(f"cannot tell the format of {path.name}; pass --format csv|tsv|jsonl|json|pyliteral")


def read_rows(path: Path, fmt: str = "auto") -> Iterator[Row]:
    """Rows of ``path`` as dicts. ``pyliteral`` reads one Python-literal dict per line (the SNAP
    Amazon metadata format) safely with ``ast.literal_eval`` — never ``eval``."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    with _open_text(path) as fh:
        if fmt in ("csv", "tsv"):
            yield from csv.DictReader(fh, delimiter="\t" if fmt == "tsv" else ",")
        elif fmt == "json":
            data = json.load(fh)
            yield from (data if isinstance(data, list) else [data])
        elif fmt in ("jsonl", "pyliteral"):
            parse: Callable[[str], Any] = json.loads if fmt == "jsonl" else ast.literal_eval
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    row = parse(line)
                except (ValueError, SyntaxError):
                    if fmt == "jsonl":
                        try:
                            row = ast.literal_eval(line)
                        except (ValueError, SyntaxError):
                            continue
                    else:
                        continue
                if isinstance(row, dict):
                    yield row
        else:
            raise ValueError(f"unknown format {fmt!r}")


@dataclass
class FieldMap:
    """Which columns make a record: id, text (several are joined), timestamp and payload."""

    id_field: str | None = None
    text_fields: Sequence[str] = ("text",)
    ts_field: str | None = None
    payload_fields: Sequence[str] | None = None
    """``None``: every other column goes to the payload."""
    id_prefix: str = ""
    transform: Callable[[Row], Row] | None = None

    def to_record(self, row: Row, index: int) -> Row | None:
        if self.transform is not None:
            row = self.transform(row)
        text = " ".join(str(row[f]).strip() for f in self.text_fields if row.get(f) not in (None, ""))
        if not text.strip():
            return None
        record: Row = {"text": text}
        if self.id_field and row.get(self.id_field) not in (None, ""):
            record["id"] = f"{self.id_prefix}{row[self.id_field]}"
        else:
            record["id"] = f"{self.id_prefix}{index}"
        if self.ts_field and row.get(self.ts_field):
            record["ts"] = row[self.ts_field]
        used = {self.id_field, self.ts_field, *self.text_fields}
        keys = self.payload_fields if self.payload_fields is not None else [k for k in row if k not in used]
        record["payload"] = {
            k.lstrip("_"): _jsonable(row[k]) for k in keys if k in row and row[k] not in (None, "") and k
        }
        return record


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def batched(items: Iterable[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class ImportSummary:
    read: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in (429, 502, 503, 504)


async def post_batch(client: httpx.AsyncClient, path: str, body: Any) -> httpx.Response:
    """POST with retries on 429/5xx (honouring Retry-After through the back-off floor)."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(_retryable),
        wait=wait_random_exponential(multiplier=0.2, max=10),  # full jitter; `initial=` is deprecated
        stop=stop_after_attempt(8),
        reraise=True,
    ):
        with attempt:
            response = await client.post(path, json=body)
            response.raise_for_status()
            return response
    raise AssertionError("unreachable")
