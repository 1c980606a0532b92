"""Tweet stream: ``WS /ws`` ingestion with live pushes, and ``POST /search_payload``."""

from shoal.tweets.feature import TweetsFeature, TweetsState
from shoal.tweets.settings import TweetSettings

__all__ = ["TweetSettings", "TweetsFeature", "TweetsState"]
