"""Run the step notebooks headless with papermill, keeping every executed notebook as an artifact."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from . import project
from .errors import ConfigError, GtcdemoError


def step_notebooks() -> list[Path]:
    """The numbered step notebooks that exist, in order (00_preflight, 01_configs, 02_deploy, ...)."""
    return sorted(p for p in project.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def kernel_config() -> Any:
    """The project's Jupyter config (jupyter/jupyter_config.py, also loaded by `make lab`) for papermill's kernel
    manager, since papermill reads no config files: it provisions CurveZMQ keys, so ipykernel's "running over TCP
    without encryption" warning is not printed once per notebook."""
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader("jupyter_config.py", path=str(project.ROOT / "jupyter")).load_config()


def declared_parameters(path: Path) -> dict[str, Any]:
    import papermill

    return papermill.inspect_notebook(str(path))


def run_notebook(path: Path, out_dir: Path, parameters: dict[str, Any], *, log_output: bool = False) -> Path:
    """Execute one notebook into ``out_dir`` with the parameters it declares; the output is kept on failure too."""
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / path.name
    declared = declared_parameters(path)
    walkthrough_wide = {"env", "target"}  # passed to every notebook; one that does not take them just ignores them
    unknown = [k for k in parameters if k not in declared and k not in walkthrough_wide]
    if unknown:
        import difflib

        near = difflib.get_close_matches(unknown[0], list(declared), n=1)
        raise ConfigError(f"unknown parameter {unknown[0]!r} for {path.stem}", where=path.name,
                          fix=f"did you mean {near[0]!r}?" if near else f"it takes: {', '.join(declared)}")
    accepted = {k: v for k, v in parameters.items() if k in declared}
    env_before = os.environ.get("GTCDEMO_OUT")
    os.environ["GTCDEMO_OUT"] = str(out_dir)  # where notebooks save figures and records
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        papermill.execute_notebook(str(path), str(output), parameters=accepted, kernel_name="python3",
                                   cwd=str(path.parent), log_output=log_output, progress_bar=False,
                                   config=kernel_config())
    finally:
        if env_before is None:
            os.environ.pop("GTCDEMO_OUT", None)
        else:
            os.environ["GTCDEMO_OUT"] = env_before
    return output


def _parameters(name: str, env: str, target: str, run_dir: Path) -> dict[str, Any]:
    """What `gtcdemo demo` passes a notebook: env and target; the demo records itself into the run's folder; the
    comparison compares dev with agg whichever env the run deploys, so it takes only the target (and runs at its
    default sizes and preset)."""
    if name == "demo.ipynb":
        return {"env": env, "target": target, "mode": "record", "recording": str(run_dir / "recording")}
    if name == "06_disagg_vs_agg.ipynb":
        return {"target": target}
    return {"env": env, "target": target}


def run_demo(env: str = "dev", target: str = "local", out_dir: str | Path = "out", timeout_s: float = 600.0) -> Path:
    """The main job: up, every step notebook headless into a fresh output folder, down; print where results are."""
    from .targets import get_target

    project.check_env(env)
    project.check_target(target)
    run_dir = Path(out_dir).resolve() / f"{env}-{target}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=False)
    tgt = get_target(target, env)
    print(f"gtcdemo demo: env={env} target={target} -> {run_dir}", flush=True)
    print(repr(tgt.apply()), flush=True)
    failed: Exception | None = None
    executed: list[Path] = []
    try:
        print(repr(tgt.wait(timeout_s=timeout_s, progress=lambda m: print(f"  … {m}", flush=True))), flush=True)
        steps = step_notebooks()
        # The live demo runs (recording itself) before the teardown step, on the graph the steps deployed (the
        # comparison, 06, takes that graph down for its own layouts and brings it back as it was).
        order = [n for n in steps if n.name != "99_teardown.ipynb"] + [project.NOTEBOOKS / "demo.ipynb"] + \
            [n for n in steps if n.name == "99_teardown.ipynb"]
        for notebook in order:
            started = time.monotonic()
            print(f"running {notebook.name} …", flush=True)
            try:
                executed.append(run_notebook(notebook, run_dir, _parameters(notebook.name, env, target, run_dir)))
            except Exception as exc:  # papermill keeps the failed notebook with a red banner: report and stop
                failed = exc
                name, value = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
                print(f"  FAILED: {notebook.name}: {name}: {value}", flush=True)
                break
            print(f"  done in {time.monotonic() - started:.1f} s", flush=True)
    finally:
        stopped = tgt.teardown()  # the safety net when a step failed before 99_teardown (which normally stops it)
        if stopped.rows:
            print(repr(stopped), flush=True)
        latest = Path(out_dir).resolve() / "latest"
        latest.unlink(missing_ok=True)
        latest.symlink_to(run_dir.name)
    print(f"\nresults: {run_dir}  (also {latest})")
    for path in sorted(run_dir.iterdir()):
        print(f"  {path.name}")
    if failed is not None:
        detail = f"{getattr(failed, 'ename', type(failed).__name__)}: {getattr(failed, 'evalue', failed)}"
        raise GtcdemoError(f"notebook run failed: {detail}", where=str(run_dir),
                           fix="open the executed notebook in that folder: the failing cell is marked in red")
    return run_dir

