"""Build ``src/shoal/insights/assets/sentiment_head.npz``: a softmax regression over the MiniLM
embedding plus the rule score, classes (negative, neutral, positive).

The only 3-class tweet sentiment data available offline is TweetEval sentiment *val* (2,000 tweets;
the train split is absent from ``../shared/data``). So the head is evaluated by 5-fold cross-validation
on it (every tweet is scored by a model that never saw it), and the label thresholds on
``p_pos - p_neg`` are chosen on those out-of-fold scores; the shipped head is then fitted on all 2,000.
Build-time only: needs scikit-learn (``pip install scikit-learn``).

    python scripts/train_sentiment_head.py [--data ../shared/data/tweeteval/sentiment]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score
from sklearn.model_selection import StratifiedKFold

from shoal.embedding.onnx import OnnxProvider
from shoal.insights.sentiment import HEAD_PATH, SentimentAnalyzer

C = 0.5
SEED = 0


async def embed(texts: list[str]) -> np.ndarray:
    async with OnnxProvider() as provider:
        return await provider.embed(texts)


def features(vectors: np.ndarray, rules: np.ndarray) -> np.ndarray:
    return np.hstack([vectors, rules[:, None]]).astype(np.float32)


def best_thresholds(score: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    best = (0.0, 0.0, 0.0)
    for pos in np.arange(0.0, 0.61, 0.025):
        for neg in np.arange(0.0, 0.61, 0.025):
            pred = np.where(score >= pos, 2, np.where(score <= -neg, 0, 1))
            r = recall_score(y, pred, average="macro")
            if r > best[0]:
                best = (float(r), float(pos), float(neg))
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/data/tweeteval/sentiment"))
    parser.add_argument("--out", type=Path, default=HEAD_PATH)
    args = parser.parse_args()
    texts = (args.data / "val_text.txt").read_text(encoding="utf-8").splitlines()
    y = np.array([int(x) for x in (args.data / "val_labels.txt").read_text().split()])
    rules = np.array([SentimentAnalyzer().rules(t)[0] for t in texts])
    x = features(asyncio.run(embed(texts)), rules)
    oof = np.zeros((len(y), 3))
    for train, test in StratifiedKFold(5, shuffle=True, random_state=SEED).split(x, y):
        model = LogisticRegression(C=C, max_iter=3000, class_weight="balanced").fit(x[train], y[train])
        oof[test] = model.predict_proba(x[test])
    argmax_recall = recall_score(y, oof.argmax(axis=1), average="macro")
    recall, pos, neg = best_thresholds(oof[:, 2] - oof[:, 0], y)
    model = LogisticRegression(C=C, max_iter=3000, class_weight="balanced").fit(x, y)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out,
        weights=model.coef_.T.astype(np.float32),
        bias=model.intercept_.astype(np.float32),
        positive_threshold=np.float32(pos),
        negative_threshold=np.float32(neg),
    )
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    report = {
        "cv_macro_recall_argmax": round(float(argmax_recall), 4),
        "cv_macro_recall_thresholds": round(recall, 4),
        "positive_threshold": pos,
        "negative_threshold": neg,
        "C": C,
        "sha256": digest,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
