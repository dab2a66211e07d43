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
    ("text", "says"),
    [
        (b"listen = 5\n", "config {path}: listen: must be text, not a whole number"),
        (
            b"[delivery]\nbogus = 1\n",
            "config {path}: delivery.bogus: is not a field here (known fields: batch_size, "
            "backoff_base, backoff_max, request_timeout, concurrency)",
        ),
        (
            b'listen = "nope"\n',
            "config {path}: listen: the address must be HOST:PORT such as 127.0.0.1:7443, "
            "not 'nope'",
        ),
        (
            b'listen = "127.0.0.1:70000"\n',
            "config {path}: listen: the port must be 0 to 65535, not 70000",
        ),
        (b"= broken", "config {path} is not valid TOML"),
        (b'listen = "\xff"', "config {path} is not UTF-8 text (byte 10)"),
        (
            b"[delivery]\nconcurrency = 0\n",
            "config {path}: delivery.concurrency: must be at least 1 (this is 0)",
        ),
        (
            b"[audit]\nwitness_interval = nan\n",
            "config {path}: audit.witness_interval: must be greater than 0 (this is nan)",
        ),
        (
            b'log_format = "xml"\n',
            "config {path}: log_format: must be one of auto, console, json (not 'xml')",
        ),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path: Path, text: bytes, says: str) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(text)
    with pytest.raises(BorderlinkError) as info:
        load_config(path, env={})
    assert info.value.message == says.format(path=path)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"BORDERLINK_LIMITS_PEER_RATE": "fast"},
            "BORDERLINK_LIMITS_PEER_RATE='fast': must be a number, not text",
        ),
        (
            {"BORDERLINK_DELIVERY_BATCH_SIZE": "1_000"},
            "BORDERLINK_DELIVERY_BATCH_SIZE='1_000': must be a whole number, not text",
        ),
        (
            {"BORDERLINK_LISTEN": "127.0.0.1:x"},
            "BORDERLINK_LISTEN: listen: the address must be HOST:PORT such as 127.0.0.1:7443, "
            "not '127.0.0.1:x'",
        ),
    ],
)
def test_a_bad_environment_value_is_blamed_on_its_variable(
    tmp_path: Path, env: dict[str, str], says: str
) -> None:
    with pytest.raises(BorderlinkError) as info:
        load_config(tmp_path / "config.toml", env=env)
    assert info.value.message == says


def test_an_env_override_of_a_section_the_file_wrote_as_a_value(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('delivery = "x"\n')
    cfg = load_config(path, env={"BORDERLINK_DELIVERY_BATCH_SIZE": "5"})
    assert cfg.delivery.batch_size == 5


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    policy = Delivery(backoff_base=1.0, backoff_max=60.0)
    rng = random.Random(7)
    delays = [backoff(n, policy, rng) for n in range(12)]
    for n, d in enumerate(delays):
        ideal = min(60.0, 2.0**n)
        assert ideal * 0.5 <= d <= ideal
    assert max(delays) <= 60.0
    assert backoff(10_000, policy, rng) <= 60.0


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            b'[flow]\nwithhold = { RED = ["recipients", "names"] }\n',
            "config {path}: flow.withhold['RED'][1]: must be one of action, id, latency, peer, "
            "priority, reason, recipients, size, type (not 'names')",
        ),
        (
            b'[flow]\nwithhold = { PURPLE = ["type"] }\n',
            "config {path}: flow.withhold['PURPLE']: must be one of AMBER, AMBER+STRICT, CLEAR, "
            "GREEN, RED (not 'PURPLE')",
        ),
        (
            b'[dashboard]\nlisten = "everywhere"\n',
            "config {path}: dashboard.listen: the address must be HOST:PORT such as "
            "127.0.0.1:7443, not 'everywhere'",
        ),
    ],
)
def test_bad_flow_and_dashboard_settings_are_one_clear_error(
    tmp_path: Path, text: bytes, says: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(text)
    with pytest.raises(BorderlinkError) as info:
        load_config(path, env={})
    assert info.value.message == says.format(path=path)


def test_flow_defaults_and_settings(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "none.toml", env={})
    assert (cfg.flow.report_to, cfg.flow.withhold, cfg.dashboard.listen) == (
        None,
        {"RED": ["recipients", "type"]},
        "127.0.0.1:0",
    )
    path = tmp_path / "config.toml"
    path.write_text('[flow]\nreport_to = []\n[dashboard]\nlisten = "off"\n')
    cfg = load_config(path, env={"BORDERLINK_FLOW_SILENT_AFTER": "3"})
    assert (cfg.flow.report_to, cfg.dashboard.listen, cfg.flow.silent_after) == ([], "off", 3.0)
