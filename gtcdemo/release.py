"""Which Dynamo release runs where, and how a second one is installed and started on this machine.

The cluster runs the release the DGD's images name (their tag: ``dynamo-frontend:0.8.1`` is 0.8.1). The local
target runs the one in ``.venv`` by default (``[tool.gtcdemo] no-deps`` in pyproject.toml: 1.6.1, for the
mocker's TRT-LLM timing model), and the DGD's release on request, from its own venv under the cache
(``~/.cache/gtcdemo/dynamo-<version>/``, made by ``python -m gtcdemo.install``), so the frontend behaviour the
cluster path relies on is checked against the cluster's release too (tests/test_release_compat.py).

``python -m gtcdemo.release [--cwd DIR] [--after-registrations DIR N] -- PROGRAM ARGS...`` is the small launcher
the local graph puts in front of a 0.8 process (see ``launch``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .clock import wait_until
from .errors import ConfigError, MissingDependencyError
from .files import read_text
from .project import MANIFESTS, ROOT

DGD_KIND = "DynamoGraphDeployment"
# Dynamo publishes its container images under an ai-dynamo/ repository (nvcr.io/nvidia/ai-dynamo/...), one tag per
# release for every image of that release (dynamo-frontend, tensorrtllm-runtime, vllm-runtime, ...).
DYNAMO_IMAGE = re.compile(r"(^|/)ai-dynamo/[^:@]+:(?P<tag>[^@]+)")
VERSION_TAG = re.compile(r"^(?P<version>\d+\.\d+\.\d+)(?:$|[-+])")

# The release series whose local command lines gtcdemo knows (gtcdemo/local/plan.py), each checked on its PyPI wheel.
KNOWN_SERIES = ((0, 8), (1, 6))

# Where each release's frontend reads a histogram's bucket settings ({x} = DYN_METRICS_TTFT, DYN_METRICS_ITL,
# DYN_METRICS_REQUEST_DURATION, ...; {p} = MIN | MAX | COUNT), first name first:
# - 0.8: only DYN_HISTOGRAM_ + {x}_{p}: parse_bucket_config prepends HISTOGRAM_PREFIX to the name it is given
#   (lib/llm/src/http/service/metrics.rs; HISTOGRAM_PREFIX = "DYN_HISTOGRAM_" in
#   lib/runtime/src/config/environment_names.rs, both at cf433e682 and still at the mirror's HEAD).
# - 1.6: {x}_{p} first; the 0.8 name still works but logs "Deprecated histogram bucket environment variable;
#   rename it" with deprecated=DYN_HISTOGRAM_DYN_METRICS_ITL_MIN replacement=DYN_METRICS_ITL_MIN (the strings of
#   the 1.6.1 wheel's dynamo/_core.abi3.so, and its running frontend: with both set, the plain name wins).
BUCKET_NAMES: dict[tuple[int, int], tuple[str, ...]] = {
    (0, 8): ("DYN_HISTOGRAM_{x}_{p}",),
    (1, 6): ("{x}_{p}", "DYN_HISTOGRAM_{x}_{p}"),
}
BUCKET_ENV = re.compile(r"^(?:DYN_HISTOGRAM_)?(?P<x>DYN_METRICS_[A-Z_]+?)_(?P<p>MIN|MAX|COUNT)$")


def series(version: str) -> tuple[int, int]:
    major, minor, *_ = (int(part) for part in version.split("."))
    return major, minor


# -- the release the DGD names ----------------------------------------------------------------------------------


def image_versions(dgd: dict) -> dict[str, str | None]:
    """Service -> the Dynamo release its image tag names (None: not a Dynamo image, or not a release tag)."""
    out: dict[str, str | None] = {}
    services = ((dgd.get("spec") or {}).get("services") or {})
    for name, svc in services.items() if isinstance(services, dict) else []:
        pod = svc.get("extraPodSpec") if isinstance(svc, dict) else None
        main = pod.get("mainContainer") if isinstance(pod, dict) else None
        image = str(main.get("image") or "") if isinstance(main, dict) else ""
        match = DYNAMO_IMAGE.search(image)
        version = VERSION_TAG.match(match["tag"]) if match else None
        out[name] = version["version"] if version else None
    return out


def check_dgd(dgd: dict, where: str = "DGD") -> list[ConfigError]:
    """The DGD's Dynamo images name one release, and its Frontend's bucket settings use names that release reads."""
    errors: list[ConfigError] = []
    versions = image_versions(dgd)
    named = {v for v in versions.values() if v}
    if len(named) > 1:
        first = min(named, key=lambda v: list(versions.values()).index(v))
        for name, version in versions.items():
            if version and version != first:
                errors.append(ConfigError(
                    f"image of {name} is Dynamo {version} but the other services run {first}: the frontend and the "
                    "workers of one graph must be one release",
                    where=f"{where}.spec.services.{name}.extraPodSpec.mainContainer.image",
                    fix=f"tag every Dynamo image :{first} (or all :{version})"))
    services = ((dgd.get("spec") or {}).get("services") or {})
    frontends = [n for n, s in services.items() if isinstance(s, dict) and s.get("componentType") == "frontend"]
    version = versions.get(frontends[0]) if len(frontends) == 1 else None
    if version and series(version) in BUCKET_NAMES:
        errors += _check_bucket_envs(dgd, frontends[0], version, where)
    return errors


def _check_bucket_envs(dgd: dict, frontend: str, version: str, where: str) -> list[ConfigError]:
    """Refuse bucket settings the Frontend's release would silently ignore, or that two names set differently."""
    spec = dgd.get("spec") or {}
    entries: dict[str, tuple[str, Any]] = {}  # the Frontend's env as the operator merges it: service over spec
    for at, envs in ((f"{where}.spec.envs", spec.get("envs")),
                     (f"{where}.spec.services.{frontend}.envs", spec["services"][frontend].get("envs"))):
        for i, env in enumerate(envs or []):
            if isinstance(env, dict) and "name" in env:
                entries[str(env["name"])] = (f"{at}[{i}]", env.get("value"))
    reads = BUCKET_NAMES[series(version)]
    errors: list[ConfigError] = []
    settings = {(m["x"], m["p"]) for n in entries if (m := BUCKET_ENV.match(n))}
    for x, p in sorted(settings):
        names = [t.format(x=x, p=p) for t in ("{x}_{p}", "DYN_HISTOGRAM_{x}_{p}")]
        present = {n: entries[n] for n in names if n in entries}
        values = {str(v) for _, v in present.values()}
        if len(values) > 1:
            errors.append(ConfigError(
                f"{' and '.join(present)} are set to different values {sorted(values)}: releases that read one or "
                "the other would bucket differently", where=next(iter(present.values()))[0],
                fix="give both names the same value"))
        read = [t.format(x=x, p=p) for t in reads]
        if not any(n in present for n in read):
            name, (at, value) = next(iter(present.items()))
            errors.append(ConfigError(
                f"{name} is ignored by Dynamo {version}'s frontend (the Frontend image's release), which reads "
                f"{' or '.join(read)}: the histogram keeps its default buckets", where=at,
                fix=f"add `- name: {read[0]}` / `value: \"{value}\"` beside it (keep {name} if another release "
                    "reads it)"))
    return errors


