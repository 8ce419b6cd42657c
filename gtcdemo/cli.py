"""The `gtcdemo` command: the same package API the notebooks call, for terminals, Makefiles and CI."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable

from . import bundle as bundle_mod
from . import project
from .errors import GtcdemoError
from .target import Target


def _positive(flag: str, example: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be a number of seconds, got {text!r} (e.g. {flag} {example})") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text} (e.g. {flag} {example})")
        return value
    return parse


def _at_least_one(flag: str, example: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r} (e.g. {flag} {example})") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, got {text} (e.g. {flag} {example})")
        return value
    return parse


NOT_RUNNING_RC = 3  # `status` / `logs` of a deployment that is not running (as LSB's "program is not running")


def _progress(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


def _not_running(target: Target) -> GtcdemoError | None:
    """The target's "not running" error (what happened, and how to start it); None when it runs."""
    return None if target.is_running() else target.not_running()


def _context_limit(target: Target) -> object:
    from .engine_config import context_limit

    bundle = target.bundle
    return context_limit(bundle.engine_configs, bundle.served_model_name)


def _target(args: argparse.Namespace) -> Target:
    from .targets import get_target

    return get_target(args.target, args.env, context=getattr(args, "context", None))


def cmd_validate(args: argparse.Namespace) -> int:
    b = bundle_mod.load(args.env)
    print(f"{args.env}: engine configs and manifests are valid")
    print(repr(b))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    if args.write:
        path = bundle_mod.write_configmap(args.env)
        print(f"wrote {path.relative_to(project.ROOT)}")
        bundle_mod.load(args.env)  # validate what was written
        return 0
    print(bundle_mod.load(args.env, check_drift=False).to_yaml())
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    target = _target(args)
    started_here = target.stops_failed_up and not target.is_running()
    try:
        print(repr(target.apply()))
        print(repr(target.wait(timeout_s=args.timeout, progress=_progress)))
    except BaseException:
        if started_here:  # leave nothing half-started behind (a graph that was already running stays)
            print("up failed or was interrupted: stopping what was started", file=sys.stderr)
            target.teardown()
        raise
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    print(repr(_target(args).wait(timeout_s=args.timeout, progress=_progress)))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    target = _target(args)
    print(repr(target.demo_status() if args.all else target.status()))
    if (stopped := _not_running(target)) is not None:
        print(stopped, file=sys.stderr)
        return NOT_RUNNING_RC
    return 0


def cmd_demo_status(args: argparse.Namespace) -> int:
    print(repr(_target(args).demo_status()))
    return 0


def cmd_preflight(args: argparse.Namespace) -> int:
    report = _target(args).preflight()
    print(repr(report))
    return 0 if report.ok else 1


def cmd_logs(args: argparse.Namespace) -> int:
    from .errors import DeploymentError

    target = _target(args)
    services = target.bundle.services
    if args.service is not None and args.service not in services:
        raise DeploymentError(f"no service {args.service!r} in {target.bundle.name}", where="--service",
                              fix=f"use one of {', '.join(services)}")
    logs = target.logs(args.service, tail=args.tail)
    for name, text in logs.items():
        print(f"==> {name} <==\n{text}\n")
    if (stopped := _not_running(target)) is not None:  # the logs above, if any, are from its last run
        print(f"{stopped}\n({'the logs above are from its last run' if logs else 'no logs'})", file=sys.stderr)
        return NOT_RUNNING_RC
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    print(repr(_target(args).teardown()))
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    print(repr(_target(args).scale(args.service, args.replicas)))
    return 0


