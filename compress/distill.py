"""Knowledge distillation: a student learns the teacher's softened outputs (and, optionally, its
intermediate features through a learned projection), for classifiers and Hugging Face encoders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from edgeinfer.compress.training import logits as _logits
from edgeinfer.core.config import PassConfig
from edgeinfer.core.errors import ConfigError, InputError
from edgeinfer.core.progress import QUIET, Progress


@dataclass(frozen=True)
class DistillConfig(PassConfig):
    """How a student learns from its teacher.

    Args:
        temperature: softens both distributions before the KL loss.
        alpha: weight of the soft (teacher) loss; 1 - alpha goes to the labels.
        features: (teacher module, student module) pairs whose outputs are matched with MSE.
        feature_weight: weight of that feature loss.
    """

    temperature: float = 4.0
    alpha: float = 0.7
    features: tuple[tuple[str, str], ...] = ()
    feature_weight: float = 1.0

    what: ClassVar[str] = "distillation config"

    def check(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be positive, got {self.temperature}")
        if self.feature_weight < 0:
            raise ConfigError(f"feature_weight must not be negative, got {self.feature_weight}")


class _Features:
    """Forward hooks that keep the last output of named modules."""

    def __init__(self, model, names: list[str]) -> None:
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ConfigError(
                f"no module named {', '.join(missing)}; it has {', '.join(n for n in list(modules)[1:12] if n)}..."
            )
        self.values: dict[str, Any] = {}
        self.handles = [modules[n].register_forward_hook(self._keep(n)) for n in names]

    def _keep(self, name: str):
        def hook(module, inputs, output):
            self.values[name] = _logits(output)

        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _projection(student_feat, teacher_feat):
    """A learned map from the student's feature width to the teacher's (1x1 conv for images)."""
    import torch.nn as nn

    if student_feat.dim() == 4:
        return nn.Conv2d(student_feat.shape[1], teacher_feat.shape[1], 1, bias=False)
    return nn.Linear(student_feat.shape[-1], teacher_feat.shape[-1], bias=False)


def make_loss(teacher, student, example, cfg: DistillConfig):
    """Returns (loss_fn(student, x, y), extra trainable params, cleanup). Checks the two agree first."""
    import torch
    import torch.nn.functional as F

    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    t_hooks = _Features(teacher, [t for t, _ in cfg.features])
    s_hooks = _Features(student, [s for _, s in cfg.features])
    with torch.no_grad():
        t_out, s_out = _logits(teacher(example)), _logits(student(example))
    if t_out.shape != s_out.shape:
        t_hooks.close()
        s_hooks.close()
        raise InputError(
            f"the student's outputs {list(s_out.shape)} do not match the teacher's {list(t_out.shape)}; "
            "a student must predict the same classes"
        )
    projections = torch.nn.ModuleList()
    for t_name, s_name in cfg.features:
        t_f, s_f = t_hooks.values[t_name], s_hooks.values[s_name]
        if t_f.dim() != s_f.dim() or (t_f.dim() == 4 and t_f.shape[2:] != s_f.shape[2:]):
            raise InputError(f"features {t_name} {list(t_f.shape)} and {s_name} {list(s_f.shape)} cannot be matched")
        projections.append(_projection(s_f, t_f))
    T, alpha = cfg.temperature, cfg.alpha

    def loss_fn(model, x, y):
        with torch.no_grad():
            t = _logits(teacher(x))
        s = _logits(model(x))
        soft = (
            F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True, reduction="batchmean") * T * T
        )
        loss = alpha * soft + (1 - alpha) * F.cross_entropy(s, y)
        for proj, (t_name, s_name) in zip(projections, cfg.features):
            loss = loss + cfg.feature_weight * F.mse_loss(proj(s_hooks.values[s_name]), t_hooks.values[t_name])
        return loss

    def cleanup() -> None:
        t_hooks.close()
        s_hooks.close()

    return loss_fn, list(projections.parameters()), cleanup


# -- Hugging Face encoders -------------------------------------------------------------------


def smaller_encoder(teacher, layers: int):
    """A student of the teacher's family with `layers` layers, each initialized from an evenly
    spaced teacher layer (embeddings and pooler copied)."""
    import copy

    n = teacher.config.num_hidden_layers
    if not 0 < layers < n:
        raise ConfigError(f"the student needs between 1 and {n - 1} layers (the teacher has {n}), got {layers}")
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = layers
    student = type(teacher)(config)
    picks = [round(i * (n - 1) / max(layers - 1, 1)) for i in range(layers)] if layers > 1 else [n - 1]
    t_state = teacher.state_dict()
    s_state = student.state_dict()
    for key in s_state:
        src = key
        for i, j in enumerate(picks):
            for prefix in ("encoder.layer.", "layers."):
                if f"{prefix}{i}." in key:
                    src = key.replace(f"{prefix}{i}.", f"{prefix}{j}.")
                    break
            if src != key:
                break
        if src in t_state and t_state[src].shape == s_state[key].shape:
            s_state[key] = t_state[src].clone()
    student.load_state_dict(s_state)
    return student, picks


def mean_pool(hidden, mask):
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def distill_encoder(
    teacher_dir,
    out_dir,
    *,
    layers: int,
    sentences: list[str],
    epochs: int = 8,
    lr: float = 1e-4,
    batch: int = 16,
    seed: int = 0,
    progress: Progress = QUIET,
) -> dict[str, Any]:
    """Distil a Hugging Face encoder into one with `layers` layers on `sentences`: the student's
    mean-pooled embeddings learn the teacher's (cosine + MSE). Saves the student to `out_dir`."""
    import torch
    import transformers

    from edgeinfer.compress.training import seed_everything

    if len(sentences) < batch:
        raise InputError(f"distillation needs at least {batch} sentences, got {len(sentences)}")
    seed_everything(seed)
    from edgeinfer.core.hf_folder import load_tokenizer

    tokenizer = load_tokenizer(teacher_dir)
    teacher = transformers.AutoModel.from_pretrained(
        str(teacher_dir), use_safetensors=True, local_files_only=True, trust_remote_code=False
    ).eval()
    student, picks = smaller_encoder(teacher, layers)
    enc = tokenizer(sentences, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        target = mean_pool(teacher(**enc).last_hidden_state, enc["attention_mask"])
    opt = torch.optim.AdamW(student.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        student.train()
        order = torch.randperm(len(sentences), generator=gen)
        total = 0.0
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            batch_enc = {k: v[idx] for k, v in enc.items()}
            emb = mean_pool(student(**batch_enc).last_hidden_state, batch_enc["attention_mask"])
            loss = (1 - torch.nn.functional.cosine_similarity(emb, target[idx]).mean()) + torch.nn.functional.mse_loss(
                emb, target[idx]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        student.eval()
        with torch.no_grad():
            emb = mean_pool(student(**enc).last_hidden_state, enc["attention_mask"])
            cos = float(torch.nn.functional.cosine_similarity(emb, target).mean())
        history.append({"epoch": epoch + 1, "loss": total / len(order), "mean_cosine": cos})
        progress.epoch(history[-1])
    student.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return {
        "teacher_layers": teacher.config.num_hidden_layers,
        "student_layers": layers,
        "init_from_layers": picks,
        "history": history,
        "teacher_params": sum(p.numel() for p in teacher.parameters()),
        "student_params": sum(p.numel() for p in student.parameters()),
    }