def dgd_release(dgd: dict, where: str = "DGD") -> str:
    """The one Dynamo release the DGD's images name (what the cluster runs)."""
    errors = check_dgd(dgd, where)
    mismatch = [e for e in errors if "must be one release" in e.problem]
    if mismatch:
        raise mismatch[0]
    named = {v for v in image_versions(dgd).values() if v}
    if not named:
        raise ConfigError("no service's image is a Dynamo release tag (e.g. "
                          "nvcr.io/nvidia/ai-dynamo/dynamo-frontend:0.8.1), so the release the cluster runs is unknown",
                          where=f"{where}.spec.services.*.extraPodSpec.mainContainer.image",
                          fix="set each service's image to a tagged Dynamo image")
    return named.pop()


def manifest_releases(root: Path = MANIFESTS) -> dict[str, str]:
    """Env -> the release its DGD names, read straight from manifests/<env>/ (install time: no validation)."""
    out = {}
    for path in sorted(root.glob("*/*.yaml")):
        for doc in yaml.safe_load_all(read_text(path)):
            if isinstance(doc, dict) and doc.get("kind") == DGD_KIND:
                out[path.parent.name] = dgd_release(doc, where=str(path.relative_to(root.parent)))
    return out


# -- releases installed on this machine --------------------------------------------------------------------------


