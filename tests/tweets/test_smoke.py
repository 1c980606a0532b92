from pathlib import Path

from tests.tweets.conftest import client, tweet, tweet_server


async def test_smoke(tmp_path: Path) -> None:
    async with tweet_server(tmp_path) as (base, app), client(f"{base}/ws") as c:
        await c.send({"tweets": [tweet("t1", "I love Rust"), tweet("t2", "Rust is fast")]})
        print(await c.receive())
        print(await c.receive())
        print(await c.receive())
