"""The local target without a graph: it is made, named and preflighted before (and without) a valid bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from gtcdemo.errors import ConfigError
from gtcdemo.local import LocalTarget
from gtcdemo.local.target import _process_rows, dgd_name


@pytest.fixture
def broken(project_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project copy whose dev prefill config is not YAML, and a state root of its own."""
    monkeypatch.setenv("GTCDEMO_STATE", str(tmp_path / "state"))
    (project_copy / "engine-configs" / "dev" / "prefill.yaml").write_text("max_batch_size: [16\n")
    return project_copy


def test_preflight_reports_a_broken_config_as_a_failed_check(broken: Path) -> None:
    target = LocalTarget("dev")  # loads nothing yet
    report = target.preflight()
    assert [(r["check"], r["result"]) for r in report.rows] == [("engine configs and manifests", "FAIL")]
    assert "prefill.yaml" in report.rows[0]["detail"] and report.rows[0]["fix"]
    assert not report.ok
    with pytest.raises(ConfigError, match="prefill.yaml"):  # what needs the bundle still says why it cannot run
        target.apply()
    assert not (broken.parent / "state").exists(), "a refused apply must leave no state folder"


def test_the_state_folder_is_named_from_the_dgd_without_validating_the_bundle(broken: Path, tmp_path: Path) -> None:
    target = LocalTarget("dev")
    assert target.dir == tmp_path / "state" / "dev-gtc-demo"  # as before: <state root>/<env>-<DGD name>
    assert target.name == "dev-gtc-demo (local)"
    assert not target.is_running() and target.status().title == "dev-gtc-demo (local): not running"
    assert target.teardown().rows == []


def test_an_unreadable_dgd_name_is_the_bundles_own_error(project_copy: Path) -> None:
    dgd = project_copy / "manifests" / "dev" / "20-dgd-gtc-demo.yaml"
    dgd.write_text(dgd.read_text().replace("name: gtc-demo\n", "name: Gtc_Demo\n", 1))
    assert dgd_name("dev") is None
    with pytest.raises(ConfigError, match="Gtc_Demo"):
        _ = LocalTarget("dev").dir


def test_apply_rows_name_each_process_it_starts_restarts_or_stops() -> None:
    before = [{"name": "frontend-0", "digest": "a"}, {"name": "decode-0", "digest": "b"},
              {"name": "decode-1", "digest": "c"}]
    after = [{"name": "frontend-0", "digest": "a"}, {"name": "decode-0", "digest": "B"},
             {"name": "prefill-0", "digest": "d"}]
    assert _process_rows(before, after) == [
        {"kind": "Process", "name": "decode-0", "action": "restarted"},
        {"kind": "Process", "name": "prefill-0", "action": "started"},
        {"kind": "Process", "name": "decode-1", "action": "stopped"},
    ]
    assert _process_rows(after, after) == []
    assert {r["action"] for r in _process_rows([], after)} == {"started"}  # a supervisor (re)started: all of them
