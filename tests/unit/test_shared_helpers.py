"""The one-per-concept helpers every module shares: container args, ages, deadlines, UTF-8 files."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from gtcdemo import args, clock, files, project
from gtcdemo.errors import ConfigError


@pytest.mark.parametrize(("words", "expected"), [
    (["--model-path", "/m", "--extra-engine-args", "/cfg/p.yaml"], "/cfg/p.yaml"),
    (["--extra-engine-args=/cfg/p.yaml"], "/cfg/p.yaml"),
    (["--extra-engine-args=a=b"], "a=b"),                      # only the first '=' separates
    (["--extra-engine-args", "/a", "--extra-engine-args=/b"], "/b"),  # argparse: the last one wins
    (["--extra-engine-args"], None),                           # no value after the flag
    (["--extra-engine-args-other", "/x"], None),               # a longer flag is another flag
    ([], None),
])
def test_arg_value_reads_both_spellings(words: list[str], expected: str | None) -> None:
    assert args.arg_value(words, "--extra-engine-args") == expected


def test_container_args_of_a_service_and_of_broken_shapes() -> None:
    svc = {"extraPodSpec": {"mainContainer": {"args": ["--x", 3]}}}
    assert args.container_args(svc) == ["--x", "3"]
    for broken in ({}, {"extraPodSpec": None}, {"extraPodSpec": {"mainContainer": {"args": "--x"}}}, None):
        assert args.container_args(broken) == []  # type: ignore[arg-type]
    assert args.has_flag(["--disaggregation-mode=prefill"], "--disaggregation-mode")
    assert not args.has_flag(["--disaggregation-modes"], "--disaggregation-mode")


@pytest.mark.parametrize(("seconds", "shown"), [(0, "0s"), (119.9, "119s"), (120, "2m"), (7199, "119m"),
                                                 (7200, "2h"), (-5, "0s")])
def test_age_is_kubectls_short_form(seconds: float, shown: str) -> None:
    assert clock.age(seconds) == shown


def test_seconds_since_reads_api_server_timestamps() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert clock.seconds_since("2026-01-01T11:59:00Z", now) == 60
    assert clock.seconds_since(now - timedelta(seconds=5), now) == 5
    assert clock.seconds_since(None, now) == 0


def test_wait_until_returns_the_first_truthy_answer() -> None:
    calls = iter([None, 0, "ready", "later"])
    assert clock.wait_until(lambda: next(calls), timeout_s=5, interval_s=0.001) == "ready"


def test_wait_until_checks_once_more_at_the_deadline() -> None:
    start = time.monotonic()
    seen: list[float] = []

    def check() -> bool:
        seen.append(time.monotonic() - start)
        return False

    assert clock.wait_until(check, timeout_s=0.05, interval_s=0.02) is False
    assert seen[-1] >= 0.05  # the last look is at (not before) the deadline
    assert len(seen) >= 3


def test_deadline_sleep_stops_at_the_deadline() -> None:
    deadline = clock.Deadline(0.03)
    sleeps = 0
    while deadline.sleep(0.01):
        sleeps += 1
    assert deadline.expired and deadline.remaining == 0
    assert 2 <= sleeps <= 4


def test_read_text_names_the_file_and_the_fix(tmp_path) -> None:
    good = tmp_path / "ok.yaml"
    good.write_text("a: é\n", encoding="utf-8")
    assert files.read_text(good) == "a: é\n"
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("a: \xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        files.read_text(bad)
    assert err.value.where == str(bad) and "byte 0xe9 at position 3" in err.value.problem
    assert err.value.fix == "save the file as UTF-8"
    with pytest.raises(ConfigError, match="file not found"):
        files.read_text(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="folder"):
        files.read_text(tmp_path)


def test_shown_is_relative_inside_the_project() -> None:
    assert files.shown(project.ROOT / "manifests" / "dev" / "x.yaml") == "manifests/dev/x.yaml"
    assert files.shown(project.ROOT.parent / "elsewhere.yaml") == str(project.ROOT.parent / "elsewhere.yaml")
