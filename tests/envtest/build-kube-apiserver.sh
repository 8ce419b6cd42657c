#!/usr/bin/env bash
# Provide a real kube-apiserver + etcd for tests, the way controller-runtime's envtest does.
#
# Prints ONE line on stdout: a directory holding executable `kube-apiserver` and `etcd`
# (the envtest convention, usable as KUBEBUILDER_ASSETS). All progress goes to stderr.
#
# Order of preference:
#   1. $KUBEBUILDER_ASSETS, if it already holds both binaries (a contributor with envtest binaries
#      never builds anything);
#   2. the cache dir ${GTCDEMO_CACHE:-$HOME/.cache/gtcdemo}/envtest, if already populated (the
#      common path: no locking, no dpkg queries, returns in milliseconds);
#   3. otherwise build kube-apiserver v1.20.2 from Debian bookworm's `kubernetes` SOURCE package
#      (once, 3.5-6.5 minutes on 2 cores) and link Debian's etcd next to it.
#
# Why build from source: there is no prebuilt kube-apiserver in any registry this project may use
# (Debian, PyPI, npm), and kind/k3d/minikube need Docker. Details: kube-apiserver.md in the shared
# reference notes. The binary lives outside the repository and must never be committed.
set -euo pipefail

readonly SOURCE_PACKAGE=kubernetes
# etcd-server: the real etcd. golang-go jq rsync make: kubernetes' build dependencies (the build
# runs code generators that need jq and rsync). dpkg-dev: dpkg-source, to unpack the source package.
# The two -dev packages: newer reflect2/json-iterator sources to replace the vendored ones (see below).
readonly PACKAGES=(
  etcd-server golang-go jq rsync make dpkg-dev
  golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
)
readonly GOCODE=/usr/share/gocode/src
work=""       # temp build dir; global because the EXIT trap removes it
build_pid=""  # pid (= process group) of a running make; global for the same reason

log() { printf '[build-kube-apiserver] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# True if $1 holds an executable kube-apiserver and an executable etcd (-x follows symlinks, so a
# dangling etcd link does not count).
has_assets() { [[ -x "$1/kube-apiserver" && -x "$1/etcd" ]]; }

# --- 1. envtest convention -------------------------------------------------------------------
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  if has_assets "$KUBEBUILDER_ASSETS"; then
    printf '%s\n' "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks an executable kube-apiserver or etcd; ignoring it"
fi

# --- 2. fast path: already cached ------------------------------------------------------------
cache_dir="${GTCDEMO_CACHE:-$HOME/.cache/gtcdemo}/envtest"
if has_assets "$cache_dir"; then
  printf '%s\n' "$cache_dir"
  exit 0
fi

# --- 3. slow path ----------------------------------------------------------------------------
mkdir -p "$cache_dir"
cache_dir="$(cd "$cache_dir" && pwd -P)"  # absolute, so later cd's cannot break it

# Serialise builders: a second concurrent run waits for the first and then reuses its result
# instead of building (and downloading) everything a second time.
exec 9>"$cache_dir/.lock"
if ! flock -n 9; then
  log "another run is building into $cache_dir; waiting for it to finish"
  flock 9
fi
if has_assets "$cache_dir"; then  # the run we waited for did the work
  printf '%s\n' "$cache_dir"
  exit 0
fi
# Holding the lock, no other build is running: any build.* dir is the leftover of a run killed
# too hard for its trap to fire (SIGKILL, power loss). Reclaim that 1.5 GB.
rm -rf "$cache_dir"/build.* "$cache_dir/kube-apiserver.tmp"

# Run a command as root: directly when we are root, else through sudo when there is one.
as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root to run: $* (install these Debian packages first: ${PACKAGES[*]})"
  fi
}

