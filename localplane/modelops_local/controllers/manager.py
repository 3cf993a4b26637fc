"""The controller manager process: one store, every controller, the service proxy.

Each `sync_*` function below is the whole of a controller's loop body: read the store, call the pure
reconcile function per object, hand back the results for the runner to apply.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import logging
import os
import shutil
import signal
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from modelops_local.client import Client

from . import common as c
from . import cronjobs, deployments, disruption, endpoints, jobs, replicasets, snapshots, volumes
from .actions import (
    CRONJOBS,
    DEPLOYMENTS,
    ENDPOINTS,
    ENDPOINTSLICES,
    HPAS,
    JOBS,
    PDBS,
    PODS,
    PVCS,
    PVS,
    REPLICASETS,
    SERVICES,
    STATEFULSETS,
    STORAGECLASSES,
    Kind,
    Result,
)
from .autoscaling import HpaLoop
from .proxy import ServiceProxy
from .runner import Controller
from .store import Store

log = logging.getLogger("modelops_local.controllers")

Obj = dict[str, Any]


def by_namespace(objs: Sequence[Obj]) -> dict[str, list[Obj]]:
    out: dict[str, list[Obj]] = defaultdict(list)
    for obj in objs:
        out[c.namespace_of(obj)].append(obj)
    return out


def each(objs: Sequence[Obj], reconcile: Callable[[Obj], Result]) -> list[Result]:
    """Reconcile objects one by one, so that one object the code chokes on does not stall the rest."""
    out: list[Result] = []
    for obj in objs:
        try:
            out.append(reconcile(obj))
        except Exception:
            log.exception(
                "%s %s/%s: reconcile failed", obj.get("kind", "object"), c.namespace_of(obj), c.name_of(obj)
            )
            retry = Result()
            retry.requeue(5.0)
            out.append(retry)
    return out


async def sync_replicasets(store: Store) -> list[Result]:
    at = c.now()
    pods = by_namespace(store.list(PODS))
    return each(
        store.list(REPLICASETS), lambda rs: replicasets.reconcile(rs, pods.get(c.namespace_of(rs), []), at)
    )


async def sync_deployments(store: Store) -> list[Result]:
    at = c.now()
    pods = by_namespace(store.list(PODS))
    rss = by_namespace(store.list(REPLICASETS))
    return each(
        store.list(DEPLOYMENTS),
        lambda d: deployments.reconcile(
            d, rss.get(c.namespace_of(d), []), pods.get(c.namespace_of(d), []), at
        ),
    )


async def sync_endpoints(store: Store) -> list[Result]:
    pods = by_namespace(store.list(PODS))
    services = store.list(SERVICES)
    results = each(
        services,
        lambda svc: endpoints.reconcile(
            svc, pods.get(c.namespace_of(svc), []), store.get(ENDPOINTS, c.namespace_of(svc), c.name_of(svc))
        ),
    )
    results.append(endpoints.orphaned(store.list(ENDPOINTS), services))
    results += each(services, endpoints.load_balancer_status)
    if ENDPOINTSLICES not in store.unavailable:
        slices = by_namespace(store.list(ENDPOINTSLICES))
        results += each(
            services,
            lambda svc: endpoints.reconcile_slices(
                svc, pods.get(c.namespace_of(svc), []), slices.get(c.namespace_of(svc), [])
            ),
        )
    return results


def job_sync(backoff_base: float) -> Any:
    async def sync_jobs(store: Store) -> list[Result]:
        at = c.now()
        pods = by_namespace(store.list(PODS))
        return each(
            store.list(JOBS),
            lambda job: jobs.reconcile(job, pods.get(c.namespace_of(job), []), at, backoff_base),
        )

    return sync_jobs


def _bind_claim(
    claim: Obj, pvs: list[Obj], classes: list[Obj], root: str, at: dt.datetime, why: str | None
) -> Result:
    return volumes.reconcile_claim(claim, pvs, classes, root, at, why)


def volume_sync(root: str) -> Any:
    async def sync_volumes(store: Store) -> list[Result]:
        at = c.now()
        claims = store.list(PVCS)
        pvs = store.list(PVS)
        classes = store.list(STORAGECLASSES)
        provisioned = {c.name_of(pv) for pv in pvs}
        results: list[Result] = []
        for claim in claims:
            named = (claim.get("spec") or {}).get("volumeName")
            ours = named in (None, "", f"pvc-{c.uid_of(claim)}")
            blocked: str | None = None
            if not c.is_deleting(claim) and ours:
                # The directory of a volume we provision exists before the claim reports Bound (and
                # comes back if someone removed it), so a pod that mounts the claim always finds it.
                path = volumes.volume_dir(root, c.namespace_of(claim), c.name_of(claim))
                if snapshots.is_snapshot_source(claim):
                    src, blocked = snapshots.restore_source(
                        claim, store.list(snapshots.VOLUMESNAPSHOTS), root
                    )
                else:
                    source, blocked = volumes.clone_source(claim, claims)
                    src = volumes.host_path(source, pvs) if source is not None else None
                if (
                    f"pvc-{c.uid_of(claim)}" not in provisioned
                    and blocked is None
                    and src
                    and os.path.isdir(src)
                ):
                    await asyncio.to_thread(shutil.copytree, src, path, dirs_exist_ok=True)
                    log.info("cloned %s into %s", src, path)
                await asyncio.to_thread(os.makedirs, path, exist_ok=True)
            results += each(
                [claim],
                functools.partial(_bind_claim, pvs=pvs, classes=classes, root=root, at=at, why=blocked),
            )
        for pv in pvs:
            try:
                result, remove = volumes.reconcile_volume(pv, claims, root)
            except Exception:
                log.exception("PersistentVolume %s: reconcile failed", c.name_of(pv))
                continue
            if remove:
                await asyncio.to_thread(shutil.rmtree, remove, True)
                log.info("removed volume directory %s", remove)
            results.append(result)
        return results

    return sync_volumes


def snapshot_sync(root: str) -> Any:
    async def sync_snapshots(store: Store) -> list[Result]:
        at = c.now()
        claims, pvs = store.list(PVCS), store.list(PVS)
        snaps = store.list(snapshots.VOLUMESNAPSHOTS)
        results: list[Result] = []
        for snap in snaps:
            try:
                result, source = snapshots.plan(snap, claims, pvs, at)
                if source is not None:
                    await asyncio.to_thread(snapshots.take, source, root, snap)
                    result.actions.append(
                        snapshots.ready_status(snap, snapshots.claim_size(snap, claims), at)
                    )
                    log.info("snapshot %s/%s taken of %s", c.namespace_of(snap), c.name_of(snap), source)
            except Exception:
                log.exception("VolumeSnapshot %s/%s: reconcile failed", c.namespace_of(snap), c.name_of(snap))
                result = Result()
                result.requeue(5.0)
            results.append(result)
        if snapshots.VOLUMESNAPSHOTS not in store.unavailable:
            for path in snapshots.orphans(root, snaps):
                await asyncio.to_thread(shutil.rmtree, path, True)
                log.info("removed snapshot directory %s", path)
        return results

    return sync_snapshots


async def sync_disruption(store: Store) -> list[Result]:
    at = c.now()
    pods = by_namespace(store.list(PODS))
    rss = store.list(REPLICASETS)
    scalables = store.list(DEPLOYMENTS) + store.list(STATEFULSETS)
    return each(
        store.list(PDBS),
        lambda pdb: disruption.reconcile(pdb, pods.get(c.namespace_of(pdb), []), rss, scalables, at),
    )


async def sync_cronjobs(store: Store) -> list[Result]:
    at = c.now()
    jobs_by_ns = by_namespace(store.list(JOBS))
    return each(
        store.list(CRONJOBS), lambda cj: cronjobs.reconcile(cj, jobs_by_ns.get(c.namespace_of(cj), []), at)
    )


class Options(argparse.Namespace):
    kubeconfig: str
    dir: str
    hpa_sync_period: float
    job_backoff_base: float
    proxy: bool
    log_level: str


def parse_args(argv: Sequence[str] | None) -> Options:
    p = argparse.ArgumentParser(
        prog="python -m modelops_local.controllers",
        description="The local plane's controllers (Deployment/ReplicaSet, Service endpoints and ClusterIP "
        "proxy, HorizontalPodAutoscaler, Job, CronJob, PersistentVolumeClaim, PodDisruptionBudget).",
    )
    p.add_argument("--kubeconfig", required=True, help="kubeconfig of the local API server")
    p.add_argument(
        "--dir", required=True, help="the local plane's directory (volumes live under DIR/volumes)"
    )
    p.add_argument(
        "--hpa-sync-period", type=float, default=15.0, help="seconds between autoscaler syncs (upstream: 15)"
    )
    p.add_argument(
        "--job-backoff-base",
        type=float,
        default=10.0,
        help="seconds before re-creating a Job's failed pod, doubled per failure up to 360 (upstream: 10)",
    )
    p.add_argument("--no-proxy", dest="proxy", action="store_false", help="do not proxy Service ClusterIPs")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv, namespace=Options())


def build(store: Store, opts: Options, hpa: HpaLoop) -> list[Controller]:
    def ctl(name: str, kinds: Sequence[Kind], sync: Any, period: float | None = None) -> Controller:
        return Controller(name, store, frozenset(kinds), sync, period)

    return [
        ctl("replicaset", [REPLICASETS, PODS], sync_replicasets),
        ctl("deployment", [DEPLOYMENTS, REPLICASETS, PODS], sync_deployments),
        ctl("endpoints", [SERVICES, PODS, ENDPOINTS, ENDPOINTSLICES], sync_endpoints),
        ctl("job", [JOBS, PODS], job_sync(opts.job_backoff_base)),
        ctl("cronjob", [CRONJOBS, JOBS], sync_cronjobs),
        ctl(
            "volume",
            [PVCS, PVS, STORAGECLASSES, snapshots.VOLUMESNAPSHOTS],
            volume_sync(os.path.abspath(opts.dir)),
        ),
        ctl("snapshot", [snapshots.VOLUMESNAPSHOTS, PVCS, PVS], snapshot_sync(os.path.abspath(opts.dir))),
        ctl("autoscaler", [HPAS], hpa.sync, period=opts.hpa_sync_period),
        ctl("disruption", [PDBS, PODS, REPLICASETS, DEPLOYMENTS, STATEFULSETS], sync_disruption),
    ]


async def run(opts: Options) -> None:
    async with Client.from_kubeconfig(opts.kubeconfig) as client:
        store = Store(client)
        hpa = HpaLoop(opts.hpa_sync_period)
        controllers = build(store, opts, hpa)
        proxy = ServiceProxy(store) if opts.proxy else None
        if proxy is not None:
            controllers.append(Controller("proxy", store, frozenset({SERVICES, ENDPOINTS}), proxy.sync))
        await store.start()
        tasks = [asyncio.create_task(ctl.run(), name=ctl.name) for ctl in controllers]
        tasks.append(asyncio.create_task(store.supervise(), name="informers"))
        log.info("controllers running: %s", ", ".join(ctl.name for ctl in controllers))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if proxy is not None:
            await proxy.close()
        await hpa.close()
        await store.stop()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, opts.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from modelops_local import statedir

    statedir.secure(Path(opts.dir))
    statedir.runtime_root(Path(opts.dir))  # claims' directories go where their pods can reach them
    asyncio.run(run(opts))
    return 0