def cmd_test_inference(args: argparse.Namespace) -> int:
    from .inference import chat_completion, refuse_beyond_context

    target = _target(args)
    model, limit = target.bundle.served_model_name, _context_limit(target)
    refuse_beyond_context(model, args.prompt, args.max_tokens, limit, where="--prompt / --max-tokens")
    with target.frontend() as url:
        body = chat_completion(url, model, args.prompt, max_tokens=args.max_tokens, context_limit=limit)
    print(json.dumps(body, indent=2))
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from . import load

    if args.requests is None and args.duration is None:
        args.requests = 100
    target = _target(args)
    open_loop = args.rate is not None
    closed = 8 if args.concurrency is None else args.concurrency
    spec = load.LoadSpec(  # open loop: capped only by an explicit --concurrency (as AIPerf's --concurrency)
        model=target.bundle.served_model_name, concurrency=None if open_loop else closed,
        request_rate=args.rate, max_concurrency=args.concurrency if open_loop else None,
        connection_reuse=args.connection_reuse,
        num_requests=args.requests, duration_s=args.duration, warmup_requests=args.warmup,
        input_tokens_mean=args.input_tokens, input_tokens_std=args.input_tokens_std,
        output_tokens=args.output_tokens, shared_prefix_fraction=args.shared_prefix,
        slo_ttft_ms=args.slo_ttft_ms, slo_itl_ms=args.slo_itl_ms, seed=args.seed)
    load.check_context(spec, _context_limit(target), where="--input-tokens / --output-tokens")
    with target.frontend() as url:
        if args.sweep:
            levels = [float(x) if args.rate else int(x) for x in args.sweep.split(",")]
            results = load.sweep(url, spec, levels, save_to=args.out)
            print(load.sweep_table(results).round(2).to_string(index=False))
            for result in results:  # a level that fell short, or waited for the cap, says so under the table
                if result.summary()["under_delivered"] or result.summary()["cap_waits"]:
                    print(f"{result.spec.label()}: {result.delivery_note()}")
        else:
            print(repr(load.run(url, spec, save_to=args.out)))
    if args.out:
        print(f"records and summary saved under {args.out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .workbook import run_demo

    run_demo(env=args.env, target=args.target, out_dir=args.out, timeout_s=args.timeout)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gtcdemo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--env", default="dev", help="config set: engine-configs/<env>/ and manifests/<env>/")
        p.add_argument("--target", default="local", choices=project.TARGETS, help="where the graph runs")
        p.add_argument("--context", help="deliberately use this kube context instead of the env's (cluster)")
        p.set_defaults(func=func)
        return p

    add("validate", cmd_validate, "validate the env's engine configs and manifests")
    add("render", cmd_render, "print the bundle; --write regenerates the ConfigMap manifest").add_argument(
        "--write", action="store_true", help="write manifests/<env>/10-engine-configmap.yaml")
    for name, func, text in (("up", cmd_up, "apply the bundle and wait until a completion succeeds"),
                             ("wait", cmd_wait, "wait until the deployment is ready")):
        add(name, func, text).add_argument("--timeout", type=_positive("--timeout", "600"), default=600.0,
                                           help="seconds (default 600)")
    add("status", cmd_status, "processes / pods of the deployment (exit status 3: not running)").add_argument(
        "--all", action="store_true", help="also nodes, DGD, DGDSAs and PVCs (same as demo-status)")
    add("demo-status", cmd_demo_status, "nodes, DGD, DGDSAs, pods and PVCs in one view")
    add("preflight", cmd_preflight, "check everything the deployment needs, before applying anything")
    logs = add("logs", cmd_logs, "recent log lines per process / pod (exit status 3: not running)")
    logs.add_argument("--service", help="only this service (e.g. TrtllmDecodeWorker)")
    logs.add_argument("--tail", type=_at_least_one("--tail", "20"), default=20)
    add("down", cmd_down, "stop and delete the deployment (the model PVC stays)")
    scale = add("scale", cmd_scale, "set a service's replicas")
    scale.add_argument("service")
    scale.add_argument("replicas", type=int)
    ti = add("test-inference", cmd_test_inference, "post one chat completion and print the validated JSON")
    ti.add_argument("--prompt", default="Say hello to the GTC audience.")
    ti.add_argument("--max-tokens", type=_at_least_one("--max-tokens", "32"), default=32)
    lg = add("load", cmd_load, "offer load (closed loop, or open loop with --rate) and print AIPerf's statistics")
    lg.add_argument("--concurrency", type=int,
                    help="closed loop: requests in flight (default 8); with --rate: a cap on requests in flight "
                         "(default: none; arrivals that find it reached wait, and the result says how long)")
    lg.add_argument("--rate", type=float, help="open loop: Poisson arrivals per second")
    lg.add_argument("--requests", type=int, help="measured requests (default 100 unless --duration)")
    lg.add_argument("--duration", type=float, help="seconds; stops at whichever of --requests/--duration first")
    lg.add_argument("--warmup", type=int, default=4, help="requests excluded from the results")
    lg.add_argument("--input-tokens", type=int, default=200)
    lg.add_argument("--input-tokens-std", type=float, default=0.0)
    lg.add_argument("--output-tokens", type=int, default=32)
    lg.add_argument("--shared-prefix", type=float, default=0.0, help="fraction of each prompt shared by all")
    lg.add_argument("--slo-ttft-ms", type=float)
    lg.add_argument("--slo-itl-ms", type=float)
    lg.add_argument("--seed", type=int, default=0)
    lg.add_argument("--connection-reuse", choices=("pooled", "never"), default="pooled",
                    help="AIPerf's policy: pooled = kept-alive connections (default), never = one per request")
    lg.add_argument("--sweep", help="comma-separated levels (concurrencies, or rates with --rate)")
    lg.add_argument("--out", help="folder for records.csv and summary.json")
    demo = add("demo", cmd_demo, "up, run the step notebooks headless into --out, down")
    demo.add_argument("--out", default="out", help="folder for executed notebooks and figures")
    demo.add_argument("--timeout", type=_positive("--timeout", "600"), default=600.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM behaves like Ctrl-C, so every entry point's cleanup runs.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        return args.func(args)
    except GtcdemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
