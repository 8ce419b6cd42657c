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
