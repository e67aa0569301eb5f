"""ONNX Runtime runner: providers from a device profile or a list, checked inputs, real placement.

Plugin providers (ONNX Runtime 1.23+, e.g. onnxruntime-qnn) are registered from their package
and selected per device; the CPU fallback is disabled for them unless the caller allows it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import weakref
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np

from edgeinfer.core.errors import BackendError, InputError, MissingDependencyError, ProviderUnavailableError, option
from edgeinfer.core.limits import check_threads
from edgeinfer.core.model_kind import ModelKind
from edgeinfer.core.providers import Provider
from edgeinfer.core.stdio import quiet_native
from edgeinfer.runtime import Backend, ProviderReport, Target, register_backend
from edgeinfer.runtime.feeds import check_feeds, describe

log = logging.getLogger(__name__)


# Providers that ship as separate packages and load as plugin libraries: module name.
_PLUGINS = {Provider.QNN: "onnxruntime_qnn"}
_registered: set[Provider] = set()


def _ort():
    try:
        import onnxruntime
    except ImportError as e:
        raise MissingDependencyError("onnxruntime", "running ONNX models") from e
    return onnxruntime


def register_plugin(provider: Provider) -> bool:
    """Load a plugin provider's library into ONNX Runtime once; False if its package is absent."""
    if provider in _registered:
        return True
    module = _PLUGINS.get(provider)
    if module is None:
        return False
    try:
        plugin = __import__(module)
    except ImportError:
        return False
    ort = _ort()
    try:
        ort.register_execution_provider_library(plugin.get_ep_name(), plugin.get_library_path())
    except Exception as e:  # already registered by someone else in this process
        if "already" not in str(e).lower():
            raise BackendError(f"could not register {provider.value} from {module}: {e}") from e
    _registered.add(provider)
    return True


def available_providers() -> list[str]:
    """Providers this machine can run, plugin providers included when their package is present."""
    for p in _PLUGINS:
        register_plugin(p)
    ort = _ort()
    names = list(ort.get_available_providers())
    for dev in ort.get_ep_devices():
        if dev.ep_name not in names:
            names.append(dev.ep_name)
    return names


def _plugin_options(provider: Provider) -> dict[str, str]:
    if provider is Provider.QNN:
        import onnxruntime_qnn

        return {"backend_path": onnxruntime_qnn.get_qnn_htp_path()}
    return {}


def describe_inputs(session) -> str:
    return describe(session.get_inputs())


