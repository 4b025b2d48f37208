"""``openline bench``: runs the benchmarks of :mod:`openline.bench`, imported on demand."""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .options import EXIT_OK, UsageError

if TYPE_CHECKING:
    from ..bench.runner import Options as BenchOptions

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Run ``openline bench`` with the parsed ``args``; return the exit status.

    Raises:
        UsageError: A flag is unusable (printed as one line, exit status 2).
    """
    if args.list:
        return _list_bench()
    if args.report:
        return _redraw_bench(args)
    if args.engines is not None:
        from ..bench.engines import run as engines

        engines(args.engines)
        return EXIT_OK
    try:
        import uvloop  # noqa: F401
    except ImportError:
        raise UsageError("openline bench needs uvloop: pip install 'openline[bench]'") from None
    if args.breakdown:
        from ..bench.breakdown import run as breakdown

        breakdown(args.idle_connections or 1000, compression="deflate" if args.deflate else None)
        return EXIT_OK
    if args.cluster:
        return _run_cluster_bench(args)
    if args.hub:
        return _run_hub_bench(args)
    if args.soak:
        return _run_soak_bench(args)
    from ..bench.runner import Options, run

    options = Options(
        scenarios=args.scenarios,
        servers=args.servers,
        repetitions=args.repetitions,
        window=args.window,
        warmup=args.warmup,
        deadline=args.deadline / 1000,
        quick=args.quick,
        output=args.output,
        server_cpu=args.server_cpu,
        client_cpu=args.client_cpu,
        idle_connections=args.idle_connections,
        chart=not args.no_chart,
        profile=args.profile,
    )
    try:
        if args.check is not None:
            return _check_bench(options, pathlib.Path(args.check), args.fail_on_change)
        run(options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def _check_bench(options: BenchOptions, against: pathlib.Path, fail_on_change: bool) -> int:
    from ..bench.check import check

    if not against.is_file():
        raise UsageError(f"--check: no results at {against}")
    return check(options, against, fail_on_change=fail_on_change)


def _run_cluster_bench(args: argparse.Namespace) -> int:
    from ..bench.cluster import Options, run

    options = Options(
        subscribers=args.subscribers,
        rate=args.rate or 100.0,
        repetitions=args.repetitions,
        window=args.window,
        warmup=args.warmup,
        deadline=args.deadline / 1000,
        quick=args.quick,
        output=args.output,
        server_cpu=args.server_cpu,
        client_cpu=args.client_cpu,
    )
    return _run(run, options)


def _run_hub_bench(args: argparse.Namespace) -> int:
    from ..bench.hubpeers import Options, run

    options = Options(
        subscribers=args.subscribers,
        rate=args.rate,
        repetitions=args.repetitions,
        window=args.window,
        warmup=args.warmup,
        deadline=args.deadline / 1000,
        quick=args.quick,
        output=args.output,
        server_cpu=args.server_cpu,
        client_cpu=args.client_cpu,
        configurations=args.hub_configurations,
    )
    return _run(run, options)


def _run_soak_bench(args: argparse.Namespace) -> int:
    from ..bench.soak import Options, run

    options = Options(
        connections=args.idle_connections or 10_000,
        minutes=args.minutes,
        output=args.output or "bench/results/soak",
        server_cpu=args.server_cpu,
        client_cpu=args.client_cpu,
    )
    return _run(run, options)


def _list_bench() -> int:
    from ..bench.scenarios import SCENARIOS
    from ..bench.servers import SERVERS, unavailable

    print("scenarios:")
    for name, scenario in SCENARIOS.items():
        print(f"  {name:22} {scenario.title}")
    print("servers:")
    for name, spec in SERVERS.items():
        reason = unavailable(name)
        print(f"  {name:22} {spec.label}" + (f"  (unavailable: {reason})" if reason else ""))
    return EXIT_OK


def _redraw_bench(args: argparse.Namespace) -> int:
    import json

    from ..bench import report

    source = pathlib.Path(args.report)
    try:
        document = json.loads(source.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {args.report!r}: {exc}") from None
    output = pathlib.Path(args.output) if args.output else source.parent
    if isinstance(document, dict) and document.get("kind") == "cluster":
        from ..bench import cluster_report

        for path in cluster_report.write(document, output):
            print(f"wrote {path}", file=sys.stderr)
        return EXIT_OK
    if isinstance(document, dict) and document.get("kind") == "hub":
        from ..bench import hub_report

        for path in hub_report.write(document, output):
            print(f"wrote {path}", file=sys.stderr)
        return EXIT_OK
    for path in report.write(document, output, chart=not args.no_chart):
        print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


def _run(run: Callable[[Any], object], options: object) -> int:
    """Run a benchmark with its options; a value it refuses is a usage error (exit 2)."""
    try:
        run(options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK
