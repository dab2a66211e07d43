"""Config decoding with env overrides; delivery backoff grows, is jittered, and stays capped."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from node.config import Delivery, load_config
from node.delivery import backoff
from protocol.errors import BorderlinkError


def test_defaults_without_a_file(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "config.toml", env={})
    assert cfg.host_port == ("127.0.0.1", 7443)
    assert cfg.delivery.backoff_max == 300.0


def test_file_then_env_override(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('listen = "127.0.0.1:9000"\n[delivery]\nbackoff_base = 2.5\nbatch_size = 8\n')
    cfg = load_config(
        path,
        env={
            "BORDERLINK_DELIVERY_BATCH_SIZE": "16",
            "BORDERLINK_HOME": "/x",
            "BORDERLINK_SOMETHING_ELSE": "ignored",
        },
    )
    assert cfg.host_port == ("127.0.0.1", 9000)
    assert cfg.delivery.backoff_base == 2.5 and cfg.delivery.batch_size == 16


@pytest.mark.parametrize(
    "text", ["listen = 5\n", "[delivery]\nbogus = 1\n", 'listen = "nope"\n', "= broken"]
)
def test_bad_config_is_one_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(BorderlinkError, match="config"):
        load_config(path, env={})


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    policy = Delivery(backoff_base=1.0, backoff_max=60.0)
    rng = random.Random(7)
    delays = [backoff(n, policy, rng) for n in range(12)]
    for n, d in enumerate(delays):
        ideal = min(60.0, 2.0**n)
        assert ideal * 0.5 <= d <= ideal
    assert max(delays) <= 60.0
    assert backoff(10_000, policy, rng) <= 60.0
