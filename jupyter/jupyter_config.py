# Loaded by every Jupyter application started with JUPYTER_CONFIG_DIR=<repo>/jupyter (`make lab`, the browser test),
# and by gtcdemo.workbook for the papermill runs of `make demo` (papermill itself loads no config files).
c = get_config()  # noqa: F821 - provided by traitlets when it loads this file

# ipykernel >= 7.4 warns "Kernel is running over TCP without encryption" unless the kernel manager provisions
# CurveZMQ keys in the connection file (jupyter_client >= 8.9 `KernelManager.transport_encryption`). "auto" does so
# for kernels whose kernelspec declares `supported_encryption: ["curve"]` (ipykernel's does), so the kernel's
# messages are encrypted and the warning has nothing to warn about.
c.KernelManager.transport_encryption = "auto"
