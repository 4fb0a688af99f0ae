"""The torch device a training or extraction runs on: the GPU Ray assigned when CUDA works, else the CPU.

Ray may assign a GPU that this torch cannot use (a CPU-only torch build, a node that declares
GPUs it does not have, a broken driver); the work then runs on the CPU instead of failing.
"""

from __future__ import annotations

import os
from typing import Any

import torch


def work_device(in_ray_train: bool = False) -> torch.device:
    """``cuda:<assigned>`` inside Ray Train (``cuda`` outside) when CUDA is usable, else ``cpu``."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if in_ray_train:
        import ray.train.torch

        return ray.train.torch.get_device()
    return torch.device("cuda")


def placement(device: torch.device) -> dict[str, Any]:
    """Where this process runs: its device and, inside Ray, the resources and accelerators Ray gave it."""
    out: dict[str, Any] = {"device": str(device), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    try:
        import ray

        if ray.is_initialized():
            ctx = ray.get_runtime_context()
            out["accelerator_ids"] = {k: list(v) for k, v in ctx.get_accelerator_ids().items() if v}
            out["assigned_resources"] = dict(ctx.get_assigned_resources())
            out["node_id"] = ctx.get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray: the device alone
        pass
    if device.type == "cuda":
        out["gpu_name"] = torch.cuda.get_device_name(device)
    return out
