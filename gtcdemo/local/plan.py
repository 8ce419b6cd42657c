"""The bundle's DGD as the processes the local target runs, and Prometheus' config for them (no side effects).

Each ``Frontend`` replica becomes ``python -m dynamo.frontend`` and each worker replica ``python -m dynamo.mocker
--engine-type trtllm`` with the worker's ``--disaggregation-mode``, given the same environment the operator
would inject (the DGD's and the service's ``envs``, ``DYN_NAMESPACE``). Volume mounts map to local folders:
each PVC to ``<cache>/pvc/<name>`` and each ConfigMap volume to the deployment's ``configmaps/<name>``
(``gtcdemo/local/volumes.py``). A worker's engine config becomes the mocker flags that simulate it
(``mocker_settings``), its KV cache as many blocks as a real TRT-LLM worker would allocate on one H100 (``kv_blocks``).

That is the command line of the local default release (1.6). Given the DGD's own release 0.8 instead
(``gtcdemo/release.py``), the same graph runs with 0.8's flags and a NATS server (``_Release08``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import release as release_mod
from ..args import arg_value, container_args
from ..errors import ConfigError
from ..modeldir import LLAMA_31_8B_CONFIG
from .ports import LOOPBACK
from .volumes import Mounts, service_mounts

if TYPE_CHECKING:
    import pandas as pd

    from ..bundle import Bundle

# The TRT-LLM engine keys that have no mocker equivalent: they change how a real GPU runs, not the scheduling
# and KV-cache behaviour the mocker simulates. They are validated, carried in the ConfigMap, and ignored here.
NO_MOCKER_EQUIVALENT = (
    "moe_expert_parallel_size", "enable_attention_dp", "pipeline_parallel_size", "trust_remote_code", "backend",
    "disable_overlap_scheduler", "print_iter_log", "max_input_len", "model", "cuda_graph_config.*",
    "cache_transceiver_config.*", "kv_cache_config.dtype", "scheduler_config.context_chunking_policy",
    "scheduler_config.capacity_scheduler_policy (MAX_UTILIZATION, STATIC_BATCH)",
)

# One H100 80GB as nvidia-smi reports it, Llama-3.1-8B's BF16 weights (8.03 B parameters x 2 bytes) and the
# activation / CUDA-graph reserve TRT-LLM keeps outside the KV pool. Used to turn free_gpu_memory_fraction into
# a KV block count, so the mocker's cache is as large as the real worker's.
GPU_MEMORY_BYTES = 81559 * 2**20
WEIGHT_BYTES = int(8.03e9 * 2)
RUNTIME_RESERVE_BYTES = 3 * 2**30
TRTLLM_TOKENS_PER_BLOCK = 32
TRTLLM_DEFAULT_FREE_FRACTION = 0.9


@dataclass
class ProcSpec:
    """One process of the local graph, as a pod would be on the cluster."""

    name: str                 # like a pod name: <service lowercased>-<replica>
    service: str              # DGD service key (or "Prometheus")
    role: str                 # frontend | prefill | decode | prometheus
    replica: int
    argv: list[str]
    env: dict[str, str]
    ports: dict[str, int]
    health: str               # URL that answers 200 when the process is ready
    mocker_settings: dict[str, Any] = field(default_factory=dict)

    def digest(self) -> str:
        """Changes whenever anything that would need a restart changes."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def kv_blocks(config: dict, *, kv_bytes_per_token: int, block_size: int) -> int:
    """KV blocks a real TRT-LLM worker would allocate on one H100 for this engine config."""
    kv = config.get("kv_cache_config") or {}
    fraction = kv.get("free_gpu_memory_fraction", TRTLLM_DEFAULT_FREE_FRACTION)
    tp = int(config.get("tensor_parallel_size", 1))
    free = tp * GPU_MEMORY_BYTES - WEIGHT_BYTES - tp * RUNTIME_RESERVE_BYTES
    blocks = int(free * fraction) // (kv_bytes_per_token * block_size)
    if "max_tokens" in kv:
        blocks = min(blocks, int(kv["max_tokens"]) // block_size)
    return max(blocks, 1)


def mocker_settings(config: dict, kv_bytes_per_token: int) -> dict[str, Any]:
    """The mocker flags equivalent to a TRT-LLM engine config (keys in NO_MOCKER_EQUIVALENT are ignored)."""
    kv = config.get("kv_cache_config") or {}
    block_size = int(kv.get("tokens_per_block", TRTLLM_TOKENS_PER_BLOCK))
    settings: dict[str, Any] = {
        "--block-size": block_size,
        "--num-gpu-blocks-override": kv_blocks(config, kv_bytes_per_token=kv_bytes_per_token, block_size=block_size),
    }
    if "max_batch_size" in config:
        settings["--max-num-seqs"] = config["max_batch_size"]
    if "max_num_tokens" in config:
        settings["--max-num-batched-tokens"] = config["max_num_tokens"]
    # TRT-LLM refuses a request beyond max_seq_len, which defaults to the model's max_position_embeddings; the
    # mocker enforces no length unless told (its --help: "When omitted, no model-length limit is enforced").
    settings["--max-model-len"] = config.get("max_seq_len", LLAMA_31_8B_CONFIG["max_position_embeddings"])
    if "enable_chunked_prefill" in config:
        chunked = config["enable_chunked_prefill"]
        settings["--enable-chunked-prefill" if chunked else "--no-enable-chunked-prefill"] = None
    if "enable_block_reuse" in kv:
        settings["--enable-prefix-caching" if kv["enable_block_reuse"] else "--no-enable-prefix-caching"] = None
    policy = (config.get("scheduler_config") or {}).get("capacity_scheduler_policy")
    if policy == "GUARANTEED_NO_EVICT":  # the only policy the mocker simulates (it spells it in lower case)
        settings["--trtllm-capacity-scheduler-policy"] = "guaranteed_no_evict"
    return settings


def _flags(settings: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for flag, value in settings.items():
        argv.append(flag)
        if value is not None:
            argv.append(str(value))
    return argv


# The worker program the local target can stand in for: `python3 -m dynamo.trtllm` becomes the mocker with TRT-LLM
# timing. The operator runs the DGD's command + args as they are (deploy/operator/internal/dynamo/graph.go).
MOCKED_WORKER = ("-m", "dynamo.trtllm")


def _worker_args(service: str, svc: dict) -> list[str]:
    """The worker's flags after its program, refusing a program the mocker cannot rehearse."""
    main = (svc.get("extraPodSpec") or {}).get("mainContainer") or {}
    argv = [*(str(c) for c in main.get("command") or []), *container_args(svc)]
    if main.get("command") and Path(argv[0]).name.startswith("python") and tuple(argv[1:3]) == MOCKED_WORKER:
        return argv[3:]
    shown = " ".join(str(c) for c in main.get("command") or []) or "no command"
    raise ConfigError(f"service {service} runs `{shown}`, which the local target cannot rehearse: it stands in the "
                      "mocker for `python3 -m dynamo.trtllm` only", where=f"spec.services.{service}.extraPodSpec."
                      "mainContainer.command", fix="use `command: [python3, -m, dynamo.trtllm]` with the worker's "
                      "flags in args (as Dynamo's examples/backends/trtllm/deploy/disagg.yaml), or rehearse on the "
                      "cluster target")


def check_rehearsable(b: Bundle) -> None:
    """Refuse, before anything starts, a worker whose program the local target cannot stand in for."""
    for service, svc in b.services.items():
        if svc.get("componentType") == "worker":
            _worker_args(service, svc)


def _envs(entries: list[dict] | None, mounts: Mounts) -> dict[str, str]:
    """DGD env entries, with values that are container paths mapped to local folders."""
    out = {}
    for entry in entries or []:
        value = str(entry.get("value", ""))
        out[entry["name"]] = mounts.local(value) if value.startswith("/") else value
    return out


def runtime_env(discovery_dir: Path) -> dict[str, str]:
    """Loopback-only, etcd- and NATS-free runtime settings shared by every Dynamo process of the local graph."""
    return {
        "DYN_DISCOVERY_BACKEND": "file",
        "DYN_FILE_KV": str(discovery_dir),
        "DYN_REQUEST_PLANE": "tcp",
        "DYN_EVENT_PLANE": "zmq",
        "DYN_TCP_RPC_HOST": LOOPBACK,
        "DYN_TCP_RESPONSE_STREAM_HOST": LOOPBACK,
        "DYN_EVENT_PLANE_HOST": LOOPBACK,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "NO_COLOR": "1",
        "DYN_LOGGING_JSONL": "false",
    }


def plan(
    b: Bundle,
    *,
    state_dir: Path,
    pvc_root: Path,
    ports: dict[str, int],
    kv_bytes_per_token: int,
    python: str = sys.executable,
    release: release_mod.Release | None = None,
) -> list[ProcSpec]:
    """The processes that run ``b`` locally. ``ports`` maps process names to ports chosen by the caller.

    ``release``: the Dynamo release that runs the frontend and the mockers (default: the one in this environment);
    a 0.8 release also needs ``ports["nats"]`` and ``ports["nats-monitor"]``.
    """
    release = release or release_mod.Release(release_mod.default_version(), python)
    specs: list[ProcSpec] = []
    configmap_root = state_dir / "configmaps"
    base_env = runtime_env(state_dir / "discovery")
    base_env["DYN_NAMESPACE"] = b.dynamo_namespace
    old = _Release08(release, python, state_dir, ports, b) if release.series < (1, 0) else None
    if old:
        specs.append(old.nats)
        base_env["NATS_SERVER"] = f"nats://{LOOPBACK}:{ports['nats']}"
    for service, svc in b.services.items():
        mounts = service_mounts(svc, pvc_root, configmap_root)
        env = {**base_env, **_envs(b.dgd["spec"].get("envs"), mounts), **_envs(svc.get("envs"), mounts)}
        ctype = svc.get("componentType")
        for replica in range(int(svc.get("replicas", 1))):
            name = f"{service.lower()}-{replica}"
            if ctype == "frontend":
                port = ports[name]
                argv = [release.python, "-m", "dynamo.frontend", "--http-host", LOOPBACK, "--http-port", str(port)]
                specs.append(ProcSpec(
                    name=name, service=service, role="frontend", replica=replica,
                    argv=old.frontend(argv) if old else argv,
                    env=env, ports={"http": port}, health=f"http://{LOOPBACK}:{port}/health"))
            elif ctype == "worker":
                spec = _worker(name, service, svc, replica, env, mounts, ports[name], b, kv_bytes_per_token,
                               release.python)
                specs.append(old.worker(spec, service) if old else spec)
            else:
                raise ConfigError(f"service {service} has componentType {ctype!r}, which the local target cannot run",
                                  where=f"spec.services.{service}", fix="use frontend or worker services")
    return specs


def _worker(name: str, service: str, svc: dict, replica: int, env: dict[str, str], mounts: Mounts, port: int,
            b: Bundle, kv_bytes_per_token: int, python: str) -> ProcSpec:
    args = _worker_args(service, svc)
    mode = arg_value(args, "--disaggregation-mode") or "agg"
    model_path = mounts.local(arg_value(args, "--model-path") or "")
    engine_path = arg_value(args, "--extra-engine-args")
    settings: dict[str, Any] = {}
    if engine_path:
        key = Path(engine_path).name
        settings = mocker_settings(b.engine_configs[Path(key).stem].values, kv_bytes_per_token)
    component = "prefill" if mode == "prefill" else "backend"
    argv = [
        python, "-m", "dynamo.mocker", "--engine-type", "trtllm",
        "--model-path", model_path, "--model-name", arg_value(args, "--served-model-name") or b.served_model_name,
        "--disaggregation-mode", mode, "--endpoint", f"dyn://{b.dynamo_namespace}.{component}.generate",
        *_flags(settings),
    ]
    worker_env = {
        **env,
        "DYN_SYSTEM_ENABLED": "true",
        "DYN_SYSTEM_HOST": LOOPBACK,
        "DYN_SYSTEM_PORT": str(port),
        "DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS": '["generate"]',
    }
    return ProcSpec(name=name, service=service, role=mode, replica=replica, argv=argv, env=worker_env,
                    ports={"system": port}, health=f"http://{LOOPBACK}:{port}/health", mocker_settings=settings)


class _Release08:
    """The 0.8 command line of the same graph (ai-dynamo 0.8.1's frontend and mocker, checked on the wheel).

    - Discovery and request plane are flags: ``--store-kv file --request-plane tcp`` on every Dynamo process
      (components/src/dynamo/frontend/main.py, components/src/dynamo/mocker/args.py at cf433e682).
    - The mocker has no ``--engine-type`` (no TRT-LLM timing model) and no ``--disaggregation-mode``: a prefill
      worker is ``--is-prefill-worker``, a decode worker ``--is-decode-worker`` (mocker/args.py); its flags
      ``--max-model-len`` and ``--trtllm-capacity-scheduler-policy`` do not exist yet and are dropped.
    - The KV router keeps its state in NATS JetStream: a ``nats-server -js`` on loopback, owned by the graph like
      every other process, its store inside the discovery folder the supervisor empties at each start.
    - Each process waits for NATS, the mockers start from the model volume's folder and the frontend once the
      workers have registered (``gtcdemo.release.launch`` says why).
    """

    MOCKER_FLAGS_ABSENT = ("--max-model-len", "--trtllm-capacity-scheduler-policy")
    PLANES = ["--store-kv", "file", "--request-plane", "tcp"]

    def __init__(self, release: release_mod.Release, python: str, state_dir: Path, ports: dict[str, int],
                 b: Bundle) -> None:
        self.launcher = [python, "-m", "gtcdemo.release"]
        self.store = state_dir / "discovery"
        self.b = b
        client, monitor = ports["nats"], ports["nats-monitor"]
        self.nats_health = f"http://{LOOPBACK}:{monitor}/healthz"
        self.workers = sum(int(s.get("replicas", 1)) for s in b.services.values() if s.get("componentType") == "worker")
        self.nats = ProcSpec(
            name="nats", service="NATS", role="nats", replica=0,
            # The monitoring port (-m, for /healthz) binds to the -a address too (nats-server: HTTPHost defaults
            # to Host).
            argv=[release.nats_server, "-a", LOOPBACK, "-p", str(client), "-m", str(monitor), "-js",
                  "-sd", str(self.store / "nats")],
            env={}, ports={"client": client, "monitor": monitor}, health=self.nats_health)

    def frontend(self, argv: list[str]) -> list[str]:
        return [*self.launcher, "--after-url", self.nats_health, "--after-registrations", str(self.store),
                str(self.workers), "--", *argv, *self.PLANES]

    def worker(self, spec: ProcSpec, service: str) -> ProcSpec:
        argv = spec.argv
        model_path, name = arg_value(argv, "--model-path") or "", arg_value(argv, "--model-name") or ""
        parts = Path(name).parts
        if not parts or Path(model_path).parts[-len(parts):] != parts:
            raise ConfigError(
                f"{service}'s --model-path does not end with its served model name {name!r}: Dynamo 0.8's mocker "
                "registers that name as the model's source, and the frontend would fetch it from the hub",
                where=f"spec.services.{service}.extraPodSpec.mainContainer.args",
                fix=f"keep the model under <volume>/{name} (as /models/{name}), or rehearse 0.8 on the cluster")
        root = str(Path(model_path).parents[len(parts) - 1])
        settings = {k: v for k, v in spec.mocker_settings.items() if k not in self.MOCKER_FLAGS_ABSENT}
        role_flag = {"prefill": ["--is-prefill-worker"], "decode": ["--is-decode-worker"]}.get(spec.role, [])
        program = [argv[0], "-m", "dynamo.mocker", "--model-path", model_path, "--model-name", name, *role_flag,
                   "--endpoint", arg_value(argv, "--endpoint") or "", *self.PLANES, *_flags(settings)]
        launched = [*self.launcher, "--after-url", self.nats_health, "--cwd", root, "--", *program]
        return ProcSpec(name=spec.name, service=spec.service, role=spec.role, replica=spec.replica, argv=launched,
                        env=spec.env, ports=spec.ports, health=spec.health, mocker_settings=settings)


def prometheus_spec(state_dir: Path, port: int, binary: str = "prometheus") -> ProcSpec:
    data = state_dir / "prometheus"
    return ProcSpec(
        name="prometheus", service="Prometheus", role="prometheus", replica=0,
        argv=[binary, f"--config.file={data / 'prometheus.yml'}", f"--storage.tsdb.path={data / 'data'}",
              f"--web.listen-address={LOOPBACK}:{port}", "--storage.tsdb.retention.time=7d",
              "--web.enable-lifecycle", "--log.level=warn"],
        env={}, ports={"http": port}, health=f"http://{LOOPBACK}:{port}/-/ready")


# The Dynamo platform chart's PodMonitors live in the chart's release namespace (dynamo-system on the cluster, see
# manifests/<env>/cluster.toml) and are named dynamo-frontend / dynamo-worker
# (deploy/helm/charts/platform/components/operator/templates/prometheus.yaml, Dynamo 0.8).
PODMONITOR_NAMESPACE = "dynamo-system"
PODMONITORS = {"frontend": ("dynamo-frontend", "http"), "worker": ("dynamo-worker", "system")}


def prometheus_config(b: Bundle, specs: list[ProcSpec], interval_s: float = 1.0,
                      podmonitor_namespace: str = PODMONITOR_NAMESPACE) -> dict:
    """Scrape the frontend and every worker's system port with the target labels the cluster's Prometheus gives.

    prometheus-operator turns a PodMonitor into a scrape job whose targets carry exactly: ``namespace``,
    ``container``, ``pod``, ``job="<podmonitor namespace>/<podmonitor name>"`` and ``endpoint=<port name>``
    (pkg/prometheus/promcfg.go, generatePodMonitorConfig), plus the PodMonitor's own relabelings: Dynamo's copy
    the pod label ``nvidia.com/dynamo-namespace`` into ``dynamo_namespace``. Nothing else, so the local target
    cannot pass a query that relies on a label the cluster's series do not have.
    """
    def target(spec: ProcSpec, kind: str) -> dict:
        monitor, port_name = PODMONITORS[kind]
        return {"targets": [f"{LOOPBACK}:{spec.ports[port_name]}"], "labels": {
            "namespace": b.namespace, "container": "main", "pod": spec.name,
            "job": f"{podmonitor_namespace}/{monitor}", "endpoint": port_name,
            "dynamo_namespace": b.dynamo_namespace}}
    frontends = [target(s, "frontend") for s in specs if s.role == "frontend"]
    workers = [target(s, "worker") for s in specs if "system" in s.ports]
    interval = f"{int(interval_s * 1000)}ms"
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        # prometheus-operator names the jobs podMonitor/<ns>/<name>/<i>; the `job` label is relabelled as above.
        "scrape_configs": [
            {"job_name": f"podMonitor/{podmonitor_namespace}/{PODMONITORS[kind][0]}/0", "static_configs": groups}
            for kind, groups in (("frontend", frontends), ("worker", workers))
        ],
    }


def settings_table(configs: dict, kv_bytes_per_token: int | None = None) -> pd.DataFrame:
    """The mocker flags each role's engine config becomes on the local target, side by side."""
    import pandas as pd

    from ..modeldir import kv_bytes_per_token as default_kv

    per_token = kv_bytes_per_token or default_kv()
    columns = {role: mocker_settings(cfg.values, per_token) for role, cfg in sorted(configs.items())}
    flags = list(dict.fromkeys(f for settings in columns.values() for f in settings))
    frame = pd.DataFrame({role: ["✓" if settings.get(f, "—") is None else settings.get(f, "—") for f in flags]
                          for role, settings in columns.items()}, index=flags)
    frame.index.name = "mocker flag"
    return frame