def settings() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def default_version() -> str:
    """The release the local target runs by default: the one pyproject.toml installs into .venv."""
    pins = dict(req.split("==") for req in settings()["tool"]["gtcdemo"]["no-deps"])
    return pins["ai-dynamo"]


def cache_root() -> Path:
    return Path(os.environ.get("GTCDEMO_CACHE") or Path.home() / ".cache" / "gtcdemo").expanduser()


@dataclass(frozen=True)
class Release:
    """One Dynamo release runnable here: the interpreter that has it, and its NATS server when it needs one."""

    version: str
    python: str
    venv: Path | None = None  # None: the project's own environment

    @property
    def series(self) -> tuple[int, int]:
        return series(self.version)

    @property
    def needs_nats(self) -> bool:
        """0.8's KV router keeps its state in NATS JetStream (1.6 runs without NATS)."""
        return self.series < (1, 0)

    @property
    def nats_server(self) -> str:
        return str(Path(self.python).parent / "nats-server")

    def require(self) -> Release:
        """Self, when installed; else the command that installs it."""
        if self.series not in KNOWN_SERIES:
            known = ", ".join(f"{a}.{b}" for a, b in KNOWN_SERIES)
            raise ConfigError(f"Dynamo {self.version} has no local command line in gtcdemo (known: {known})",
                              where="gtcdemo/local/plan.py", fix="rehearse that release on the cluster, or teach "
                              "gtcdemo/local/plan.py its frontend and mocker flags")
        if self.venv is not None and self.stamp() != wanted_stamp(self.version):
            raise MissingDependencyError(f"Dynamo {self.version} is not installed in {self.venv}",
                                         fix="run `make setup` (or `.venv/bin/python -m gtcdemo.install`)")
        return self

    def stamp(self) -> dict | None:
        try:
            return json.loads((self.venv / STAMP).read_text()) if self.venv else None
        except (OSError, ValueError):
            return None


STAMP = ".gtcdemo-release.json"


def resolve(version: str | None) -> Release:
    """The release to run: None = the local default (in this environment), else that version's own venv."""
    if version is None or version == default_version():
        return Release(version or default_version(), sys.executable)
    venv = cache_root() / f"dynamo-{version}"
    return Release(version, str(venv / "bin" / "python"), venv)


def wanted_stamp(version: str) -> dict:
    """What a release venv must hold: pyproject's `local` extra, [tool.gtcdemo] release-venv, and the release."""
    project = settings()
    return {"requirements": project["project"]["optional-dependencies"]["local"]
            + project["tool"]["gtcdemo"]["release-venv"],
            "no-deps": [f"ai-dynamo=={version}", f"ai-dynamo-runtime=={version}"]}


