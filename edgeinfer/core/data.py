"""Input data for calibration and evaluation: .npz files, folders of them, text, or a factory.

Everything becomes a list of batches (dicts of arrays named like the model's inputs) plus,
when the data carries them, the labels for each batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeinfer.core.errors import InputError
from edgeinfer.core.factory import is_factory_spec
from edgeinfer.core.formats import load_npz, read_text_file

LABEL_KEYS = ("labels", "label", "y")


@dataclass
class Batches:
    batches: list[dict[str, np.ndarray]]
    labels: np.ndarray | None = None
    attention_masks: list[np.ndarray] | None = None  # for pooling text embeddings
    shared: tuple[str, ...] = ()  # inputs every batch takes whole (a dual encoder's label texts)

    @property
    def samples(self) -> int:
        return sum(next(v for k, v in b.items() if k not in self.shared).shape[0] for b in self.batches)


def _fixed(dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


SHARED_AXIS = "labels"  # the batch axis of a zero-shot export's label texts (exporters/tasks)


def load_batches(
    spec: str, inputs, batch_size: int = 8, tokenizer: str | None = None, limit: int | None = None
) -> Batches:
    """Read `spec` into batches for a model whose ONNX inputs are `inputs` (name, type, shape)."""
    names = [i.name for i in inputs]
    # A dual encoder (CLIP) gives its label texts their own batch axis, named "labels" by the export:
    # they are not samples; every batch of images is scored against all of them.
    shared = tuple(i.name for i in inputs if i.shape and i.shape[0] == SHARED_AXIS)
    sampled = [i for i in inputs if i.name not in shared] or list(inputs)
    fixed_batch = _fixed(sampled[0].shape[0]) if sampled and sampled[0].shape else None
    batch = fixed_batch or batch_size
    path = Path(spec)
    if path.suffix == ".txt":
        return _text_batches(path, inputs, batch, tokenizer, limit)
    if path.is_dir():
        files = sorted(path.glob("*.npz"))
        if not files:
            raise InputError(f"{path} holds no .npz files")
    elif path.suffix == ".npz":
        if not path.is_file():
            raise InputError(f"data file {path} does not exist")
        files = [path]
    elif is_factory_spec(spec):
        return _factory_batches(spec, names, limit)
    else:
        raise InputError(
            f"data {spec} must be an .npz, a folder of .npz files, a .txt of sentences or package.module:function"
        )
    arrays: dict[str, list[np.ndarray]] = {}
    for f in files:
        for k, v in load_npz(f).items():
            arrays.setdefault(k, []).append(v)
    try:
        merged = {k: np.concatenate(v) for k, v in arrays.items()}
    except ValueError as e:
        raise InputError(f"data {spec}: the files' arrays do not fit together ({str(e).splitlines()[0]})") from None
    missing = [n for n in names if n not in merged]
    if missing:
        raise InputError(
            f"data {spec} has arrays {', '.join(sorted(merged))} but the model needs "
            f"{', '.join(names)} (missing {', '.join(missing)})"
        )
    labels = next((merged[k] for k in LABEL_KEYS if k in merged), None)
    feeds = {n: merged[n] for n in names}
    for name, arr in feeds.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise InputError(
                f"data {spec}: {name} holds {int((~np.isfinite(arr)).sum())} NaN or infinite values; "
                "a comparison on them means nothing (clean the data)"
            )
    counts = {v.shape[0] for k, v in feeds.items() if k not in shared}
    counts |= {labels.shape[0]} if labels is not None else set()
    if len(counts) != 1:
        raise InputError(f"data {spec}: arrays disagree on the number of samples ({sorted(counts)})")
    n = counts.pop()
    if limit:
        n = min(n, limit)
    if n == 0:
        raise InputError(f"data {spec} is empty")
    for spec_in in inputs:
        arr = feeds[spec_in.name]
        want = [d if isinstance(d, int) else None for d in spec_in.shape[1:]]
        if arr.ndim != len(spec_in.shape) or any(w is not None and w != a for w, a in zip(want, arr.shape[1:])):
            raise InputError(
                f"data {spec}: {spec_in.name} samples have shape {list(arr.shape[1:])}, the model "
                f"expects {list(spec_in.shape[1:])}"
            )
    usable = (n // batch) * batch if fixed_batch else n
    if usable == 0:
        raise InputError(f"data {spec} has {n} samples, fewer than the model's fixed batch of {batch}")
    feeds = {k: v if k in shared else v[:usable] for k, v in feeds.items()}
    out = [{k: v if k in shared else v[i : i + batch] for k, v in feeds.items()} for i in range(0, usable, batch)]
    return Batches(out, labels[:usable] if labels is not None else None, shared=shared)


def _text_batches(path: Path, inputs, batch: int, tokenizer: str | None, limit: int | None) -> Batches:
    if not path.is_file():
        raise InputError(f"text file {path} does not exist")
    if not tokenizer:
        raise InputError(
            f"{path} is text, but the model's sidecar names no tokenizer; pass an .npz of token ids "
            "or export the model from its Hugging Face folder"
        )
    lines = [line.strip() for line in read_text_file(path).splitlines() if line.strip()]
    if limit:
        lines = lines[:limit]
    if not lines:
        raise InputError(f"{path} has no sentences")
    from edgeinfer.core.hf_folder import load_tokenizer

    tok = load_tokenizer(tokenizer)
    seq = _fixed(inputs[0].shape[1]) if len(inputs[0].shape) > 1 else None
    names = [i.name for i in inputs]
    out, masks = [], []
    usable = (len(lines) // batch) * batch if _fixed(inputs[0].shape[0]) else len(lines)
    for i in range(0, usable, batch):
        chunk = lines[i : i + batch]
        enc = tok(
            chunk, padding="max_length" if seq else True, truncation=True, max_length=seq or 256, return_tensors="np"
        )
        missing = [n for n in names if n not in enc]
        if missing:
            raise InputError(f"the tokenizer gives {', '.join(enc)} but the model needs {', '.join(names)}")
        out.append({n: enc[n].astype(np.int64) for n in names})
        masks.append(enc["attention_mask"] if "attention_mask" in enc else np.ones_like(enc["input_ids"]))
    return Batches(out, None, masks)


def _factory_batches(spec: str, names: list[str], limit: int | None) -> Batches:
    from edgeinfer.core.factory import import_callable

    fn = import_callable(spec, "data factory")
    out, labels = [], []
    for item in fn():
        if not isinstance(item, dict):
            raise InputError(f"data factory {spec} must yield dicts of arrays named like the model's inputs")
        item = {k: np.asarray(v) for k, v in item.items()}
        lab = next((item.pop(k) for k in LABEL_KEYS if k in item), None)
        if lab is not None:
            labels.append(lab)
        out.append({n: item[n] for n in names if n in item})
        if limit and len(out) >= limit:
            break
    if not out:
        raise InputError(f"data factory {spec} yielded nothing")
    return Batches(out, np.concatenate(labels) if labels and len(labels) == len(out) else None)
