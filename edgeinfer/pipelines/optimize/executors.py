"""Where `optimize` measures its candidates: here, one after another (the default), or as Ray tasks
(`--executor ray`, `pip install 'edgeinfer[ray]'`) on a local Ray instance or a cluster.

A Ray task gets a picklable description of the search space (the baseline's bytes, the data paths,
the profile), builds its candidate with the same passes and measures it with the same code as the
serial path, and returns the figures. Quality figures are the same as the serial executor's; the
latency of a task that shared its node with other tasks is labelled so, and `optimize` measures the
candidate it chooses again on its own machine before it ships it. Tasks run under the OpenMP
setting this process measures with (core.measure), carried in their runtime environment, and each
result says which setting its worker had.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from enum import StrEnum
from pathlib import Path
from typing import Any

from edgeinfer.core.errors import ConfigError, MissingDependencyError, option
from edgeinfer.core.io import scratch_dir
from edgeinfer.core.progress import QUIET, Progress

log = logging.getLogger(__name__)


class Executor(StrEnum):
    SERIAL = "serial"
    RAY = "ray"


class RayExecutor:
    """Candidates as Ray tasks: a local Ray instance, or the cluster at `address` ("auto": the one
    this machine belongs to). Data paths must be readable on the workers (a shared file system)."""

    name = "ray"

    def __init__(self, address: str | None = None, resource: str | None = None) -> None:
        try:
            import ray
        except ImportError as e:
            raise MissingDependencyError("ray", "--executor ray (pip install 'edgeinfer[ray]')") from e
        self.ray = ray
        # A custom resource that only the device's node declares (`ray start --resources '{"NAME": 1}'`
        # there): every task runs on that node, one at a time, so its figures are the device's own.
        self.resource = resource
        self.started = not ray.is_initialized()
        if self.started:
            if address is None:
                loopback_only(ray)
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        if resource is not None:
            nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(resource)]
            if not nodes:
                self.close()
                raise ConfigError(
                    f"no node of the Ray cluster declares the resource {resource!r}: start the device's node with "
                    f"`ray start --address HEAD --resources '{{\"{resource}\": 1}}'`"
                )

    def where(self, node: str) -> str:
        """What a candidate's measured_on says of a task run on `node`."""
        return f"{self.resource} ({self.name} node {node}, alone)" if self.final else f"{self.name}:{node}"

    @property
    def final(self) -> bool:
        """Whether a task's figures are the device's own (its node, alone), not a shared node's."""
        return self.resource is not None

    def measure(self, spec: dict[str, Any], candidates: list, progress: Progress = QUIET) -> list[dict[str, Any]]:
        """Build and measure each candidate as a task; one result (figures, or an error) per candidate."""
        from edgeinfer.core.measure import openmp_setting

        ray = self.ray
        # A worker (of a cluster started by someone else, too) times as this process does.
        options: dict[str, Any] = {"num_cpus": 1, "runtime_env": {"env_vars": openmp_setting()}}
        if self.resource is not None:  # the whole of the resource: one task at a time, on that node
            options["resources"] = {self.resource: self.ray.cluster_resources().get(self.resource, 1)}
        task = ray.remote(**options)(measure_candidate)
        shared = ray.put(spec)
        refs = [task.remote(shared, c.name, c.steps) for c in candidates]
        pending, done = list(refs), 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            done += len(ready)
            progress.advance(done, len(refs), "candidates measured as Ray tasks")
        return ray.get(refs)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def loopback_only(ray) -> None:
    """Make the local Ray instance that `ray.init()` starts listen on 127.0.0.1 only. By default its
    GCS, raylets and workers listen on every interface and advertise the machine's network
    address: on a laptop, reachable from its network for the length of the search. Ray keeps
    single-node clusters on the loopback address when multi-node clusters are off
    (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read when ray is imported, hence the constant too)."""
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def make_executor(how: Executor, address: str | None = None, resource: str | None = None) -> RayExecutor | None:
    """None for the serial executor (the search measures in-process)."""
    if how is Executor.SERIAL:
        if address or resource:
            name = "ray_address" if address else "ray_resource"
            raise ConfigError(f"{option(name)} needs {option('executor', 'ray')}")
        return None
    if resource is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", resource):
        raise ConfigError(f"{option('ray_resource', resource)} is not a Ray resource name (letters, digits, _ . -)")
    return RayExecutor(address, resource)


def measure_candidate(spec: dict[str, Any], name: str, steps: list) -> dict[str, Any]:
    """On a worker: rebuild the search space from `spec`, build the candidate, measure it."""
    from edgeinfer.core.io import sha256_file
    from edgeinfer.core.measure import openmp_setting
    from edgeinfer.pipelines.optimize.search import Candidate, measure_here

    with scratch_dir("task") as tmp:
        space = space_from_spec(spec, Path(tmp))
        cand = Candidate(name, [(p, dict(c)) for p, c in steps])
        try:
            cand.path = space.build(cand)
        except Exception as e:  # reported like a serial build failure
            return {"error": str(e).splitlines()[0][:200] if str(e) else type(e).__name__}
        cand.sha256, cand.size_bytes = sha256_file(cand.path), cand.path.stat().st_size
        why = measure_here(space, cand)
        if why:
            return {"unmeasurable": why}
        return {**cand.figures(), "node": socket.gethostname(), "openmp": openmp_setting()}


def space_from_spec(spec: dict[str, Any], work: Path):
    """The search space a spec describes, with its baseline written into `work`."""
    from edgeinfer.core.artifact import sidecar_path
    from edgeinfer.pipelines.passes import PassContext

    suffix = ".onnx" if spec["kind"] == "onnx" else ".gguf"
    baseline = work / f"baseline{suffix}"
    baseline.write_bytes(spec["baseline"])
    if spec.get("sidecar") is not None:
        sidecar_path(baseline).write_bytes(spec["sidecar"])
    ctx = PassContext(
        calib=spec.get("calib"), train_data=spec.get("train_data"), profile=spec["profile"],
        trust_source=spec.get("trust_source", False), compare=False,
    )  # fmt: skip
    if spec["kind"] == "onnx":
        from edgeinfer.pipelines.optimize.onnx import OnnxSpace

        return OnnxSpace(
            spec["source"], baseline, work, spec["data"], spec["profile"], ctx, spec["runs"], QUIET,
            stand_in=spec.get("stand_in", False),
        )  # fmt: skip
    from edgeinfer.pipelines.optimize.llm import GgufSpace

    return GgufSpace(baseline, work, Path(spec["data"]), spec["profile"], ctx, spec["runs"], QUIET)
