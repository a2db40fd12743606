"""Render stored records as the JSON shapes bentoml's cloud client parses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .deploy_config import INSTANCE_TYPES
from .gpu.inventory import Inventory
from .rollout.replicas import ReplicaView
from .store import Artifact, Deployment, Revision

EPOCH = "2025-01-01T00:00:00Z"
ORG_NAME = "local"
CLUSTER_NAME = "local"
NAMESPACE = "bentoship"

USER = {"name": "local", "email": "local@bentoship.invalid", "first_name": "", "last_name": ""}


def resource(
    *,
    uid: str,
    name: str,
    resource_type: str,
    created_at: str = EPOCH,
    updated_at: str | None = None,
    labels: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "uid": uid,
        "created_at": created_at,
        "updated_at": updated_at,
        "deleted_at": None,
        "name": name,
        "resource_type": resource_type,
        "labels": labels or [],
    }


def organization() -> dict[str, Any]:
    return {
        **resource(uid="org-local", name=ORG_NAME, resource_type="organization"),
        "description": "bentoship local control plane",
    }


def cluster() -> dict[str, Any]:
    return {
        **resource(uid="cluster-local", name=CLUSTER_NAME, resource_type="cluster"),
        "description": "this machine",
        "organization_name": ORG_NAME,
        "creator": USER,
        "is_first": True,
    }


def listing(items: list[Any], start: int = 0, total: int | None = None) -> dict[str, Any]:
    return {
        "start": start,
        "count": len(items),
        "total": len(items) if total is None else total,
        "items": items,
    }


def instance_types(gpus: Inventory | None = None) -> list[dict[str, Any]]:
    """The CPU types, then a ``gpu.<model>.<n>`` type for each count of each GPU model present."""
    types = [
        _instance_type(name, spec["cpu"], spec["memory"], spec["price"], "cpu")
        for name, spec in INSTANCE_TYPES.items()
    ]
    for name, (gpu, count) in (gpus.instance_types() if gpus else {}).items():
        spec = INSTANCE_TYPES["cpu.large"]
        item = _instance_type(name, spec["cpu"], spec["memory"], "0", "gpu", gpu=str(count))
        item["description"] = f"{count} x {gpu.name} ({gpu.memory} each) on the local machine"
        item["config"]["gpu_config"] = {"type": f"nvidia-{gpu.model}", "memory": gpu.memory}
        types.append(item)
    return types


def _instance_type(
    name: str, cpu: str, memory: str, price: str, group: str, gpu: str | None = None
) -> dict[str, Any]:
    requests = {"cpu": cpu, "memory": memory, **({"gpu": gpu} if gpu else {})}
    return {
        **resource(uid=f"it-{name}", name=name, resource_type="resource_instance"),
        "display_name": name,
        "description": f"{cpu} CPU, {memory} on the local machine",
        "config": {
            "group": group,
            "resources": {"requests": requests, "limits": dict(requests)},
            "price": price,
        },
    }


def _build_at(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return parsed.strftime("%Y-%m-%d %H:%M:%S.%f")


def repository(
    kind: str, row: Any, latest: Artifact | None, *, with_latest: bool = True
) -> dict[str, Any]:
    data = {
        **resource(
            uid=row["uid"],
            name=row["name"],
            resource_type=f"{kind}_repository",
            created_at=row["created_at"],
        ),
        "description": row["description"],
    }
    key = f"latest_{kind}"
    data[key] = artifact(latest) if (latest and with_latest) else None
    return data


def artifact(item: Artifact, repo_row: Any | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        **resource(
            uid=item.uid,
            name=item.version,
            resource_type=item.kind,
            created_at=item.created_at,
            updated_at=item.updated_at,
            labels=item.labels,
        ),
        "description": item.description,
        "version": item.version,
        "image_build_status": "success",
        "upload_status": item.upload_status,
        "upload_finished_reason": item.upload_finished_reason,
        "presigned_upload_url": "",
        "presigned_download_url": "",
        "manifest": item.manifest,
        "transmission_strategy": "proxy",
        "upload_id": None,
        "build_at": _build_at(item.build_at),
    }
    if repo_row is not None:
        data["repository"] = repository(item.kind, repo_row, None, with_latest=False)
    return data


def revision(
    rev: Revision,
    *,
    active: bool,
    bento: dict[str, Any] | None,
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    target = {
        **resource(
            uid=f"{rev.uid}-main",
            name="main",
            resource_type="deployment_target",
            created_at=rev.created_at,
        ),
        "creator": USER,
        "config": rev.config,
        "bento": bento,
    }
    data = {
        **resource(
            uid=rev.uid,
            name=f"r{rev.seq}",
            resource_type="deployment_revision",
            created_at=rev.created_at,
        ),
        "creator": USER,
        "status": "active" if active else "inactive",
        "targets": [target],
    }
    if extensions is not None:
        data["bentoship"] = extensions
    return data


def deployment(
    dep: Deployment,
    *,
    status: str,
    latest_revision: dict[str, Any] | None,
    url: str,
    labels: list[dict[str, str]],
    routing: dict[str, Any] | None = None,
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data = {
        **resource(
            uid=dep.uid,
            name=dep.name,
            resource_type="deployment",
            created_at=dep.created_at,
            updated_at=dep.updated_at,
            labels=labels,
        ),
        "status": status,
        "kube_namespace": NAMESPACE,
        "creator": USER,
        "cluster": cluster(),
        "latest_revision": latest_revision,
        "manifest": {"dev": False, "routing": routing},
        "urls": [url],
    }
    if extensions is not None:
        data["bentoship"] = extensions
    return data


def pod(deployment_name: str, view: ReplicaView) -> dict[str, Any]:
    """A replica as BentoCloud lists a deployment's pods (``KubePodSchema``)."""
    rev, replica = view.revision, view.replica
    ready = bool(replica["ready"]) and not replica["draining"]
    if replica["draining"]:
        status, reason = "Terminating", "draining: answering its outstanding requests"
    elif replica["ready"]:
        status, reason = "Running", ""
    else:
        status, reason = "Pending", "starting: /readyz does not answer 200 yet"
    service = next(iter(rev.config.get("services") or {}), "")
    return {
        "name": f"{deployment_name}-r{rev.seq}-{replica['index']}",
        "namespace": NAMESPACE,
        "labels": {
            "yatai.ai/bento-deployment": deployment_name,
            "yatai.ai/bento-function-component-type": "api-server",
            "bentoship.io/revision": f"r{rev.seq}",
            "bentoship.io/replica": str(replica["index"]),
            "bentoship.io/role": view.role,
        },
        "pod_status": {"status": status, "reason": reason},
        "status": {"phase": "Running" if replica["ready"] else "Pending", "ready": ready},
        "runner_name": service,
        "bentoship": {
            "bento": rev.bento,
            "port": replica["port"],
            "pid": replica["pid"],
            "outstanding": replica["outstanding"],
            "requests": replica["requests"],
            "gpus": list(view.gpus),
        },
    }