# Install whichever of the given Debian packages are missing; `apt-get update` only if needed,
# and at most once per run.
apt_updated=false
ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    # shellcheck disable=SC2016  # ${db:Status-Status} is a dpkg-query format, not a shell expansion
    if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)" != installed ]]; then
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  log "installing Debian packages: ${missing[*]}"
  if [[ $apt_updated == false ]]; then
    as_root apt-get update >&2
    apt_updated=true
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2
}

# Point the cache's `etcd` at the system etcd (Debian's etcd-server 3.4).
link_etcd() {
  ensure_packages etcd-server
  local etcd_bin
  etcd_bin="$(command -v etcd || true)"
  [[ -n "$etcd_bin" ]] || etcd_bin=/usr/bin/etcd
  [[ -x "$etcd_bin" ]] || die "etcd-server is installed but no etcd binary was found"
  ln -sfn "$etcd_bin" "$cache_dir/etcd"
}

# EXIT trap of the slow path: stop an unfinished build, then delete the temp build dir.
cleanup() {
  if [[ -n "$build_pid" ]]; then
    log "stopping the unfinished build"
    kill -TERM -- "-$build_pid" 2>/dev/null || true
    wait "$build_pid" 2>/dev/null || true
  fi
  if [[ -n "$work" ]]; then
    log "removing $work"
    chmod -R u+w "$work" 2>/dev/null || true
    rm -rf "$work"
  fi
}

