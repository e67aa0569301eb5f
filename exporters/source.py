"""What an exporter exports: a module, named example inputs, and a second, different input set.

A source is a Hugging Face model directory, a Python factory `package.module:function`, or a
`torch.export` `.pt2` file. Checkpoints are never unpickled (a .pt2 only as tensors, unless the user
trusts it) and remote code is never run.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeinfer.core.errors import ConfigError, InputError, UnsupportedError, option
from edgeinfer.exporters.tasks import InputOptions

log = logging.getLogger(__name__)


@dataclass
class SourceModel:
    module: Any  # torch.nn.Module taking the inputs positionally, returning a tuple of tensors
    input_names: list[str]
    output_names: list[str]
    example: dict[str, Any]  # name -> torch.Tensor
    second: dict[str, Any]  # the same names, another batch size / sequence length
    dynamic_axes: dict[str, dict[int, str]]
    description: dict[str, Any]
    task: str | None = None  # an export task's name (exporters/tasks/) for Hugging Face folders
    tokenizer_dir: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # recorded in the sidecar's meta (a head's settings)
    output_axes: dict[str, dict[int, str]] = field(default_factory=dict)  # default: axis 0 is the batch
    checked_in_pytorch: bool = False  # the module already ran on `example` (the export need not rerun it)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def export_cause(error: BaseException) -> str:
    """What made an exporter fail, in one line: the innermost exception of the chain that says
    something (torch.onnx wraps the cause in "Failed to export the model with torch.export. This is
    step 1/3 ... Next steps:"), its first line, without terminal colour codes."""
    chain = [error]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        nxt = chain[-1].__cause__ or chain[-1].__context__
        if nxt is None or nxt in chain or len(chain) > 20:
            break
        chain.append(nxt)

    def first_line(e: BaseException) -> str:
        text = _ANSI.sub("", str(e))
        return next((line.strip() for line in text.splitlines() if line.strip()), "")

    said = [(e, first_line(e)) for e in chain]
    generic = ("Failed to export the model", "This is step")
    root = next(((e, line) for e, line in reversed(said) if line and not line.startswith(generic)), None)
    e, line = root if root is not None else (error, first_line(error))
    return f"{type(e).__name__}: {line[:300] or 'no message'}"


def fails_in_pytorch(error: BaseException) -> InputError:
    """The error for a model that cannot run on its own example inputs: the model's fault (exit 2),
    not an exporter's."""
    return InputError(f"the model fails in PyTorch itself, before any export: {export_cause(error)}")


def takes_keywords(module, names: list[str]) -> bool:
    """Whether `module.forward` accepts these input names as keywords (else they go positionally,
    in order: an nn.Sequential's forward takes one `input`, whatever the example calls it)."""
    import inspect

    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return True
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    return all(n in params and params[n].kind is not inspect.Parameter.POSITIONAL_ONLY for n in names)


def call_module(module, inputs: dict[str, Any]):
    """module(**inputs) when its forward names them so, else module(*inputs.values())."""
    return module(**inputs) if takes_keywords(module, list(inputs)) else module(*inputs.values())


def _named_outputs(module, names: list[str], pick: list[str]):
    """Wrap a module so it takes inputs positionally and returns a tuple of the picked outputs."""
    import torch

    keywords = takes_keywords(module, names)

    class Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = module

        def forward(self, *inputs):
            out = self.model(**dict(zip(names, inputs))) if keywords else self.model(*inputs)
            if isinstance(out, torch.Tensor):
                return (out,)
            if isinstance(out, (tuple, list)):
                return tuple(out)
            return tuple(out[k] for k in pick)

    return Positional().eval()


def _new_weights(model, info: dict) -> tuple[list[str], list[str]]:
    """(head, body): parameters the checkpoint lacked (or had in another shape), which transformers
    initialised at random. The head is what lies outside the base model (a classifier, an LM head);
    a base model's pooler is not exported and does not count."""
    missing = sorted(set(info.get("missing_keys") or ()) | {m[0] for m in info.get("mismatched_keys") or ()})
    prefix = getattr(model, "base_model_prefix", "")
    wrapped = bool(prefix) and hasattr(model, prefix)  # a head model around its base
    head = [k for k in missing if wrapped and not k.startswith(prefix + ".")]
    body = [k for k in missing if k not in head and ".pooler." not in f".{k}"]
    return head, body


def is_diffusers_folder(path: Path) -> bool:
    """A diffusers pipeline (model_index.json) or model folder (config.json with `_diffusers_version`)."""
    from edgeinfer.core.formats import read_json_object

    path = Path(path)
    if (path / "model_index.json").is_file():
        return True
    file = path / "config.json"
    if not file.is_file():
        return False
    config = read_json_object(file, "config")
    return "_diffusers_version" in config or ("_class_name" in config and "model_type" not in config)


def load_pretrained(path: Path, task: str | None, allow_new_head: bool = False):
    """(model in eval mode, config dict, architecture name, ExportTask, new head weights) of a
    Hugging Face folder loaded with the head of `task` (else the one its architecture names).

    Weights the checkpoint does not hold would be random, and validation cannot see it (it compares
    the ONNX graph with the same random model): a missing head is refused unless `allow_new_head`
    (then returned, to be recorded), missing weights inside the model always."""
    import torch

    from edgeinfer.core.formats import read_safetensors_header
    from edgeinfer.core.hf_folder import read_config
    from edgeinfer.exporters.architectures import check_task
    from edgeinfer.exporters.tasks import get_task, infer_task, refuse_unexported

    if is_diffusers_folder(path):
        raise UnsupportedError(
            f"{path} is a diffusers folder, not a transformers one: export it with `edgeinfer export`"
        )
    config = read_config(path)
    arch = (config.get("architectures") or [""])[0]
    refuse_unexported(arch, config)
    spec = get_task(task) if task else infer_task(arch)
    check_task(config, spec.name)  # a declared architecture asked for a task it lacks fails here
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        pickled = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
        hint = (
            f" (found pickled {', '.join(pickled)}; convert them to safetensors with a tool you trust)"
            if pickled
            else ""
        )
        raise InputError(f"{path} has no .safetensors weights{hint}; edgeinfer does not unpickle checkpoints")
    for file in weights:
        read_safetensors_header(file)  # a truncated or hostile header fails here, before torch allocates

    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    auto = getattr(transformers, spec.auto_class)
    try:
        model, info = auto.from_pretrained(
            str(path),
            local_files_only=True,
            trust_remote_code=False,
            use_safetensors=True,
            attn_implementation="eager",
            dtype=torch.float32,
            output_loading_info=True,
        )
        model.eval()
    except Exception as e:  # a config or weights that do not fit each other fail in many ways
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise InputError(f"could not load {path} as a {spec.name} model: {first}") from None
    head, body = _new_weights(model, info)
    if body:
        raise InputError(
            f"{path} lacks weights for {len(body)} tensor(s) of the model itself ({', '.join(body[:4])}"
            f"{', ...' if len(body) > 4 else ''}): they would be random; the checkpoint is incomplete"
        )
    if head and not allow_new_head:
        from edgeinfer.exporters.tasks import head_of

        try:
            trained = f"export the task the checkpoint was trained for ({option('task', infer_task(arch).name)})"
        except UnsupportedError:  # a head no task exports: say which
            trained = f"the checkpoint was trained for {head_of(arch)}, which edgeinfer does not export yet"
        raise InputError(
            f"{path} has no weights for the {spec.name} head ({', '.join(head[:4])}{', ...' if len(head) > 4 else ''}): "
            f"it would be initialised at random and validation could not tell; {trained}, or pass "
            f"{option('allow_new_head', True)} for a random head to fine-tune elsewhere"
        )
    if head:
        log.warning(f"the {spec.name} head of {path.name} is initialised at random ({', '.join(head[:4])})")
    return model, config, arch, spec, head


def load_hf_dir(
    path: Path,
    task: str | None,
    batch: tuple[int, int] = (2, 4),
    allow_new_head: bool = False,
    options: InputOptions = InputOptions(),
) -> SourceModel:
    """A Hugging Face folder loaded with the head of `task` (load_pretrained), as an export source."""
    from edgeinfer.exporters.architectures import architecture_for

    model, config, arch, spec, head = load_pretrained(path, task, allow_new_head)
    if spec.prepare is not None:
        spec.prepare(model)
    inputs = spec.inputs(model, config, path, batch, options)
    outputs = list(spec.outputs)
    description = {
        "kind": "huggingface",
        "path": str(path.resolve()),
        "architecture": arch,
        "model_type": config.get("model_type"),
        "task": spec.name,
        "declared": architecture_for(config) is not None,
    }
    if head:
        description["new_head"] = head  # random weights, exported on request
    return SourceModel(
        _named_outputs(model, inputs.names, outputs),
        inputs.names,
        outputs,
        inputs.example,
        inputs.second,
        inputs.dynamic_axes,
        description,
        spec.name,
        tokenizer_dir=inputs.tokenizer_dir,
        meta={"head": inputs.head} if inputs.head else {},
        output_axes=inputs.output_axes,
    )


def import_factory(spec: str):
    """The callable named by `package.module:function` or `path/file.py:function` (runs its module)."""
    from edgeinfer.core.factory import import_callable

    return import_callable(spec)


def _second_inputs(example: dict[str, Any], axes: dict[str, dict[int, str]] | None = None) -> dict[str, Any]:
    """Another input set built from the example: every dynamic axis one longer (axis 0 alone when no
    axes are declared), the same length for every input sharing a dimension name; masks padded at
    the end of the last row."""
    import torch

    gen = torch.Generator().manual_seed(1)
    second = {}
    for name, t in example.items():
        dynamic = (axes or {}).get(name) if axes is not None else {0: "batch"}
        grow = {int(a) for a in (dynamic or {}) if int(a) < t.dim()}
        shape = tuple(n + 1 if i in grow else n for i, n in enumerate(t.shape))
        if t.is_floating_point():
            std = float(t.float().std()) if t.numel() > 1 else 1.0
            second[name] = (torch.randn(shape, generator=gen) * (std or 1.0) + float(t.float().mean())).to(t.dtype)
        elif "mask" in name:
            mask = torch.ones(shape, dtype=t.dtype)
            if mask.dim() >= 2 and mask.shape[1] > 1:
                mask[-1, mask.shape[1] // 2 :] = 0  # a padded row
            second[name] = mask
        else:
            hi = int(t.max()) + 1 if t.numel() else 2
            lo = int(t.min()) if t.numel() else 0
            second[name] = torch.randint(lo, max(hi, lo + 1), shape, generator=gen, dtype=t.dtype)
    return second


def load_factory(spec: str) -> SourceModel:
    """Call `package.module:function`; it returns (module, inputs) or (module, inputs, dynamic_axes).

    `inputs` is a dict name -> tensor, or a tuple / list of tensors passed positionally (named after
    forward's parameters); `dynamic_axes` maps an input name (or, for positional inputs, its index)
    to {axis: dim name}. Without it, axis 0 of every input is the dynamic batch axis.
    """
    module, inputs, axes = call_factory(spec)
    return source_from_module(
        module, inputs, axes, {"kind": "factory", "factory": spec, "class": type(module).__name__}
    )


def call_factory(spec: str):
    """(module, inputs, dynamic_axes) from `package.module:function`, checked."""
    import torch

    result = import_factory(spec)()
    if not isinstance(result, tuple) or len(result) not in (2, 3):
        raise InputError(f"factory {spec} must return (module, inputs) or (module, inputs, dynamic_axes)")
    module, inputs = result[0], result[1]
    if not isinstance(module, torch.nn.Module) or not isinstance(inputs, (dict, tuple, list)) or not inputs:
        raise InputError(
            f"factory {spec} must return a torch.nn.Module and its example inputs: a dict of named tensors "
            "or a tuple of tensors"
        )
    values = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
    if not all(isinstance(t, torch.Tensor) for t in values):
        raise InputError(f"factory {spec}: every example input must be a torch.Tensor")
    if not isinstance(inputs, dict) or not takes_keywords(module, list(inputs)):
        names = _positional_names(module, len(values), spec)
        if not isinstance(inputs, dict):
            inputs = dict(zip(names, values))
    given = result[2] if len(result) == 3 else {n: {0: "batch"} for n in inputs}
    keys = list(inputs)
    axes: dict[str, dict[int, str]] = {
        keys[k] if isinstance(k, int) and 0 <= k < len(keys) else str(k): v for k, v in dict(given).items()
    }
    return module, inputs, axes


def _positional_names(module, n: int, spec: str) -> list[str]:
    """The names forward gives its first `n` positional parameters; wrong arity is refused, saying
    what forward takes."""
    import inspect

    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return [f"input_{i}" for i in range(n)]
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in params if p.kind in kinds]
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    varargs = next((p for p in params if p.kind is inspect.Parameter.VAR_POSITIONAL), None)
    if n < len(required) or (varargs is None and n > len(positional)):
        takes = ", ".join(p.name for p in positional) + (f", *{varargs.name}" if varargs else "")
        raise InputError(
            f"factory {spec} gives {n} example input(s) but {type(module).__name__}.forward takes "
            f"{len(required)}{'' if len(required) == len(positional) else f' to {len(positional)}'} ({takes})"
        )
    names = [p.name for p in positional[:n]]
    return names + [f"{varargs.name}_{i}" for i in range(n - len(names))] if varargs else names


def source_from_module(
    module, inputs: dict[str, Any], axes: dict[str, dict[int, str]], description: dict[str, Any]
) -> SourceModel:
    """An in-memory module (a factory's, or one pruning / QAT just produced) as an export source."""
    import torch

    names = list(inputs)
    module.eval()
    try:
        with torch.no_grad():
            out = call_module(module, inputs)
    except Exception as e:
        raise fails_in_pytorch(e) from e
    n_out = 1 if isinstance(out, torch.Tensor) else len(out)
    out_names = ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
    keys = out_names
    if not isinstance(out, (torch.Tensor, tuple, list)):
        keys = list(out.keys())
        # An ONNX graph cannot have an output named like an input (a UNet: `sample` in, `sample`
        # out): such an output is exported as `NAME_out`.
        out_names = [f"{k}_out" if k in names else k for k in keys]
    wrapped = _named_outputs(module, names, keys)
    second = _second_inputs(inputs, axes)
    return SourceModel(wrapped, names, out_names, dict(inputs), second, axes, description, checked_in_pytorch=True)


class _PickledCode(Exception):
    """A .pt2 payload that only a full (code-running) unpickler could read."""


@contextlib.contextmanager
def _tensors_only():
    """torch.export.load falls back to full unpickling (which runs code) for several payloads; here
    every torch.load is weights_only and every other unpickling path refuses."""
    import pickle

    import torch

    real = torch.load, pickle.loads, torch._C._pickle_load_obj

    def weights_only_load(*args, **kwargs):
        kwargs["weights_only"] = True
        return real[0](*args, **kwargs)

    def refuse(*args, **kwargs):
        raise _PickledCode("a pickled Python object")

    torch.load, pickle.loads, torch._C._pickle_load_obj = weights_only_load, refuse, refuse
    try:
        yield
    finally:
        torch.load, pickle.loads, torch._C._pickle_load_obj = real


def load_pt2(path: Path, trust_source: bool = False) -> SourceModel:
    import pickle

    import torch

    guard = contextlib.nullcontext() if trust_source else _tensors_only()
    try:
        with guard:
            program = torch.export.load(str(path))
    except (_PickledCode, pickle.UnpicklingError) as e:
        raise ConfigError(
            f"{path} holds pickled Python objects, which can run code when loaded ({str(e).splitlines()[0][:120]}); "
            "edgeinfer loads .pt2 files as tensors only. If you trust this file, pass " + option("trust_source", True)
        ) from None
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise InputError(f"{path} is not a loadable torch.export .pt2 file: {first}") from None
    args, kwargs = program.example_inputs or ((), {})
    if kwargs or not args:
        raise InputError(f"{path} stores no positional example inputs; save it with torch.export.export(model, args)")
    module = program.module()
    sig = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    names = sig if len(sig) == len(args) else [f"input_{i}" for i in range(len(args))]
    example = dict(zip(names, args))

    class Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.program = module

        def forward(self, *inputs):
            out = self.program(*inputs)
            return (out,) if isinstance(out, torch.Tensor) else tuple(out)

        def train(self, mode: bool = True):
            return self  # an exported program is already in inference form and refuses train()

    wrapped = Positional()
    with torch.no_grad():
        n_out = len(wrapped(*args))
    out_names = ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
    # The program fixed which axes are dynamic when it was exported; read them off its graph.
    axes: dict[str, dict[int, str]] = {}
    placeholders = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in names]
    for node in placeholders:
        val = node.meta.get("val")
        if val is not None:
            dyn = {i: f"{node.name}_dim{i}" for i, d in enumerate(val.shape) if not isinstance(d, int)}
            if dyn:
                axes[node.name] = dyn
    second = {n: t for n, t in example.items()}
    if axes:
        second = _second_inputs(example, axes)
    description = {"kind": "pt2", "path": str(Path(path).resolve())}
    return SourceModel(wrapped, names, out_names, example, second, axes, description)


def load_source(
    source: str,
    task: str | None = None,
    trust_source: bool = False,
    allow_new_head: bool = False,
    options: InputOptions = InputOptions(),
) -> SourceModel:
    """The model behind an `export` SOURCE. A factory runs the user's code; a .pt2 holding pickled
    objects is refused unless `trust_source`; a model folder is read as data only."""
    from edgeinfer.core.factory import is_factory_spec

    path = Path(source)
    if path.suffix == ".pt2":
        if not path.is_file():
            raise InputError(f"source {path} does not exist")
        return load_pt2(path, trust_source)
    if path.is_dir():
        return load_hf_dir(path, task, allow_new_head=allow_new_head, options=options)
    if is_factory_spec(source):
        return load_factory(source)
    if path.exists():
        raise UnsupportedError(
            f"source {path} is a file edgeinfer cannot export; give a Hugging Face model "
            "directory, a .pt2 file from torch.export, or package.module:function"
        )
    raise InputError(f"source {source} does not exist (expected a directory, a .pt2 file or package.module:function)")
