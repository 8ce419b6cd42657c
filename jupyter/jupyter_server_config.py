# `make lab` (and the browser test, tests/test_browser.py) run JupyterLab with JUPYTER_CONFIG_DIR=<repo>/jupyter:
# these settings, not the user's ~/.jupyter, configure it for the workbook.
import os

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file

c.ServerApp.ip = "127.0.0.1"  # loopback only
c.ServerApp.allow_remote_access = False
# Root is the user on these machines and in most containers; without this JupyterLab exits at once
# ("Running as root is not recommended. Use --allow-root").
c.ServerApp.allow_root = True
# No request to the Jupyter news feed from the presenter's machine (the notification asking for it is turned off in
# labconfig/default_setting_overrides.json).
c.LabApp.news_url = None
# Checkpoints ("File > Save and create checkpoint", and the one JupyterLab makes when a notebook is opened) go to
# jupyter/lab/checkpoints/ (ignored by git), never into notebooks/: the workbook's folder stays exactly as committed.
# FileCheckpoints joins this to each notebook's folder, and an absolute path wins that join.
c.FileCheckpoints.checkpoint_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lab", "checkpoints")
os.makedirs(c.FileCheckpoints.checkpoint_dir, exist_ok=True)  # else jupyter_server falls back to the temp folder

# Each notebook is a pair, notebooks/NAME.py (the source) + NAME.ipynb, kept in step by jupytext's contents manager
# (its server extension is on once jupytext is installed; the pairing is notebooks/jupytext.toml). Saving a notebook
# here writes both. This hook makes the .ipynb the committed form whatever ran before the save: no outputs or
# execution counts except the expected output of `# NBVAL_CHECK_OUTPUT` cells, cell metadata reduced to the tags, and
# the notebook metadata as committed (JupyterLab would add the running kernel's language_info and display name, and
# jupytext its pairing options).
COMMITTED_METADATA = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                      "language_info": {"name": "python"}}


def committed_form(model: dict, **_: object) -> None:
    if model.get("type") != "notebook":
        return
    nb = model["content"]
    nb["metadata"] = {key: dict(value) for key, value in COMMITTED_METADATA.items()}
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags")
        cell["metadata"] = {"tags": tags} if tags else {}
        if cell["cell_type"] == "code":
            expected = "# NBVAL_CHECK_OUTPUT" in "".join(cell["source"]) and cell["outputs"]
            cell["outputs"] = cell["outputs"] if expected else []
            cell["execution_count"] = 1 if expected else None


c.ContentsManager.pre_save_hook = committed_form
