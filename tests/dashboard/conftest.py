"""A Shoal app with every feature the dashboard shows: tweets, insights, recommendations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from shoal.app import CoreFeature, create_app
from shoal.dashboard import DashboardFeature
from shoal.feature import Feature
from shoal.insights.feature import InsightsFeature
from shoal.insights.settings import InsightsSettings
from shoal.llm_settings import LLMSettings
from shoal.recommend import RecommendFeature, RecommendSettings
from shoal.tweets import TweetSettings, TweetsFeature
from tests.app_fixtures import make_settings

NOW = datetime.now(UTC).replace(microsecond=0)

TWEETS = [
    ("t1", "alice", "Rust makes systems programming safe and fast"),
    ("t2", "alice", "I love writing async Rust services"),
    ("t3", "bob", "The borrow checker finally clicked for me, Rust is great"),
    ("t4", "bob", "Terrible weather today, the train was cancelled again"),
    ("t5", "carol", "Python type hints make refactoring much less scary"),
    ("t6", "carol", "My flight got delayed for five hours, awful airline"),
]

CONVERSATIONS = [
    "My package never arrived and nobody answers my emails",
    "The delivery is three days late, where is my order?",
    "Order still not delivered after two weeks, very disappointed",
    "Thanks for the quick refund, great support team!",
    "Refund processed in a day, really happy with the service",
    "I was charged twice for the same order, please fix this",
    "Love the new app update, checkout is so much faster",
    "The app keeps crashing when I open my cart",
]

ITEMS = [
    ("phone-1", "5G Android mobile phone with triple camera", "phone"),
    ("phone-2", "Budget smartphone with 5000mAh battery", "phone"),
    ("phone-3", "Flagship mobile phone with a 120Hz screen", "phone"),
    ("audio-1", "Wireless Bluetooth earbuds with noise cancellation", "audio"),
    ("audio-2", "Over-ear headphones with deep bass", "audio"),
    ("audio-3", "Noise cancelling wireless headphones for travel", "audio"),
    ("tv-1", "55 inch 4K Ultra HD smart LED television", "tv"),
    ("tv-2", "65 inch QLED smart TV with Dolby Vision", "tv"),
    ("cable-1", "USB-C fast charging cable, 1 metre", "cable"),
    ("cable-2", "HDMI 2.1 cable for 4K television", "cable"),
]


def features() -> list[Feature]:
    return [
        CoreFeature(),
        TweetsFeature(TweetSettings(_env_file=None)),
        InsightsFeature(
            InsightsSettings(_env_file=None, retry_delay_s=0.2),
            LLMSettings(_env_file=None, base_url=None, api_key=None),
        ),
        RecommendFeature(RecommendSettings(_env_file=None, popular_refresh_s=0.0, list_size=20)),
        DashboardFeature(),
    ]


def dashboard_app(data_dir: Path, **settings: Any) -> FastAPI:
    return create_app(make_settings(data_dir, **settings), features())


def tweet_records() -> list[dict[str, Any]]:
    return [
        {
            "id": tid,
            "text": text,
            "payload": {"user_id": user, "username": user},
            "ts": (NOW - timedelta(hours=i)).isoformat(),
        }
        for i, (tid, user, text) in enumerate(TWEETS)
    ]


def conversations() -> list[dict[str, Any]]:
    return [
        {"text": text, "author": f"customer{i % 3}", "timestamp": (NOW - timedelta(minutes=30 + 5 * i)).isoformat()}
        for i, text in enumerate(CONVERSATIONS)
    ]


def item_records() -> list[dict[str, Any]]:
    return [{"id": i, "text": title, "payload": {"title": title, "category": kind}} for i, title, kind in ITEMS]
