"""Start a run from trained weights: copy what matches, say what did not (``train.init``).

    trainer = build_from_spec(spec)                 # its own spec and data
    report = init_from(trainer, "runs/00003-...")   # then SOURCE's matching tensors
    trainer.fit()

G, G_ema and D's trainable heads take every tensor of SOURCE (see
:mod:`~projected_gan.training.init_source`) whose name and shape match; the rest stays at its
initialisation, and the report says which and why (``missing`` from SOURCE, ``other shape``).
Counters, optimiser state, RNG, data order and the EMA ramp are the new run's own: nothing of
SOURCE's spec changes the new spec.

D's heads judged features passed through SOURCE's fixed random projection, so they copy only
onto the same features: when the feature network is the same (same part config where both
record one, and identical weights where SOURCE stores them), the projection head's fixed
tensors come from SOURCE too, whatever the new run's ``train.seed``; otherwise the heads start
fresh and the report gives the reason. The pretrained feature network itself is never copied:
it comes from the package's weights as the new spec says.

A start that copies no tensor at all into G (another generator family, say), or from a SOURCE
that makes images of another aspect or channel count, is refused with an
:class:`~projected_gan.training.init_source.InitError` unless ``partial=True``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from projected_gan._version import __version__
from projected_gan.configs import part_config
from projected_gan.sizes import as_size, size_text
from projected_gan.spec import ExperimentSpec
from projected_gan.training.init_source import InitError, InitSource, read_init_source

__all__ = ["InitReport", "ModuleReport", "init_from", "plan_init", "read_spec_source"]

State = Mapping[str, torch.Tensor]


@dataclass
class ModuleReport:
    """What one module (G, G_ema or D's heads) took from SOURCE, by tensor name.

    ``copied``: took SOURCE's tensor. ``missing``: SOURCE has no tensor of that name.
    ``other_shape``: ``{"name", "source", "run"}`` with both shapes. ``fresh``: left at
    initialisation although SOURCE has a tensor of that name, for ``reason`` (D's heads on
    another feature network or projection). ``projection``: D only, the fixed projection
    tensors taken from SOURCE along with the heads. ``total``: tensors of the module.
    """

    total: int = 0
    copied: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    other_shape: list[dict[str, Any]] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    reason: str | None = None
    projection: list[str] = field(default_factory=list)

    @property
    def left(self) -> list[str]:
        """Every tensor left at initialisation, whatever the reason."""
        return [*self.missing, *(o["name"] for o in self.other_shape), *self.fresh]

    def to_record(self) -> dict[str, Any]:
        return {
            "copied": len(self.copied),
            "total": self.total,
            "missing": list(self.missing),
            "other_shape": list(self.other_shape),
            "fresh": list(self.fresh),
            "reason": self.reason,
            "projection_copied": len(self.projection),
        }


@dataclass
class InitReport:
    """Where a run's starting weights came from and what each module took (``init.json``)."""

    source: InitSource
    modules: dict[str, ModuleReport]
    partial: bool = False

    def to_record(self) -> dict[str, Any]:
        """Plain JSON: written to the run's ``init.json`` and into every checkpoint."""
        return {
            **self.source.record(),
            "partial": self.partial,
            "library_version": __version__,
            "modules": {name: rep.to_record() for name, rep in self.modules.items()},
        }

    def summary(self) -> str:
        """The one log line: source, hash, counts, and what was left at initialisation."""
        s = self.source
        parts = []
        for name, rep in self.modules.items():
            label = "D heads" if name == "D" else name
            text = f"{label} {len(rep.copied)}/{rep.total}"
            if rep.projection:
                text += f" (+{len(rep.projection)} projection)"
            why = []
            if rep.missing:
                why.append(f"{len(rep.missing)} not in SOURCE ({_blocks(rep.missing)})")
            if rep.other_shape:
                names = [o["name"] for o in rep.other_shape]
                why.append(f"{len(names)} other shape ({_blocks(names)})")
            if rep.fresh:
                why.append(f"{len(rep.fresh)} fresh: {rep.reason}")
            parts.append(text + (f" [left at init: {'; '.join(why)}]" if why else ""))
        return (
            f"init from {s.file} (sha256 {s.sha256[:12]}, {s.kind}): tensors copied: "
            + ", ".join(parts)
        )


def _blocks(names: list[str], limit: int = 4) -> str:
    """The modules the tensor ``names`` belong to, shortened (``up.64``, ``discs.0``)."""
    seen: list[str] = []
    for name in names:
        # the owning module's path (a spectral-norm weight lives under .parametrizations.)
        path = name.split(".parametrizations.")[0] if ".parametrizations." in name else name
        parts = path.split(".")[:-1] if path == name else path.split(".")
        parts = parts or [name]
        # up to the first index (a block of a ModuleList/Dict) within three levels, else two
        cut = next((k + 1 for k, p in enumerate(parts[:3]) if p.isdigit()), 2)
        block = ".".join(parts[:cut])
        if block not in seen:
            seen.append(block)
    more = f", +{len(seen) - limit} more" if len(seen) > limit else ""
    return ", ".join(seen[:limit]) + more


# ------------------------------------------------------------------------------ matching
def _match(own: State, theirs: State, report: ModuleReport, copies: list) -> None:
    """Copy plan by name and shape: ``copies`` gets ``(own tensor, SOURCE tensor)`` pairs."""
    for name, tensor in own.items():
        src = theirs.get(name)
        if src is None:
            report.missing.append(name)
        elif tuple(src.shape) != tuple(tensor.shape):
            report.other_shape.append(
                {"name": name, "source": list(src.shape), "run": list(tensor.shape)}
            )
        else:
            report.copied.append(name)
            copies.append((tensor, src))


def _layout(D: nn.Module) -> dict[str, str]:
    """Where D keeps each feature network's parts, from D's own structure: the module paths
    (without a list index) of ``D.projectors`` and ``D.discriminators`` (the trainable heads),
    and of each projector's ``feature_network`` and projection ``head`` inside it."""
    names = {id(m): name for name, m in D.named_modules()}
    several = len(D.projectors) > 1
    proj, heads = D.projectors[0], D.discriminators[0]

    def holder(module: nn.Module) -> str:  # the attribute (a ModuleList with several networks)
        return names[id(module)].rpartition(".")[0] if several else names[id(module)]

    inside = len(names[id(proj)]) + 1
    return {
        "projector": holder(proj),
        "heads": holder(heads),
        "features": names[id(proj.feature_network)][inside:],
        "projection": names[id(proj.head)][inside:],
    }


def _count(state: State, layout: dict[str, str]) -> int:
    """Feature networks of a D state laid out as ``layout``: one, or the entries of its list."""
    at = layout["heads"] + "."
    indices = [key[len(at) :].split(".")[0] for key in state if key.startswith(at)]
    numbered = [int(i) for i in indices if i.isdigit()]
    return 1 + max(numbered) if numbered and any(k.startswith(at + "0.") for k in state) else 1


def _networks(state: State, layout: dict[str, str], count: int) -> list[dict[str, Any]]:
    """A D state dict split per feature network into ``features``, ``projection`` and
    ``heads`` (names relative to each group; the full prefixes under ``prefix``)."""
    groups = []
    for i in range(count):
        index = f".{i}" if count > 1 else ""
        p = layout["projector"] + index + "."
        prefix = {
            "features": p + layout["features"] + ".",
            "projection": p + layout["projection"] + ".",
            "heads": layout["heads"] + index + ".",
        }
        group: dict[str, Any] = {
            part: {k[len(at) :]: v for k, v in state.items() if k.startswith(at)}
            for part, at in prefix.items()
        }
        group["prefix"] = prefix
        groups.append(group)
    return groups


def _same_features(
    run: dict, src: dict, run_form: dict | None, src_form: dict | None
) -> str | None:
    """None when SOURCE's network provably gives this run's features, else the reason."""
    checked = False
    if run_form is not None and src_form is not None:
        checked = True
        if src["features"]:  # the weights are compared below: where they came from may differ
            run_form = {k: v for k, v in run_form.items() if k != "weights"}
            src_form = {k: v for k, v in src_form.items() if k != "weights"}
        if run_form != src_form:
            diff = [
                f"{k} {src_form.get(k)!r} vs {run_form.get(k)!r}"
                for k in sorted(set(run_form) | set(src_form), key=str)
                if run_form.get(k) != src_form.get(k)
            ]
            return f"another feature network (SOURCE vs this run: {', '.join(diff)})"
    if src["features"]:
        checked = True
        mine, theirs = run["features"], src["features"]
        same = set(mine) == set(theirs) and all(
            mine[k].shape == theirs[k].shape and torch.equal(mine[k], theirs[k].to(mine[k].device))
            for k in mine
        )
        if not same:
            return "the feature network's weights differ from SOURCE's"
    if not checked:
        return "SOURCE does not say which feature network its heads were trained on"
    return None


def _same_projection(run: dict, src: dict) -> bool:
    mine, theirs = run["projection"], src["projection"]
    return set(mine) == set(theirs) and all(mine[k].shape == theirs[k].shape for k in mine)


def _plan_d(
    D: nn.Module, src_state: State | None, src_forms: list | None, no_d: str | None
) -> tuple[ModuleReport, list[tuple[torch.Tensor, torch.Tensor]]]:
    """D's heads (and projection) plan, by D's structure: the report and the copies."""
    if not (hasattr(D, "projectors") and hasattr(D, "discriminators")):
        return ModuleReport(reason="D has no projectors and heads to copy into"), []
    layout = _layout(D)
    run_groups = _networks(D.state_dict(), layout, len(D.projectors))
    report = ModuleReport(total=sum(len(g["heads"]) for g in run_groups))
    copies: list = []
    if src_state is None:
        report.fresh = [g["prefix"]["heads"] + k for g in run_groups for k in g["heads"]]
        report.reason = no_d or "SOURCE has no discriminator"
        return report, copies
    src_groups = _networks(src_state, layout, _count(src_state, layout))
    run_forms = _feature_network_forms(D)
    if run_forms is not None and len(run_forms) != len(run_groups):
        run_forms = None
    if src_forms is not None and len(src_forms) != len(src_groups):
        src_forms = None
    reasons = []
    for i, run in enumerate(run_groups):
        order = [i] + [j for j in range(len(src_groups)) if j != i]
        found, why = None, None
        for j in (j for j in order if j < len(src_groups)):
            problem = _same_features(
                run,
                src_groups[j],
                None if run_forms is None else run_forms[i],
                None if src_forms is None else src_forms[j],
            )
            if problem is None and not _same_projection(run, src_groups[j]):
                problem = "another projection head (its tensors' names or shapes differ)"
            if problem is None:
                found = src_groups[j]
                break
            why = why or problem
        heads = {run["prefix"]["heads"] + k: v for k, v in run["heads"].items()}
        if found is None:
            report.fresh += list(heads)
            reasons.append(why if len(run_groups) == 1 else f"network {i}: {why}")
            continue
        theirs = {run["prefix"]["heads"] + k: v for k, v in found["heads"].items()}
        before = len(copies)
        _match(heads, theirs, report, copies)
        if len(copies) > before:  # heads copied: they need SOURCE's projection too
            for k, v in run["projection"].items():
                report.projection.append(run["prefix"]["projection"] + k)
                copies.append((v, found["projection"][k]))
    report.reason = "; ".join(reasons) or None
    return report, copies


def _feature_network_forms(D: nn.Module) -> list[dict[str, Any]] | None:
    """Spec forms of ``D``'s feature network(s), in order; None when D cannot describe them."""
    config = part_config(D)
    nets = None if config is None else config["kwargs"].get("feature_network")
    if nets is None:
        return None
    return nets if isinstance(nets, list) else [nets]


def plan_init(
    modules: Mapping[str, nn.Module], source: InitSource
) -> tuple[dict[str, ModuleReport], list[tuple[torch.Tensor, torch.Tensor]]]:
    """What ``modules`` (``G``, ``G_ema``, ``D``) would take from ``source``: per-module reports
    and the ``(own tensor, SOURCE tensor)`` copies. Changes nothing."""
    reports: dict[str, ModuleReport] = {}
    copies: list[tuple[torch.Tensor, torch.Tensor]] = []
    for name in ("G", "G_ema"):
        own = modules[name].state_dict()
        theirs = source.models.get(name) or source.models.get("G_ema") or source.models["G"]
        reports[name] = ModuleReport(total=len(own))
        _match(own, theirs, reports[name], copies)
    reports["D"], d_copies = _plan_d(
        modules["D"], source.models.get("D"), source.feature_networks, source.no_discriminator
    )
    copies += d_copies
    return reports, copies


# ------------------------------------------------------------------------------ applying
def init_from(
    trainer: Any,
    source: str | Path | InitSource,
    *,
    checkpoint: str = "latest",
    partial: bool = False,
    verbose: bool = True,
) -> InitReport:
    """Start ``trainer`` (built, not yet trained) from the trained weights at ``source``.

    Works for a trainer of :func:`~projected_gan.build_from_spec` (which calls it for
    ``train.init``) and for a hand-built ``Trainer(G, D, ...)`` alike: G, G_ema and D's heads
    take every tensor of SOURCE whose name and shape match (D's heads, with SOURCE's fixed
    projection, only on the same feature network). The report is kept in ``init.json`` in the
    run folder and in every checkpoint (``trainer.init_record``), so a resumed run still says
    where it started from; resuming never applies this again.

    Args:
        trainer: a :class:`~projected_gan.training.trainer.Trainer` that has not trained yet.
        source: a run folder, checkpoint file, export folder or official ``.pkl`` (or an
            :class:`InitSource` already read).
        checkpoint: for a run folder, ``"latest"`` (newest usable) or ``"best"``.
        partial: start even when no tensor of G matches, or SOURCE makes images of another
            aspect or channel count (otherwise :class:`InitError`).
        verbose: print the one-line summary (rank 0).

    Returns:
        :class:`InitReport`: per module, the tensors copied and those left at initialisation
        (missing from SOURCE, another shape, or fresh with the reason).
    """
    if trainer.counters.nimg or trainer.counters.step:
        raise InitError(
            f"init_from starts a run, but this trainer has already trained on "
            f"{trainer.counters.nimg} images; build a new one (resuming a run is Trainer.resume)",
            field="train.init",
        )
    src = source if isinstance(source, InitSource) else read_init_source(source, checkpoint)
    if not partial:
        _check_image_shape(trainer.G, src)
    modules = {"G": trainer.G, "G_ema": trainer.G_ema, "D": trainer.D}
    reports, copies = plan_init(modules, src)
    if not partial and not reports["G"].copied and not reports["G_ema"].copied:
        theirs = (src.generator or {}).get("name", "unknown")
        mine = (part_config(trainer.G) or {}).get("name", type(trainer.G).__name__)
        raise InitError(
            f"train.init.source {str(src.source)!r}: no tensor of its generator ({theirs}) "
            f"matches this run's ({mine}) by name and shape; to start anyway with whatever "
            "else matches, set train.init.partial=true (--init-partial)",
            field="train.init.source",
        )
    with torch.no_grad():
        for own, theirs in copies:
            own.copy_(theirs.to(device=own.device, dtype=own.dtype))
    report = InitReport(src, reports, partial=partial)
    trainer.init_record = report.to_record()
    if verbose and trainer.is_main:
        print(report.summary(), file=sys.stderr, flush=True)
    return report


def _image_shape(kwargs: Mapping[str, Any]) -> tuple[tuple[int, int], int] | None:
    """``((H, W), channels)`` of a generator config's images, None when it does not say."""
    try:
        return as_size(kwargs["img_resolution"]), int(kwargs.get("img_channels", 3))
    except (KeyError, TypeError, ValueError):
        return None


def _check_image_shape(G: nn.Module, src: InitSource) -> None:
    """Refuse SOURCE when its images have another aspect or channel count than this run's: most
    tensors would still match by name and shape, and the start would look like a fine-tune of
    the same kind of image. Another scale of the same aspect (32x32 -> 64x64) is the transfer
    the common blocks are copied for."""
    theirs = _image_shape((src.generator or {}).get("kwargs") or {})
    mine = _image_shape(vars(G) if hasattr(G, "img_resolution") else {})
    if theirs is None or mine is None:
        return
    (th, tw), tc = theirs
    (mh, mw), mc = mine
    if th * mw == tw * mh and tc == mc:
        return
    raise InitError(
        f"train.init.source {str(src.source)!r} makes {size_text((th, tw))} images with {tc} "
        f"channel(s), this run {size_text((mh, mw))} with {mc} (data.resolution, "
        "data.channels): another aspect or channel count; train at SOURCE's aspect and "
        "channels, or set train.init.partial=true (--init-partial) to copy what matches anyway",
        field="train.init.source",
    )


def read_spec_source(spec: ExperimentSpec) -> InitSource | None:
    """``spec.train.init``'s SOURCE, read and checked (None when the run starts from scratch).

    ``Trainer.from_spec`` reads it before the data and the parts, so a bad SOURCE stops the run
    before anything is built or written."""
    init = spec.train.init
    return None if init is None else read_init_source(init.source, init.checkpoint)