class OrtRunner:
    """One ONNX Runtime session; `report` says which providers really ran which nodes."""

    def __init__(
        self,
        model: Path,
        *,
        providers: list[Provider] | None = None,
        allow_fallback: bool = False,
        threads: int | None = None,
        optimization: str = "all",
        profile_first_run: bool = True,
        session_config: dict[str, str] | None = None,
    ) -> None:
        ort = _ort()
        self.path = Path(model)
        if not self.path.is_file():
            raise InputError(f"model {self.path} does not exist")
        requested = list(providers or (Provider.CPU,))
        threads = check_threads(threads)
        available = available_providers()
        missing = [p for p in requested if p.value not in available]
        fallbacks = []
        if missing:
            names = ", ".join(f"{p.value} ({p.how_to_get()})" for p in dict.fromkeys(missing))
            if not allow_fallback:
                raise ProviderUnavailableError(
                    f"execution provider not available on this machine: {names}; choose "
                    f"another {option('providers')}/{option('device')}, or pass {option('allow_fallback', True)} to run without it",
                    missing=names,
                )
            fallbacks = [f"{p.value} unavailable" for p in missing]
            requested_ok = [p for p in requested if p not in missing] or [Provider.CPU]
            log.warning(f"fallback: {names} not available; running on {', '.join(p.value for p in requested_ok)}")
        else:
            requested_ok = requested

        so = ort.SessionOptions()
        so.log_severity_level = 3  # errors only: provider chatter is not the user's problem
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
        if threads:
            so.intra_op_num_threads = threads
        # Idle ORT threads otherwise busy-wait after each run and steal the cores from whatever runs
        # next (PyTorch, another session): interleaved timings would then flatter ORT unfairly.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._profile_dir = None
        if profile_first_run:
            self._profile_dir = tempfile.mkdtemp(prefix="edgeinfer-prof-")
            # Removed after the first run, or when the runner goes away (a failed load included).
            weakref.finalize(self, shutil.rmtree, self._profile_dir, ignore_errors=True)
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(self._profile_dir, "ort")

        for key, value in (session_config or {}).items():
            so.add_session_config_entry(key, value)
        plugins = [p for p in requested_ok if p in _PLUGINS]
        try:
            # Native output is kept off the user's streams: the QNN SDK prints a banner on C stdout
            # when a session starts (`--json > x.json` must stay JSON), and ONNX Runtime prints
            # its own error report, and a Python 'EP Error ... retrying' banner, for a bad model.
            with quiet_native():
                if plugins:
                    self.session = self._plugin_session(ort, so, requested_ok, plugins, allow_fallback)
                else:
                    self.session = ort.InferenceSession(
                        str(self.path), sess_options=so, providers=[p.value for p in requested_ok]
                    )
        except ProviderUnavailableError:
            self._drop_profile_dir()
            raise
        except Exception as e:
            self._drop_profile_dir()
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if any(w in msg for w in ("INVALID_PROTOBUF", "Protobuf parsing failed", "Load model", "ModelProto")):
                raise InputError(f"{self.path} is not a valid ONNX model ({msg})") from e
            if plugins:
                raise ProviderUnavailableError(
                    f"{', '.join(p.value for p in plugins)} could not run {self.path.name}: {msg}"
                ) from e
            raise BackendError(f"ONNX Runtime could not load {self.path}: {msg}") from e

        used = self.session.get_providers()
        dropped = [p.value for p in requested_ok if p.value not in used]
        if dropped:
            # ONNX Runtime drops a provider it cannot create with only a log line: surface it.
            if not allow_fallback:
                raise ProviderUnavailableError(
                    f"ONNX Runtime did not create {', '.join(dropped)} for {self.path.name} (it runs on "
                    f"{', '.join(used)}); pass {option('allow_fallback', True)} to accept that"
                )
            log.warning(f"fallback: ONNX Runtime did not create {', '.join(dropped)}; running on {', '.join(used)}")
            fallbacks += [f"{d} not created" for d in dropped]
        self.report = ProviderReport([p.value for p in requested], list(used), fallbacks)

    def _plugin_session(self, ort, so, requested, plugins, allow_fallback):
        for p in plugins:
            if not register_plugin(p):
                raise ProviderUnavailableError(f"{p.value} needs its package: pip install {p.package}")
        wanted = {p.value for p in requested}
        devices = [d for d in ort.get_ep_devices() if d.ep_name in wanted and d.ep_name != Provider.CPU.value]
        if not devices:
            raise ProviderUnavailableError(f"no device found for {', '.join(sorted(wanted))}")
        options = {}
        for p in plugins:
            options.update(_plugin_options(p))
        so.add_provider_for_devices(devices, options)
        if Provider.CPU not in requested and not allow_fallback:
            # Without this, nodes the NPU cannot take would quietly run on the CPU.
            so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        return ort.InferenceSession(str(self.path), sess_options=so)

    # -- inputs ---------------------------------------------------------------------------

    @property
    def inputs(self):
        return self.session.get_inputs()

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def check_inputs(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return check_feeds(self.inputs, feeds, self.path.name)

    def timer(self, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        """The cheapest call that runs `feeds` (checked once), for timing."""
        feeds = self.check_inputs(feeds)
        session = self.session
        return lambda: session.run(None, feeds)

    # -- running --------------------------------------------------------------------------

    def close(self) -> None:
        """Free the session now rather than when collected."""
        self.__dict__.pop("session", None)

    def run(self, feeds: dict[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]:
        if check:
            feeds = self.check_inputs(feeds)
        try:
            outputs = self.session.run(None, feeds)
        except Exception as e:
            raise BackendError(f"ONNX Runtime failed running {self.path.name}: {str(e).splitlines()[0]}") from e
        if self._profile_dir is not None:
            self._collect_placement()
        return dict(zip(self.output_names, cast(list[np.ndarray], outputs)))

    def _drop_profile_dir(self) -> None:
        if self._profile_dir is not None:
            shutil.rmtree(self._profile_dir, ignore_errors=True)
            self._profile_dir = None

    def _collect_placement(self) -> None:
        prof_file = self.session.end_profiling()
        try:
            self.report.placement = parse_profile(Path(prof_file))
        finally:
            self._drop_profile_dir()


def parse_profile(path: Path) -> dict[str, dict[str, Any]]:
    """Count the nodes each provider ran, from ONNX Runtime's profiler trace."""
    events = json.loads(path.read_text())
    nodes: dict[str, tuple[str, str]] = {}
    for ev in events:
        if ev.get("cat") != "Node":
            continue
        args = ev.get("args", {})
        provider = args.get("provider")
        if not provider:
            continue
        name = ev["name"].removesuffix("_kernel_time").removesuffix("_fence_before").removesuffix("_fence_after")
        nodes[name] = (provider, args.get("op_name", "?"))
    placement: dict[str, dict[str, Any]] = {}
    for provider, op in nodes.values():
        entry = placement.setdefault(provider, {"nodes": 0, "ops": Counter()})
        entry["nodes"] += 1
        entry["ops"][op] += 1
    return {p: {"nodes": v["nodes"], "ops": dict(v["ops"])} for p, v in placement.items()}


def compile_ep_context(
    model: Path, output: Path, providers: list[Provider], threads: int | None = None
) -> ProviderReport:
    """Precompile a model for its device's provider into an EP-context model (`*_ctx.onnx`).

    The provider writes its compiled graph (e.g. a QNN context binary) into the file, so the
    device loads it without compiling again.
    """
    runner = OrtRunner(
        model,
        providers=providers,
        threads=threads,
        profile_first_run=False,
        session_config={"ep.context_enable": "1", "ep.context_file_path": str(output), "ep.context_embed_mode": "1"},
    )
    if not Path(output).exists():
        raise ProviderUnavailableError(
            f"{', '.join(runner.report.used)} wrote no EP-context model; this provider cannot precompile here"
        )
    return runner.report


def _load(path: Path, target: Target) -> OrtRunner:
    return OrtRunner(
        path,
        providers=list(target.providers) if target.providers else None,
        threads=target.threads,
        allow_fallback=target.allow_fallback,
        **dict(target.options),
    )


register_backend(
    Backend(
        "onnxruntime",
        (ModelKind.ONNX,),
        frozenset({"providers", "threads", "allow_fallback"}),
        _load,
        options=frozenset({"profile_first_run", "optimization", "session_config"}),
    )
)
