"""The environment of a production process in the tests: PostgreSQL, Redis as broker, SMTP."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
import redis

from tests.support.env import REDIS_URL

BIN = Path(sys.executable).parent
TOPICS = {
    "lora@example.org": "LoRA, parameter-efficient fine-tuning",
    "diffusion@example.org": "diffusion models, image generation",
    "retrieval@example.org": "dense retrieval, question answering",
}


def production_environment(tmp_path: Path, postgres_url: str, smtp_url: str, **extra: str) -> dict[str, str]:
    """The environment of a production process: PostgreSQL, Redis as the broker (a queue of its own), SMTP."""
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is needed for this test (`make test` starts it): {exc}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        {
            "DIGEST_DATA_DIR": str(tmp_path / "data"),
            "DIGEST_DATABASE_URL": postgres_url,
            "DIGEST_BROKER_URL": REDIS_URL,
            "DIGEST_SMTP_URL": smtp_url,
            "DIGEST_BASE_URL": "https://digest.example.org",
            "DIGEST_FROM": "Paper digest <digest@example.org>",
            "DIGEST_SECRET_KEY": "integration-secret-" + uuid.uuid4().hex,
            "DIGEST_QUEUE": f"digest-test-{uuid.uuid4().hex[:8]}",
            **extra,
        }
    )
    return env