build_kube_apiserver() {
  local start=$SECONDS
  ensure_packages "${PACKAGES[@]}"

  # Everything bulky (10 MB apt lists, 34 MB source tarball, 280 MB tree, 1.2 GB Go build cache,
  # which kubernetes' build keeps under _output/) lives here and is deleted on any exit.
  work="$(mktemp -d "$cache_dir/build.XXXXXX")"
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  # A PRIVATE apt configuration that adds `deb-src` entries mirroring the machine's own `deb`
  # entries. Deriving them from /etc/apt keeps every host name out of this script (the machine's
  # mirror/snapshot choice is respected), and the private state dir leaves the system's package
  # lists untouched. Only `deb-src` is needed here (Sources index, ~10 MB), not `deb`.
  local apt_root="$work/apt" f
  mkdir -p "$apt_root/sources.list.d" "$apt_root/lists/partial" "$apt_root/cache/archives/partial"
  for f in /etc/apt/sources.list.d/*.sources; do  # deb822 format (Debian 12 default)
    [[ -f "$f" ]] || continue
    sed -E 's/^Types:.*/Types: deb-src/' "$f" >"$apt_root/sources.list.d/$(basename "$f")"
  done
  local n=0
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do  # one-line format
    [[ -f "$f" ]] || continue
    n=$((n + 1))
    sed -nE 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" >"$apt_root/sources.list.d/oneline-$n.list"
  done
  local apt_opts=(
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$apt_root/sources.list.d"
    -o "Dir::State::Lists=$apt_root/lists"
    -o "Dir::Cache=$apt_root/cache"
    # Our temp dirs are 0700, so apt's unprivileged `_apt` sandbox user could not write into
    # them; download as ourselves instead (otherwise apt warns and does exactly that anyway).
    -o "APT::Sandbox::User=$(id -un)"
  )
  log "fetching the index of Debian source packages (private apt state under $apt_root)"
  # A third-party repository without deb-src makes `apt-get update` fail as a whole even though
  # Debian's own Sources were fetched; the `apt-get source` below is the real test.
  apt-get "${apt_opts[@]}" update >&2 ||
    log "warning: apt-get update reported errors (a repository without deb-src?); continuing"

  log "downloading Debian source package '$SOURCE_PACKAGE'"
  mkdir -p "$work/dl"
  (cd "$work/dl" && apt-get "${apt_opts[@]}" source --download-only "$SOURCE_PACKAGE" >&2)
  local dsc
  dsc="$(find "$work/dl" -maxdepth 1 -name "${SOURCE_PACKAGE}_*.dsc" -print -quit)"
  [[ -n "$dsc" ]] || die "apt-get source did not produce a .dsc file"
  log "unpacking $(basename "$dsc")"
  local src="$work/kubernetes"
  # Applies Debian's own patches too (kubectl printing fixes and a CVE fix; harmless here).
  # dpkg-source warns "cannot verify inline signature" unless debian-keyring is installed; that is
  # expected: apt already checked the files against the signed Sources index it downloaded.
  dpkg-source -x "$dsc" "$src" >&2
  rm -rf "$work/dl"  # tarballs no longer needed
  [[ -d "$src/cmd/kube-apiserver" ]] || die "$dsc does not contain cmd/kube-apiserver"

  # REQUIRED FIX: kubernetes 1.20 vendors modern-go/reflect2 v1.0.1, which relies on Go runtime
  # internals that changed in Go 1.18 ("fatal error: fault ... mapiterinit" on the first write
  # of a custom resource). Debian's reflect2 1.0.2 and json-iterator 1.1.12 (the pair that fixes
  # it upstream) drop in as replacements; the build is in GOPATH mode, so vendor/modules.txt
  # versions are not checked.
  local p
  for p in github.com/modern-go/reflect2 github.com/json-iterator/go; do
    [[ -d "$GOCODE/$p" ]] || die "$GOCODE/$p missing (Debian -dev package not installed?)"
    log "replacing vendor/$p with $GOCODE/$p"
    rm -rf "${src:?}/vendor/$p"
    cp -rL "$GOCODE/$p" "$src/vendor/$p"
    find "$src/vendor/$p" -name '*_test.go' -delete
  done

  # Build the way debian/rules does: GOPATH-mode import path k8s.io/kubernetes via a link to the
  # tree, static binary (CGO_ENABLED=0). Prefer Debian's Go (1.19) over any other `go` on PATH:
  # it is the version this recipe was verified with. GOFLAGS/GOBIN from the caller's environment
  # would break the GOPATH-mode build (e.g. -mod=... is rejected without modules), so drop them.
  mkdir -p "$src/.go/src/k8s.io"
  ln -s ../../.. "$src/.go/src/k8s.io/kubernetes"
  log "building kube-apiserver (make WHAT=cmd/kube-apiserver; 3.5-6.5 minutes on 2 cores)"
  # Run make in the background in its own process group (set -m) and `wait` for it: bash defers
  # traps while a foreground child runs, so a SIGTERM would otherwise only clean up after the
  # whole build finished; this way the EXIT trap can stop the build (by its group) at once.
  set -m
  (
    cd "$src"
    exec env -u GOFLAGS -u GOBIN -u GOOS -u GOARCH \
      PATH="/usr/lib/go/bin:$PATH" GOPATH="$src/.go" CGO_ENABLED=0 \
      make WHAT=cmd/kube-apiserver >&2
  ) &
  build_pid=$!
  set +m
  wait "$build_pid"
  build_pid=""
  local bin="$src/_output/bin/kube-apiserver"
  [[ -x "$bin" ]] || die "build finished but $bin is missing"

  # Copy then rename, so a concurrent fast-path reader never sees a half-written binary, and
  # publish it only once it has shown it runs.
  local tmp_bin="$cache_dir/kube-apiserver.tmp" version
  cp -L "$bin" "$tmp_bin"
  chmod 0755 "$tmp_bin"
  version="$("$tmp_bin" --version)"
  mv -f "$tmp_bin" "$cache_dir/kube-apiserver"
  log "built $version in $((SECONDS - start)) s"
}

if [[ ! -x "$cache_dir/kube-apiserver" ]]; then
  build_kube_apiserver
fi
if [[ ! -x "$cache_dir/etcd" ]]; then
  link_etcd
fi
has_assets "$cache_dir" || die "$cache_dir still lacks kube-apiserver or etcd"
log "ready: $cache_dir"
printf '%s\n' "$cache_dir"