def ensure_venv(version: str, log: Any = print) -> Release:
    """Install ``version`` into its own venv (idempotent: a venv whose stamp matches is left alone)."""
    release = resolve(version)
    if release.venv is None or release.stamp() == wanted_stamp(version):
        return release
    wanted = wanted_stamp(version)
    log(f"gtcdemo: installing Dynamo {version} into {release.venv} (once; about a minute)")
    if release.venv.exists():
        shutil.rmtree(release.venv)
    steps = [[sys.executable, "-m", "venv", str(release.venv)],
             [release.python, "-m", "pip", "install", "--quiet", *wanted["requirements"]],
             [release.python, "-m", "pip", "install", "--quiet", "--no-deps", *wanted["no-deps"]]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            lines = [ln for ln in (done.stdout + done.stderr).splitlines() if not ln.startswith("WARNING: Location")]
            raise MissingDependencyError(f"installing Dynamo {version} failed: `{' '.join(step)}` exited with "
                                         f"{done.returncode}:\n" + "\n".join(lines[-20:]), where=str(release.venv),
                                         fix="fix the cause above (PyPI reachable? disk space?), then run "
                                             "`.venv/bin/python -m gtcdemo.install` again")
    (release.venv / STAMP).write_text(json.dumps(wanted, indent=2))
    return release


# -- the launcher ------------------------------------------------------------------------------------------------


def registrations(store: Path) -> int:
    """Workers fully registered in a 0.8 file discovery store: the fewer of written model cards and instances."""
    counts = []
    for kind in ("mdc", "instances"):
        folder = store / "v1" / kind
        counts.append(sum(1 for f in folder.glob("*") if f.is_file() and f.stat().st_size > 0)
                      if folder.is_dir() else 0)
    return min(counts)


def launch(argv: list[str]) -> None:
    """Start PROGRAM in place of this process, after --cwd and once --after-registrations are met.

    - ``--cwd DIR``: 0.8's mocker registers its model card with the served name as the model's source path; where
      that path does not exist (relative to the working folder) it rewrites every file in the card to
      ``hf://<name>/...`` and the frontend downloads them from the hub (lib/llm/src/local_model.rs ``attach``,
      ``move_to_url``; lib/llm/src/model_card.rs ``download_config``). Started from the model volume's folder,
      the served name is the model folder, so the card keeps the volume's paths and the frontend reads them there,
      as the cluster's frontend reads the TRT-LLM worker's card on its own mount of the model PVC.
    - ``--after-url URL``: the 0.8 processes connect to NATS at start and exit when it is not up yet.
    - ``--after-registrations STORE N``: 0.8's file discovery store reads a key on the file's creation event only
      (lib/runtime/src/storage/kv/file.rs ``watch``: Create, or Modify(Data(Content)), which inotify never
      reports), when the writer has not written yet ("EOF while parsing"), so a frontend started beside its
      workers never sees them. A frontend started after they registered lists them from the store instead.
    """
    options, _, program = _split(argv)
    cwd, store, count, urls = None, None, 0, []
    i = 0
    while i < len(options):
        if options[i] == "--cwd":
            cwd, i = options[i + 1], i + 2
        elif options[i] == "--after-url":
            urls.append(options[i + 1])
            i += 2
        elif options[i] == "--after-registrations":
            store, count, i = Path(options[i + 1]), int(options[i + 2]), i + 3
        else:
            sys.exit(f"gtcdemo.release: unknown option {options[i]!r}")
    if not program:
        sys.exit("usage: python -m gtcdemo.release [--cwd DIR] [--after-url URL] [--after-registrations STORE N] "
                 "-- PROGRAM ARGS...")
    for url in urls:
        _wait_for(url)
    if store is not None:
        wait_until(lambda: registrations(store) >= count, timeout_s=300, interval_s=0.2)
        print(f"gtcdemo.release: {registrations(store)}/{count} workers registered in {store}; starting "
              f"{' '.join(program[:3])}", flush=True)
    if cwd:
        os.chdir(cwd)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the release's program needs no gtcdemo
    os.execve(program[0], program, env)


def _answers(url: str) -> bool:
    """Whether ``url`` answers 200 now."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_for(url: str, timeout_s: float = 60.0) -> None:
    """Until ``url`` (a loopback health URL) answers 200: a client started before its server would exit."""
    if wait_until(lambda: _answers(url), timeout_s=timeout_s, interval_s=0.1):
        return
    print(f"gtcdemo.release: {url} did not answer within {timeout_s:.0f} s; starting anyway", flush=True)


def _split(argv: list[str]) -> tuple[list[str], str, list[str]]:
    if "--" not in argv:
        return argv, "", []
    at = argv.index("--")
    return argv[:at], "--", argv[at + 1:]


if __name__ == "__main__":
    launch(sys.argv[1:])
