"""A real kube-apiserver + etcd on loopback, the way controller-runtime's envtest runs them.

There is no kubelet, scheduler or controller-manager: tests play those (see ``operator.py``). Usage::

    with EnvTest() as env:
        api = env.api_client()              # kubernetes.client.ApiClient for context do-nyc2-gtc-demo
        os.environ["KUBECONFIG"] = str(env.kubeconfig)

Start-up: find the binaries (``tests/envtest/build-kube-apiserver.sh``, which honours KUBEBUILDER_ASSETS), start
etcd and then kube-apiserver (each in its own process group, logging to files in a fresh temp dir), wait for
``/readyz``, install the CRDs from ``tests/cluster/crds/``, create the namespaces, and start Dynamo 0.8's validating
webhook for DGDs (``webhook.py``: an HTTPS server in this process on 127.0.0.1, registered with a
ValidatingWebhookConfiguration). ``stop()`` always stops the webhook and both processes and removes the temp dir; it
runs on ``__exit__``, at interpreter exit, and when ``start()`` fails. As a last resort the processes get SIGTERM
when the thread that started them dies (PR_SET_PDEATHSIG), so a killed test run does not leave them behind.

Identities (token auth): the admin of the kubeconfig (``envtest-admin``, group system:masters: to the webhook a
plain user, as a person's kubeconfig is), the Dynamo operator's service account (``operator_client()``: the identity
the webhook lets change replicas of adapted services), and namespace-restricted service accounts made on demand
(``restricted_kubeconfig()``). The watch cache is off, so ``compact()`` (etcd compaction) makes any watch resumed
from an older resourceVersion end with 410 Gone, as on a busy cluster.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from .webhook import DgdWebhook

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
BUILD_SCRIPT = REPO_ROOT / "tests" / "envtest" / "build-kube-apiserver.sh"
CRD_DIR = HERE / "crds"

DEFAULT_CONTEXT = "do-nyc2-gtc-demo"
OTHER_CONTEXT = "other-cluster"
NAMESPACES = ("dynamo-workload", "dynamo-system", "monitoring")
LOOPBACK = "127.0.0.1"
TERM_GRACE_S = 10.0
TMP_PREFIX = "gtcdemo-envtest-"
# The Dynamo operator's service account as the platform chart names it (release dynamo-platform in dynamo-system:
# deploy/helm/charts/platform/components/operator/templates/serviceaccount.yaml, deployment.yaml).
OPERATOR_NAMESPACE = "dynamo-system"
OPERATOR_SERVICE_ACCOUNT = "dynamo-platform-dynamo-operator-controller-manager"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}"
# Role rules for restricted_kubeconfig(): everything inside the namespace, nothing cluster-scoped (no nodes, no
# RuntimeClasses, no CRDs).
NAMESPACE_ONLY_RULES = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
# Everything gtcdemo touches in the namespace, but pods only by name: listing or watching pods answers 403.
NO_POD_WATCH_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods/log", "pods/portforward", "configmaps", "secrets", "services",
                                      "endpoints", "events", "persistentvolumeclaims", "serviceaccounts"],
     "verbs": ["*"]},
    {"apiGroups": ["nvidia.com"], "resources": ["*"], "verbs": ["*"]},
]


class EnvTestError(RuntimeError):
    """The test API server could not be provided (binaries missing, a process died, a deadline passed)."""


def find_assets(build_script: Path = BUILD_SCRIPT) -> Path:
    """The directory holding executable ``kube-apiserver`` and ``etcd`` (last stdout line of the build script)."""
    proc = subprocess.run(["bash", str(build_script)], capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise EnvTestError(f"{build_script} failed (exit {proc.returncode}):\n{_tail_text(proc.stderr)}")
    assets = Path(lines[-1].strip())
    for name in ("kube-apiserver", "etcd"):
        if not os.access(assets / name, os.X_OK):
            raise EnvTestError(f"{build_script} printed {assets}, which has no executable {name}")
    return assets


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the kernel picks it; a small race remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _tail_text(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return _tail_text(path.read_text(errors="replace"), lines)
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def _remove_stale_tmp_dirs() -> None:
    """Temp dirs of earlier runs whose owner process is gone (killed with SIGKILL: no cleanup could run).

    Their etcd and kube-apiserver are gone too: they got SIGTERM when their parent died (PR_SET_PDEATHSIG)."""
    for path in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*"):
        try:
            pid = int((path / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:  # alive, someone else's
            pass


# -- certificates and keys ---------------------------------------------------------------------------------------
def _write_pki(cert_dir: Path) -> dict[str, Path]:
    """A CA, a serving certificate for 127.0.0.1/localhost signed by it, and the service-account RSA key pair.

    Python's ``cryptography`` when importable, else the openssl CLI. Returns the paths by role.
    """
    cert_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "ca": cert_dir / "ca.crt", "ca_key": cert_dir / "ca.key",
        "serving": cert_dir / "serving.crt", "serving_key": cert_dir / "serving.key",
        "sa_key": cert_dir / "sa.key", "sa_pub": cert_dir / "sa.pub",
    }
    try:
        import cryptography  # noqa: F401
    except ImportError:
        _write_pki_openssl(paths)
    else:
        _write_pki_cryptography(paths)
    for key in ("ca_key", "serving_key", "sa_key"):
        paths[key].chmod(0o600)
    return paths


def _write_pki_cryptography(paths: dict[str, Path]) -> None:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def new_key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def pem_key(key: rsa.RSAPrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())

    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(hours=1), now + dt.timedelta(days=2)

    ca_key = new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gtcdemo-envtest-ca")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    serving_key = new_key()
    serving_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name).public_key(serving_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("10.0.0.1")), x509.DNSName("kubernetes.default.svc"),
        ]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = new_key()

    paths["ca_key"].write_bytes(pem_key(ca_key))
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["serving_key"].write_bytes(pem_key(serving_key))
    paths["serving"].write_bytes(serving_cert.public_bytes(serialization.Encoding.PEM))
    paths["sa_key"].write_bytes(pem_key(sa_key))
    paths["sa_pub"].write_bytes(sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                 serialization.PublicFormat.SubjectPublicKeyInfo))


def _write_pki_openssl(paths: dict[str, Path]) -> None:
    def run(*args: str) -> None:
        proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise EnvTestError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=gtcdemo-envtest-ca",
        "-keyout", str(paths["ca_key"]), "-out", str(paths["ca"]))
    csr = paths["serving"].with_suffix(".csr")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
        "-keyout", str(paths["serving_key"]), "-out", str(csr))
    ext = paths["serving"].with_suffix(".ext")
    ext.write_text("basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n"
                   "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes.default.svc\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(paths["ca"]), "-CAkey", str(paths["ca_key"]),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(paths["serving"]))
    run("genrsa", "-out", str(paths["sa_key"]), "2048")
    run("rsa", "-in", str(paths["sa_key"]), "-pubout", "-out", str(paths["sa_pub"]))


# -- child processes ---------------------------------------------------------------------------------------------
def _child_setup(die_with_parent: bool) -> Callable[[], None] | None:
    """preexec_fn: SIGTERM the child when the starting thread dies (Linux only; best effort)."""
    if not die_with_parent:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def setup() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return setup


class _Proc:
    """One child process in its own process group, logging to a file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, cwd: Path) -> None:
        self.name = name
        self.log_path = log_path
        die_with_parent = threading.current_thread() is threading.main_thread()
        with open(log_path, "wb") as log:
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                start_new_session=True, preexec_fn=_child_setup(die_with_parent),
            )
        self.pgid = self.popen.pid  # start_new_session: the child leads its own session and group

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise EnvTestError(f"{self.name} exited early with code {code}; last lines of {self.log_path}:\n"
                               f"{_tail(self.log_path)}")

    def stop(self, grace_s: float = TERM_GRACE_S) -> None:
        """SIGTERM to the group, SIGKILL after ``grace_s``; always reaps the child."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pgid, signal.SIGKILL)
                self.popen.wait(timeout=30)
        # Neither etcd nor kube-apiserver forks: once the leader is reaped the group is empty, and its id may be
        # reused, so it is never signalled again.


# -- the environment ---------------------------------------------------------------------------------------------
class EnvTest:
    """etcd + kube-apiserver on 127.0.0.1 with the project's CRDs and namespaces. A context manager.

    Attributes after ``start()``: ``kubeconfig`` (Path), ``server`` (https URL), ``token``, ``ca_file`` (Path),
    ``tmp_dir`` (Path), ``assets`` (Path), ``startup_s`` (seconds from start() to CRDs and namespaces ready).
    """

    def __init__(self, *, crd_dir: Path | None = CRD_DIR, namespaces: Iterable[str] = NAMESPACES,
                 assets: Path | None = None, timeout_s: float = 60.0, extra_apiserver_args: Iterable[str] = (),
                 webhook: bool = True) -> None:
        self.crd_dir = crd_dir
        self.with_webhook = webhook
        self.webhook: DgdWebhook | None = None
        self.operator_token: str | None = None
        self._pki: dict[str, Path] = {}
        self.namespaces = tuple(namespaces)
        self.assets = assets
        self.timeout_s = timeout_s
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.tmp_dir: Path | None = None
        self.kubeconfig: Path | None = None
        self.server: str | None = None
        self.token: str | None = None
        self.ca_file: Path | None = None
        self.etcd_url: str | None = None
        self.startup_s: float | None = None
        self.timings: dict[str, float] = {}  # seconds per start-up phase
        self._procs: list[_Proc] = []
        self._lock = threading.Lock()
        self._atexit_registered = False

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def __enter__(self) -> EnvTest:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return any(p.popen.poll() is None for p in self._procs)

    def start(self) -> EnvTest:
        if self._procs:
            raise EnvTestError("this EnvTest is already started")
        t0 = time.monotonic()
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            mark = time.monotonic()

            def phase(name: str) -> None:
                nonlocal mark
                self.timings[name] = round(time.monotonic() - mark, 3)
                mark = time.monotonic()

            self.assets = self.assets or find_assets()
            phase("assets")
            _remove_stale_tmp_dirs()
            self.tmp_dir = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
            (self.tmp_dir / "owner.pid").write_text(f"{os.getpid()}\n")
            deadline = time.monotonic() + self.timeout_s
            self._start_etcd(deadline)
            phase("etcd")
            self._start_apiserver(deadline)
            phase("kube-apiserver")
            self._write_kubeconfig()
            self._bootstrap(deadline)
            phase("crds+namespaces")
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd, then the webhook; remove the temp dir. Idempotent, safe at any point of
        start()."""
        with self._lock:
            for proc in reversed(self._procs):  # apiserver first, etcd last
                proc.stop()
            self._procs.clear()
            if self.webhook is not None:
                self.webhook.stop()
                self.webhook = None
            if self.tmp_dir is not None:
                shutil.rmtree(self.tmp_dir, ignore_errors=True)
                self.tmp_dir = None
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False

    # -- processes ---------------------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> _Proc:
        assert self.tmp_dir is not None
        proc = _Proc(name, argv, self.tmp_dir / f"{name}.log", self.tmp_dir)
        self._procs.append(proc)
        return proc

    def _start_etcd(self, deadline: float) -> None:
        assert self.tmp_dir is not None and self.assets is not None
        client_port, peer_port = free_port(), free_port()
        client_url, peer_url = f"http://{LOOPBACK}:{client_port}", f"http://{LOOPBACK}:{peer_port}"
        data_dir = self.tmp_dir / "etcd-data"
        data_dir.mkdir(mode=0o700)
        etcd = self._spawn("etcd", [
            str(self.assets / "etcd"),
            "--name", "envtest",
            "--data-dir", str(data_dir),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"envtest={peer_url}", "--initial-cluster-state", "new",
            "--initial-cluster-token", f"envtest-{secrets.token_hex(4)}",
        ])
        self.etcd_url = client_url

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{client_url}/health", timeout=2) as resp:
                    return b'"true"' in resp.read()
            except (OSError, urllib.error.URLError):
                return False

        self._wait(etcd, healthy, deadline, "etcd /health")

    def _start_apiserver(self, deadline: float) -> None:
        assert self.tmp_dir is not None and self.assets is not None and self.etcd_url is not None
        cert_dir = self.tmp_dir / "certs"
        pki = self._pki = _write_pki(cert_dir)
        self.ca_file = pki["ca"]
        self.token = secrets.token_hex(24)
        self.operator_token = secrets.token_hex(24)
        token_file = self.tmp_dir / "tokens.csv"
        token_file.write_text(
            f'{self.token},envtest-admin,envtest-admin-uid,"system:masters"\n'
            # The operator as the API server would authenticate its service-account token (its rights come from a
            # ClusterRoleBinding made in _bootstrap, as the chart's ClusterRole gives them).
            f'{self.operator_token},{OPERATOR_USER},operator-uid,'
            f'"system:serviceaccounts,system:serviceaccounts:{OPERATOR_NAMESPACE},system:authenticated"\n')
        token_file.chmod(0o600)
        # Everything the API server would send into the cluster network (pod logs/exec/port-forward via kubelets,
        # pods/services/nodes proxy, webhooks by service) goes through an HTTP CONNECT proxy at a unix socket that
        # does not exist: it fails at once with "dial unix ...: no such file or directory" instead of resolving the
        # fake nodes' hostnames or dialling their 10.x / the pods' IPs.
        egress = self.tmp_dir / "egress-selector.yaml"
        egress.write_text(yaml.safe_dump({
            "apiVersion": "apiserver.k8s.io/v1beta1", "kind": "EgressSelectorConfiguration",
            "egressSelections": [{"name": "cluster", "connection": {
                "proxyProtocol": "HTTPConnect",
                "transport": {"uds": {"udsName": str(self.tmp_dir / "no-cluster-network.sock")}}}}],
        }))
        port = free_port()
        self.server = f"https://{LOOPBACK}:{port}"
        apiserver = self._spawn("kube-apiserver", [
            str(self.assets / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={LOOPBACK}", f"--advertise-address={LOOPBACK}", f"--secure-port={port}",
            f"--cert-dir={cert_dir}",
            f"--tls-cert-file={pki['serving']}", f"--tls-private-key-file={pki['serving_key']}",
            f"--client-ca-file={pki['ca']}",
            f"--token-auth-file={token_file}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki['sa_pub']}",
            f"--service-account-signing-key-file={pki['sa_key']}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
            # Watches go to etcd itself, so a watch resumed from a compacted resourceVersion gets 410 Gone (with the
            # cache, only one older than the cache's last 100 events would).
            "--watch-cache=false",
            f"--egress-selector-config-file={egress}",
            *self.extra_apiserver_args,
        ])
        ctx = ssl.create_default_context(cafile=str(self.ca_file))

        def ready() -> bool:
            req = urllib.request.Request(f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.token}"})
            try:
                with urllib.request.urlopen(req, timeout=2, context=ctx) as resp:
                    return resp.read().strip() == b"ok"
            except (OSError, urllib.error.URLError):  # refused while starting, 500 until the hooks are done
                return False

        self._wait(apiserver, ready, deadline, "kube-apiserver /readyz")

    def _wait(self, proc: _Proc, check: Callable[[], bool], deadline: float, what: str) -> None:
        while True:
            proc.check_alive()
            if check():
                return
            if time.monotonic() > deadline:
                raise EnvTestError(f"timed out after {self.timeout_s:.0f} s waiting for {what}; last lines of "
                                   f"{proc.log_path}:\n{_tail(proc.log_path)}")
            time.sleep(0.1)

    # -- kubeconfig and clients --------------------------------------------------------------------------------
    def _write_kubeconfig(self) -> None:
        assert self.tmp_dir is not None and self.ca_file is not None
        ca_data = base64.b64encode(self.ca_file.read_bytes()).decode()
        clusters, contexts, users = [], [], []
        for name in (DEFAULT_CONTEXT, OTHER_CONTEXT):
            clusters.append({"name": name, "cluster": {"server": self.server, "certificate-authority-data": ca_data}})
            users.append({"name": f"{name}-admin", "user": {"token": self.token}})
            contexts.append({"name": name, "context": {"cluster": name, "user": f"{name}-admin"}})
        config = {"apiVersion": "v1", "kind": "Config", "preferences": {}, "clusters": clusters, "users": users,
                  "contexts": contexts, "current-context": DEFAULT_CONTEXT}
        path = self.tmp_dir / "kubeconfig"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        self.kubeconfig = path

    def api_client(self, context: str = DEFAULT_CONTEXT) -> Any:
        """A new ``kubernetes.client.ApiClient`` for ``context`` of this server's kubeconfig (close it when done)."""
        from kubernetes import config

        if self.kubeconfig is None or not self.running:
            raise EnvTestError("EnvTest is not running")
        return config.new_client_from_config(config_file=str(self.kubeconfig), context=context)

    def operator_client(self) -> Any:
        """A new ``ApiClient`` authenticated as the Dynamo operator's service account (close it when done)."""
        from kubernetes import client

        if self.server is None or not self.running:
            raise EnvTestError("EnvTest is not running")
        cfg = client.Configuration()
        cfg.host, cfg.ssl_ca_cert = self.server, str(self.ca_file)
        cfg.api_key = {"authorization": f"Bearer {self.operator_token}"}
        return client.ApiClient(cfg)

    def restricted_kubeconfig(self, rules: list[dict], namespace: str = NAMESPACES[0], name: str = "restricted"
                              ) -> Path:
        """A kubeconfig (context do-nyc2-gtc-demo) for a new service account allowed only ``rules`` in ``namespace``.

        Its ServiceAccount, Role and RoleBinding live in ``namespace`` (the per-test cleanup removes them); its
        token comes from the TokenRequest API. Anything outside the rules answers 403, as on a cluster where your
        kubeconfig is bound to one namespace."""
        from kubernetes import client

        assert self.tmp_dir is not None and self.ca_file is not None
        account = f"gtcdemo-{name}-{secrets.token_hex(3)}"
        with self.api_client() as api:
            core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
            core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
            rbac.create_namespaced_role(namespace, {"metadata": {"name": account}, "rules": rules})
            rbac.create_namespaced_role_binding(namespace, {
                "metadata": {"name": account},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]})
            token = core.create_namespaced_service_account_token(
                account, namespace, {"spec": {"audiences": [], "expirationSeconds": 3600}}).status.token
        ca_data = base64.b64encode(self.ca_file.read_bytes()).decode()
        config = {"apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": DEFAULT_CONTEXT,
                  "clusters": [{"name": DEFAULT_CONTEXT,
                                "cluster": {"server": self.server, "certificate-authority-data": ca_data}}],
                  "users": [{"name": account, "user": {"token": token}}],
                  "contexts": [{"name": DEFAULT_CONTEXT,
                                "context": {"cluster": DEFAULT_CONTEXT, "user": account, "namespace": namespace}}]}
        path = self.tmp_dir / f"kubeconfig-{account}"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def compact(self) -> int:
        """Compact etcd at its newest revision, after two writes of its own (so the revision has moved past every
        resourceVersion a client holds). A watch (re)started from any earlier resourceVersion then ends with
        410 Gone. Returns the compacted revision. Uses etcd's v3 HTTP gateway on loopback."""
        assert self.etcd_url is not None

        def call(path: str, body: dict) -> dict:
            req = urllib.request.Request(f"{self.etcd_url}{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())

        key = base64.b64encode(b"/gtcdemo-envtest/compaction-marker").decode()
        for i in range(2):
            revision = int(call("/v3/kv/put", {"key": key, "value": base64.b64encode(str(i).encode()).decode()})
                           ["header"]["revision"])
        call("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    # -- CRDs and namespaces -----------------------------------------------------------------------------------
    def _bootstrap(self, deadline: float) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        with self.api_client() as api:
            core = client.CoreV1Api(api)
            for ns in self.namespaces:
                try:
                    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
                except ApiException as exc:
                    if exc.status != 409:
                        raise
            crds = self.install_crds(api, deadline)
            self._wait_served(api, crds, deadline)
            client.RbacAuthorizationV1Api(api).create_cluster_role_binding({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "gtcdemo-envtest-dynamo-operator"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_SERVICE_ACCOUNT,
                              "namespace": OPERATOR_NAMESPACE}],
            })
            if self.with_webhook and any(c["spec"]["names"]["plural"] == "dynamographdeployments" for c in crds):
                self._start_webhook(api, deadline)

    def _start_webhook(self, api: Any, deadline: float) -> None:
        """Serve the DGD webhook (TLS with the API server's serving certificate, issued by our CA for 127.0.0.1),
        register it, and wait until the API server enforces it (a dry-run CREATE it refuses)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        assert self.ca_file is not None
        self.webhook = DgdWebhook(self._pki["serving"], self._pki["serving_key"]).start()
        client.AdmissionregistrationV1Api(api).create_validating_webhook_configuration(
            self.webhook.configuration(self.ca_file.read_bytes()))
        probe = {"apiVersion": "nvidia.com/v1alpha1", "kind": "DynamoGraphDeployment",
                 "metadata": {"name": "envtest-webhook-probe"}, "spec": {"services": {}}}
        custom = client.CustomObjectsApi(api)
        while True:
            try:
                custom.create_namespaced_custom_object("nvidia.com", "v1alpha1", self.namespaces[0],
                                                       "dynamographdeployments", probe, dry_run="All")
            except ApiException as exc:
                if exc.status == 403 and "at least one service" in (exc.body or ""):
                    return
                raise
            if time.monotonic() > deadline:
                raise EnvTestError("the DGD webhook was registered but the API server never called it")
            time.sleep(0.05)

    def install_crds(self, api: Any, deadline: float | None = None) -> list[dict]:
        """Create every CRD in ``crd_dir`` and wait until each is Established. Returns the CRD manifests."""
        from kubernetes import client

        if self.crd_dir is None:
            return []
        deadline = deadline or time.monotonic() + self.timeout_s
        ext = client.ApiextensionsV1Api(api)
        crds: list[dict] = []
        for path in sorted(self.crd_dir.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    ext.create_custom_resource_definition(doc)
                    crds.append(doc)
        for crd in crds:
            name = crd["metadata"]["name"]
            while True:
                obj = ext.read_custom_resource_definition(name)
                conds = {c.type: c for c in (obj.status.conditions or [])} if obj.status else {}
                if conds.get("Established") is not None and conds["Established"].status == "True":
                    break
                bad = conds.get("NamesAccepted")
                if bad is not None and bad.status == "False":
                    raise EnvTestError(f"CRD {name}: names not accepted: {bad.message}")
                if time.monotonic() > deadline:
                    raise EnvTestError(f"CRD {name} not Established in time: {conds}")
                time.sleep(0.05)
        return crds

    def _wait_served(self, api: Any, crds: list[dict], deadline: float) -> None:
        """Established can precede the REST endpoint by a moment: list each kind until it answers 200."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        custom = client.CustomObjectsApi(api)
        for crd in crds:
            group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
            for version in (v["name"] for v in crd["spec"]["versions"] if v.get("served")):
                while True:
                    try:
                        custom.list_cluster_custom_object(group, version, plural)
                        break
                    except ApiException as exc:
                        if exc.status != 404 or time.monotonic() > deadline:
                            raise
                    time.sleep(0.05)

    def __repr__(self) -> str:
        state = f"running at {self.server}" if self.running else "stopped"
        return f"<EnvTest {state}>"


# -- per-test cleanup ---------------------------------------------------------------------------------------------
# (API path prefix, plural, namespaced). Namespaces themselves are never deleted: without the namespace controller
# a deleted namespace stays Terminating forever.
CLEANUP_KINDS: tuple[tuple[str, str, bool], ...] = (
    ("apis/nvidia.com/v1alpha1", "dynamographdeployments", True),
    ("apis/nvidia.com/v1alpha1", "dynamographdeploymentscalingadapters", True),
    ("api/v1", "pods", True),
    ("api/v1", "services", True),
    ("api/v1", "endpoints", True),
    ("api/v1", "configmaps", True),
    ("api/v1", "secrets", True),
    ("api/v1", "persistentvolumeclaims", True),
    ("api/v1", "events", True),
    ("api/v1", "serviceaccounts", True),
    ("apis/apps/v1", "deployments", True),
    ("apis/apps/v1", "replicasets", True),
    ("apis/apps/v1", "statefulsets", True),
    ("apis/apps/v1", "daemonsets", True),
    ("apis/batch/v1", "jobs", True),
    ("apis/autoscaling/v1", "horizontalpodautoscalers", True),
    ("apis/networking.k8s.io/v1", "ingresses", True),
    ("apis/rbac.authorization.k8s.io/v1", "roles", True),
    ("apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    ("api/v1", "nodes", False),
    ("apis/scheduling.run.ai/v2", "queues", False),
    ("api/v1", "persistentvolumes", False),
    ("apis/node.k8s.io/v1", "runtimeclasses", False),
)

# One object: (API path prefix, plural, namespace or "", name, uid).
ObjectKey = tuple[str, str, str, str, str]


def _rest(api: Any, method: str, path: str, body: Any = None, query: list | None = None,
          content_type: str = "application/json") -> Any:
    """A raw call through the client's ApiClient (auth and TLS from its configuration); JSON in, JSON out."""
    return api.call_api(path, method, query_params=query or [], body=body,
                        header_params={"Accept": "application/json", "Content-Type": content_type},
                        response_type="object", auth_settings=["BearerToken"], _return_http_data_only=True)


def snapshot_objects(api: Any, namespaces: Iterable[str] = NAMESPACES,
                     kinds: Iterable[tuple[str, str, bool]] = CLEANUP_KINDS) -> set[ObjectKey]:
    """Every object of ``kinds`` in ``namespaces`` (plus the cluster-scoped ones) that exists now."""
    from kubernetes.client.exceptions import ApiException

    wanted = set(namespaces)
    out: set[ObjectKey] = set()
    for prefix, plural, namespaced in kinds:
        try:
            items = _rest(api, "GET", f"/{prefix}/{plural}")["items"]
        except ApiException as exc:
            if exc.status == 404:  # kind not served (CRD absent)
                continue
            raise
        for obj in items:
            meta = obj["metadata"]
            ns = meta.get("namespace", "")
            if namespaced and ns not in wanted:
                continue
            out.add((prefix, plural, ns, meta["name"], meta["uid"]))
    return out


def _object_path(key: ObjectKey) -> str:
    prefix, plural, ns, name, _uid = key
    return f"/{prefix}/namespaces/{ns}/{plural}/{name}" if ns else f"/{prefix}/{plural}/{name}"


def delete_new_objects(api: Any, before: set[ObjectKey], namespaces: Iterable[str] = NAMESPACES,
                       kinds: Iterable[tuple[str, str, bool]] = CLEANUP_KINDS, timeout_s: float = 30.0
                       ) -> list[ObjectKey]:
    """Delete every object not in ``before`` and wait until it is gone. Returns what was deleted.

    Pods go with grace period 0 (no kubelet would ever confirm a graceful stop); finalizers that only a controller
    would remove (kubernetes.io/pvc-protection, pv-protection, foreground deletion ...) are stripped.
    """
    from kubernetes.client.exceptions import ApiException

    kinds = tuple(kinds)
    namespaces = tuple(namespaces)
    created = sorted(snapshot_objects(api, namespaces, kinds) - before)
    deadline = time.monotonic() + timeout_s
    pending = list(created)
    first = True
    while pending:
        for key in pending:
            path = _object_path(key)
            try:
                if not first:  # still there: strip the finalizers nothing here will ever remove
                    _rest(api, "PATCH", path, {"metadata": {"finalizers": None}},
                          content_type="application/merge-patch+json")
                query = [("gracePeriodSeconds", 0)] if key[1] == "pods" else []
                _rest(api, "DELETE", path, {"propagationPolicy": "Background", "gracePeriodSeconds": 0}
                      if key[1] == "pods" else {"propagationPolicy": "Background"}, query=query)
            except ApiException as exc:
                if exc.status not in (404, 409):
                    raise
        first = False
        remaining = snapshot_objects(api, namespaces, kinds)
        pending = [key for key in pending if key in remaining]
        if pending and time.monotonic() > deadline:
            raise EnvTestError(f"cleanup: still present after {timeout_s:.0f} s: {pending}")
        if pending:
            time.sleep(0.05)
    return created
