"""The fleet commands of `optimize`: bundles, scheduled rebuild jobs, and a node's verify and
monitor (thin over optimize.api, like optimize.cli)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from optimize.cli_options import artifacts_option, debug_option, handle_errors
from optimize.console import console, out
from optimize.errors import (
    EXIT_OK,
)


@click.command()
@click.argument("run_id", default="latest", metavar="[RUN]")
@click.option("--device-class", "device_class", required=True, metavar="NAME", help="the target to bundle")
@click.option("--recipe", metavar="NAME|PATH", help="the recipe whose latest run is meant")
@artifacts_option("the artifacts folder the runs were written to")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="where to write the bundle (default: bundles/ in the artifacts folder)",
)
@debug_option
@handle_errors
def bundle(run_id, device_class, recipe, artifacts, out_dir, debug) -> int:
    """Write the deployment bundle of one ok target of RUN (a run id, or 'latest')."""
    from optimize.api import bundle as write_bundle

    folder = write_bundle(run_id, device_class=device_class, recipe=recipe, artifacts=artifacts, out=out_dir)
    out.print(f"bundle: {folder} (and {folder.name}.tar.gz)")
    return EXIT_OK


@click.command()
@click.option("--from", "model", required=True, metavar="models:/NAME@ALIAS", help="or models:/NAME/VERSION")
@click.option("--device-class", "classes", required=True, multiple=True, metavar="NAME", help="repeatable")
@click.option("--recipe", type=click.Path(path_type=Path), help="also the device classes this recipe defines")
@click.option("--schedule", "cron", metavar="CRON", help="when, as cron (default: 0 3 * * *)")
@click.option("--time-zone", metavar="TZ", help="the schedule's IANA time zone (default: Etc/UTC)")
@click.option(
    "--image",
    metavar="IMAGE",
    help="with optimize[build] (default: ghcr.io/optimize-dev/optimize-build:0.1.0)",
)
@click.option(
    "--tracking-secret",
    metavar="NAME[:KEY]",
    help="the Secret and key of the tracking URI (default: mlflow-tracking:uri)",
)
@click.option("--namespace", metavar="NS", help="the jobs' namespace (default: the one kubectl applies to)")
@click.option(
    "--out", "out_dir", required=True, type=click.Path(path_type=Path), metavar="DIR", help="the folder"
)
@debug_option
@handle_errors
def schedule(
    model, classes, recipe, cron, time_zone, image, tracking_secret, namespace, out_dir, debug
) -> int:
    """Write a Kubernetes CronJob per device class that rebuilds a registered model on its nodes."""
    from optimize.api import schedule as write_jobs
    from optimize.fleet.schedule import tracking_secret_parts

    written = write_jobs(
        model,
        device_classes=list(classes),
        out=out_dir,
        recipe=recipe,
        cron=cron,
        time_zone=time_zone,
        image=image,
        tracking_secret=tracking_secret,
        namespace=namespace,
    )
    for path in written:
        out.print(f"wrote {path}")
    secret, key = tracking_secret_parts(tracking_secret)
    out.print(f"needs the Secret: kubectl create secret generic {secret} --from-literal={key}=TRACKING_URI")
    out.print(f"then: kubectl apply -k {out_dir}")
    return EXIT_OK


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@debug_option
@handle_errors
def verify(bundle: Path, debug) -> int:
    """Check BUNDLE (a folder or its .tar.gz) where it will serve; exit 3 naming the failed check."""
    from optimize.api import verify as verify_bundle

    out.print(f"[green]ok[/] {escape(verify_bundle(bundle).summary())}")
    return EXIT_OK


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--port", type=int, default=9400, show_default=True, metavar="PORT", help="serve /metrics on this port"
)
@click.option(
    "--address",
    default="0.0.0.0",
    show_default=True,
    metavar="ADDRESS",
    help="serve on this address (127.0.0.1: this host only)",
)
@click.option(
    "--interval",
    type=float,
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="seconds between probes",
)
@click.option(
    "--server",
    metavar="URL",
    help="probe the model served at this Triton/KServe v2 HTTP URL instead of opening the engine here",
)
@debug_option
@handle_errors
def monitor(bundle: Path, port, address, interval, server, debug) -> int:
    """Probe BUNDLE's engine with its canary set every interval and serve Prometheus metrics."""
    from optimize.api import monitor as probe

    def started(url: str) -> None:
        where = f"the model at {server}" if server else "the engine"
        out.print(f"monitoring {escape(str(bundle))} ({where}) every {interval:g} s; metrics on {url}")

    def probed(result) -> None:
        if not result.ok:
            console.print(f"[yellow]probe failed ({result.reason}):[/] {escape(result.detail)}")

    probe(
        bundle,
        port=port,
        address=address,
        interval=interval,
        server=server,
        on_start=started,
        on_probe=probed,
    )
    return EXIT_OK


COMMANDS = (bundle, schedule, verify, monitor)
