"""`python -m modelops_local.nodes`: the nodes of the local plane (scheduler + kubelets) in one process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

from modelops_local import statedir
from modelops_local.client import Client, Informer
from modelops_local.nodes import engine, proctree
from modelops_local.nodes.clusterview import ClusterView
from modelops_local.nodes.kubelet import Kubelet
from modelops_local.nodes.podgc import collect_orphans, remove_stale_nodes
from modelops_local.nodes.pods import setpriv_path
from modelops_local.nodes.quantity import parse_quantity
from modelops_local.nodes.scheduler import Scheduler

log = logging.getLogger("modelops_local.nodes")


def node_names(count: int) -> list[str]:
    return [f"local-node-{i}" for i in range(1, count + 1)]


async def serve(args: argparse.Namespace) -> None:
    directory = Path(args.dir).resolve()
    statedir.secure(directory)
    root = statedir.runtime_root(directory)
    switch_users = statedir.switches_users() and setpriv_path() is not None
    expose = ""
    if switch_users and statedir.unreachable_image_paths():
        expose = statedir.expose_image(root / "stage")
        log.info("other users cannot reach %s: containers see it through a private mount namespace",
                 ", ".join(statedir.unreachable_image_paths()))  # fmt: skip
    elif os.geteuid() == 0 and not switch_users:
        log.warning(
            "pods run as root: runAsUser cannot be applied (util-linux setpriv and unshare are needed, "
            "and %s must be reachable by other users or mount namespaces must work)",
            ", ".join(statedir.unreachable_image_paths()) or "the Python environment",
        )
    plane_id = hashlib.sha256(str(directory).encode()).hexdigest()[:16]
    cgroups = proctree.cgroup_base(plane_id)
    container_engine = None
    if args.runtime != "process":
        container_engine = engine.Engine.detect(args.runtime)
        log.info("containers run on %s %s (%s)", args.runtime, container_engine.version(),
                 " ".join(container_engine.base))  # fmt: skip
        # Containers cannot be re-adopted by a new kubelet (as processes cannot): end what is left.
        left = await container_engine.remove_labelled(engine.PLANE_LABEL, plane_id)
        if left:
            log.info("removed %d containers an earlier nodes process left running", len(left))
    log.info(
        "pod files in %s; pods run as %s; container processes tracked by %s",
        root,
        "their runAsUser" if switch_users else "this process's user",
        f"cgroup v2 ({cgroups})" if cgroups else "/proc (no writable cgroup v2)",
    )
    api = Client.from_kubeconfig(args.kubeconfig)
    pods = Informer(api, "v1", "pods")
    nodes = Informer(api, "v1", "nodes")
    services = Informer(api, "v1", "services")
    cluster = ClusterView(pods, services, root / "hosts", seed=str(directory))
    kubelets = [
        Kubelet(
            api,
            name,
            directory,
            cluster,
            gpus=args.gpus,
            backoff_base=args.backoff_base,
            cpus=args.cpus,
            memory=args.memory,
            config_resync=args.config_resync_seconds,
            root=root,
            switch_users=switch_users,
            cgroups=cgroups,
            expose=expose,
            engine=container_engine,
            plane_id=plane_id,
        )
        for name in node_names(args.nodes)
    ]
    scheduler = Scheduler(api, pods, nodes)

    def on_pod(kind: str, pod: dict[str, Any], old: dict[str, Any] | None) -> None:
        cluster.on_change(kind, pod)
        scheduler.kick()
        for kubelet in kubelets:
            kubelet.handle_pod(kind, pod)

    def on_service(kind: str, svc: dict[str, Any], old: dict[str, Any] | None) -> None:
        cluster.on_change(kind, svc)

    def on_node(kind: str, node: dict[str, Any], old: dict[str, Any] | None) -> None:
        scheduler.kick()

    pods.handler, services.handler, nodes.handler = on_pod, on_service, on_node
    for kubelet in kubelets:
        await kubelet.register()
    await remove_stale_nodes(api, [k.name for k in kubelets])
    # Services first: a resumed pod's env needs them before its containers start.
    tasks = [services.start()]
    await services.synced.wait()
    tasks += [nodes.start(), pods.start()]
    await pods.synced.wait()
    swept = proctree.sweep(cgroups, {str((p.get("metadata") or {}).get("uid")) for p in pods.cache.values()})
    if swept:
        log.info("killed what the containers of %d deleted pods left behind", len(swept))
    tasks.append(asyncio.create_task(cluster.run_hosts_writer(), name="hosts"))
    tasks.append(asyncio.create_task(cluster.memory.run(), name="memory"))
    tasks.append(asyncio.create_task(scheduler.run(), name="scheduler"))
    tasks.append(asyncio.create_task(collect_orphans(api, pods, nodes, args.pod_gc_seconds), name="podgc"))
    tasks += [asyncio.create_task(k.heartbeat(), name=f"heartbeat-{k.name}") for k in kubelets]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not stopper and task.exception() is not None:
            log.error("component %s failed", task.get_name(), exc_info=task.exception())
    log.info("stopping: ending every container")
    await asyncio.gather(*(k.shutdown() for k in kubelets))
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks, return_exceptions=True)
    await api.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modelops_local.nodes", description=__doc__)
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the local API server")
    parser.add_argument("--dir", required=True, help="the local plane's directory (logs, volumes, hosts)")
    parser.add_argument("--nodes", type=int, default=1, help="number of nodes (default 1)")
    parser.add_argument("--gpus", type=int, default=0, help="fake nvidia.com/gpu devices per node")
    parser.add_argument(
        "--cpus", help="cpu capacity per node, a quantity (default: this machine's CPU count)"
    )
    parser.add_argument(
        "--memory", help="memory capacity per node, a quantity (default: this machine's memory)"
    )
    parser.add_argument(
        "--backoff-base",
        type=float,
        default=10.0,
        help="first CrashLoopBackOff delay in seconds (default 10)",
    )
    parser.add_argument(
        "--pod-gc-seconds",
        type=float,
        default=20.0,
        help="how often pods bound to vanished nodes are looked for (deleted on the second sighting)",
    )
    parser.add_argument(
        "--config-resync-seconds",
        type=float,
        default=30.0,
        help="how often ConfigMap/Secret volumes are brought up to date (default 30)",
    )
    parser.add_argument(
        "--runtime",
        choices=engine.RUNTIMES,
        default="process",
        help="how containers run: as local processes (default), or as podman/docker containers",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    if args.gpus < 0:
        parser.error("--gpus must not be negative")
    for option in ("cpus", "memory"):
        value = getattr(args, option)
        if value is not None:
            try:
                if parse_quantity(value) <= 0:
                    raise ValueError("not positive")
            except ValueError:
                parser.error(f"--{option} {value!r} is not a positive quantity; write e.g. 8, 500m, 16Gi")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(args))
    except engine.EngineError as e:
        raise SystemExit(f"modelops_local.nodes: {e}") from None


if __name__ == "__main__":
    main()
