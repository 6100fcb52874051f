"""The experiment spec: pydantic models, YAML/JSON round trip, presets and dotted overrides.

Every section forbids unknown fields. A part section is ``{name: <registered name>, **kwargs}``;
the name is checked against its registry (plugins included) and the kwargs against the part's
signature, so a typo fails before any work with the field path in the message::

    generator.name: 'fastgun' is not a registered generator; did you mean 'fastgan'?
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from projected_gan.atomic import atomic_write_text
from projected_gan.data.spec import DataSpec
from projected_gan.discriminators import ProjectedDiscriminator
from projected_gan.generators.layers import Generator, check_image_size
from projected_gan.registry import GENERATORS
from projected_gan.spec.checks import (
    PartSpec,
    SpecError,
    part_problems,
    validation_problems,
)
from projected_gan.spec.health import HealthSpec
from projected_gan.spec.io import apply_overrides, list_presets, preset_dict, read_mapping

__all__ = [
    "DataSpec",
    "DiscriminatorSpec",
    "ExperimentSpec",
    "HealthSpec",
    "InitSpec",
    "LossSpec",
    "MetricsSpec",
    "OptimSpec",
    "OutputSpec",
    "PartSpec",
    "SpecError",
    "TrainSpec",
    "apply_overrides",
    "list_presets",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# The discriminator's defaults are ProjectedDiscriminator's own (one place to change them).
_D_DEFAULTS = {
    name: p.default for name, p in inspect.signature(ProjectedDiscriminator).parameters.items()
}


class DiscriminatorSpec(_Strict):
    """The Projected discriminator: feature network -> projection head -> multi-scale heads."""

    feature_network: PartSpec | list[PartSpec] = Field(
        PartSpec(name=_D_DEFAULTS["feature_network"]),
        description="one network, or a list: each gets its own head and D, logits concatenated",
    )
    projection_head: PartSpec | list[PartSpec] = Field(
        PartSpec(name=_D_DEFAULTS["projection_head"]),
        description="one head for every feature network, or a list: one per network, in order",
    )
    discriminator: PartSpec | list[PartSpec] = Field(
        PartSpec(name=_D_DEFAULTS["discriminator"]),
        description="one kind of multi-scale heads for every network, or a list: one per network",
    )
    augment: PartSpec | None = PartSpec(name="diffaugment", policy=_D_DEFAULTS["augment"])
    rgb: Literal["fixed", "learned"] = Field(
        "fixed",
        description="how data.channels != 3 reach the RGB feature network: fixed (luma "
        "replicated, channels 0-2 of 4+) or learned (a trained 1x1 conv, starting as fixed)",
    )
    extra_branch: bool = Field(
        False,
        description="data.channels >= 4: channels 3+ also go through the feature network as a "
        "second view, with their own projection and heads",
    )

    @field_validator("feature_network", "projection_head", "discriminator", mode="before")
    @classmethod
    def _one_or_per_network(cls, v: Any) -> Any:
        # A bare name is short for {name: ...}, alone or in a list (handy with --set).
        if isinstance(v, str):
            return {"name": v}
        if isinstance(v, list):
            if not v:
                raise ValueError("the list is empty; give one entry, or one per feature network")
            return [{"name": p} if isinstance(p, str) else p for p in v]
        return v


class LossSpec(PartSpec):
    """Adversarial loss ``{name, **arguments}`` and optional gradient penalties R1 (reals) and R2
    (fakes), off by default as in Projected GAN. A plain string names the loss alone."""

    name: str = "hinge"
    r1_gamma: float = Field(0.0, ge=0, description="R1 weight (reals); 0 = off")
    r2_gamma: float = Field(0.0, ge=0, description="R2 weight (fakes); 0 = off")
    penalty_interval: int = Field(
        16, ge=1, description="apply R1/R2 every N D steps (lazy; 1 = every step)"
    )


class OptimSpec(_Strict):
    """Adam for both networks; per-network settings override ``lr``/``betas``, never ignored."""

    lr: float = Field(2e-4, gt=0)
    g_lr: float | None = Field(None, gt=0)
    d_lr: float | None = Field(None, gt=0)
    betas: tuple[float, float] = (0.0, 0.99)
    g_betas: tuple[float, float] | None = Field(None, description="G's betas; null = betas")
    d_betas: tuple[float, float] | None = Field(None, description="D's betas; null = betas")
    eps: float = Field(1e-8, gt=0)

    @field_validator("betas", "g_betas", "d_betas")
    @classmethod
    def _betas(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is None:
            return None
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {v}")
        return (float(v[0]), float(v[1]))

    @property
    def generator_betas(self) -> tuple[float, float]:
        return self.g_betas if self.g_betas is not None else self.betas

    @property
    def discriminator_betas(self) -> tuple[float, float]:
        return self.d_betas if self.d_betas is not None else self.betas

    @property
    def generator_lr(self) -> float:
        return self.g_lr if self.g_lr is not None else self.lr

    @property
    def discriminator_lr(self) -> float:
        return self.d_lr if self.d_lr is not None else self.lr


class InitSpec(_Strict):
    """Start a new run from trained weights (fine-tuning, transfer): ``train.init``.

    The run is built from its own spec and data; then G, G_ema and D's heads take every tensor
    of ``source`` whose name and shape match (see :mod:`projected_gan.training.init_weights`).
    Counters, optimisers, RNG, data order and the EMA ramp start fresh; ``--resume`` of the new
    run loads its own checkpoints and never re-applies this.
    """

    source: str = Field(
        description="a run folder, a checkpoint file (.safetensors), an export folder (G only), "
        "or an official network pickle (.pkl)"
    )
    checkpoint: Literal["latest", "best"] = Field(
        "latest",
        description="which checkpoint of a run folder: the newest, or the best by its first metric",
    )
    partial: bool = Field(
        False,
        description="start even when no tensor of G matches or SOURCE's images have another "
        "aspect or channel count (else refused)",
    )


class TrainSpec(_Strict):
    """Length, precision, EMA and the cadence of logs, samples, checkpoints and metrics (kimg)."""

    batch: int = Field(64, gt=0, description="global batch (split across processes)")
    batch_gpu: int | None = Field(
        None,
        gt=0,
        description="micro-batch: each process accumulates gradients over chunks of this many "
        "samples (BatchNorm sees one chunk); null = the per-process batch",
    )
    kimg: float = Field(10_000, gt=0, description="train until this many thousand real images")
    seed: int = 0
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    precision: Literal["auto", "fp32", "tf32", "bf16", "bf16_fp32_features"] = Field(
        "auto", description="see projected_gan.precision; auto = tf32 on CUDA, fp32 elsewhere"
    )
    tf32: bool | None = Field(None, description="TF32 for fp32 parts (CUDA); null = not in fp32")
    channels_last: bool = True
    compile: bool = False
    deterministic: bool = False
    ema_kimg: float | None = Field(None, ge=0, description="EMA half-life; null = batch*10/32")
    ema_rampup: float | None = Field(0.05, ge=0)
    tick: float = Field(4.0, gt=0, description="kimg between log lines")
    sample_every: float = Field(40.0, gt=0, description="kimg between sample grids")
    snapshot_every: float = Field(200.0, gt=0, description="kimg between checkpoints")
    metrics_every: float = Field(200.0, gt=0, description="kimg between metric evaluations")
    keep_checkpoints: int = Field(3, ge=1, description="newest checkpoints kept (plus the best)")
    max_bad_steps: int = Field(
        50, ge=1, description="stop after this many non-finite steps in a row"
    )
    sync_batchnorm: bool = False
    init: InitSpec | None = Field(
        None, description="start from trained weights (fine-tuning); null = from scratch"
    )

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        head = v.split(":")[0]
        if head not in {"auto", "cpu", "cuda", "mps"}:
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {v!r}")
        return v


class MetricsSpec(_Strict):
    """Metrics computed on G_ema during training and by ``projected-gan eval``."""

    names: list[str] = Field(default_factory=lambda: ["fd"])
    num_images: int = Field(5000, gt=0, description="generated images per evaluation")
    feature_network: str = "tf_efficientnet_lite1"
    fid_weights: str | None = Field(None, description="local Inception-v3 weights for fid")
    at_start: bool = Field(
        True, description="also compute the metrics at kimg 0 (the untrained baseline)"
    )


TENSORBOARD_REPLACED = (
    "was replaced by output.loggers: for TensorBoard write `loggers: [jsonl, tensorboard]` "
    '(pip install -e ".[tensorboard]"), for none leave the line out'
)


class OutputSpec(_Strict):
    """Where runs are written (``<dir>/<NNNNN>-<name>/``) and which loggers follow them."""

    dir: str = "runs"
    name: str | None = None
    loggers: list[PartSpec] = Field(
        default_factory=lambda: [PartSpec(name="jsonl")],
        description="experiment loggers, each a name or {name, **arguments}: jsonl (log.jsonl, "
        "metrics.jsonl, plots; always on, listed or not), tensorboard, wandb, or a plugin's "
        "(`projected-gan list loggers`); only rank 0 logs",
    )
    tensorboard: None = Field(None, exclude=True, description="replaced by loggers")

    @field_validator("tensorboard", mode="before")
    @classmethod
    def _tensorboard(cls, v: Any) -> None:
        raise ValueError(TENSORBOARD_REPLACED)

    @field_validator("loggers", mode="before")
    @classmethod
    def _logger_names(cls, v: Any) -> Any:
        # A bare name is short for {name: ...}, alone or in a list (handy with --set).
        if isinstance(v, (str, dict)):
            v = [v]
        if isinstance(v, list):
            return [{"name": p} if isinstance(p, str) else p for p in v]
        return v

    @field_validator("loggers")
    @classmethod
    def _unique(cls, v: list[PartSpec]) -> list[PartSpec]:
        names = [p.name for p in v]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} listed more than once; list each logger once")
        return v


class ExperimentSpec(_Strict):
    """Everything needed to train: data, parts, loss, optimiser, schedule, metrics, health checks,
    output."""

    data: DataSpec = DataSpec()
    generator: PartSpec = PartSpec(name="fastgan_lite")
    discriminator: DiscriminatorSpec = DiscriminatorSpec()
    loss: LossSpec = LossSpec()
    optim: OptimSpec = OptimSpec()
    train: TrainSpec = TrainSpec()
    metrics: MetricsSpec = MetricsSpec()
    health: HealthSpec = HealthSpec()
    output: OutputSpec = OutputSpec()

    def part_problems(self) -> list[tuple[str, str]]:
        """Unknown part names or arguments, checked against the registries (plugins included)."""
        return part_problems(self.model_dump())

    def check(self) -> ExperimentSpec:
        """Raise :class:`SpecError` if any part is unknown or mis-configured; return self.

        Warns when a StyleGAN2 generator runs at the FastGAN learning rate by default.
        """
        problems = self.part_problems()
        t = self.train
        if t.batch_gpu is not None and t.batch % t.batch_gpu:
            problems.append(
                ("train.batch_gpu", f"{t.batch_gpu} must divide the batch {t.batch} per process")
            )
        problems += self._size_problems()
        d = self.discriminator
        if d.extra_branch and self.data.channels < 4:
            problems.append(
                (
                    "discriminator.extra_branch",
                    f"needs channels beyond RGB (data.channels >= 4), got {self.data.channels}",
                )
            )
        if problems:
            raise SpecError(problems)
        lr_fields = {"lr", "g_lr", "d_lr"} & self.optim.model_fields_set
        if self.generator.name == "stylegan2" and not lr_fields:
            # Warn rather than switch: a default that depends on the generator would surprise.
            warnings.warn(
                "generator stylegan2 without optim.lr/g_lr/d_lr: training uses the default "
                f"{self.optim.lr:g}, but the official StyleGAN2 recipe uses 0.002 "
                "(see the stylegan2_256 preset)",
                stacklevel=2,
            )
        return self

    def _size_problems(self) -> list[tuple[str, str]]:
        """``data.resolution`` against the size rule of a generator built on :class:`Generator`
        (a plugin that is not one says itself when it is built)."""
        try:
            factory = GENERATORS.get(self.generator.name)
        except Exception:  # an unknown name: part_problems already reports it
            return []
        if not (isinstance(factory, type) and issubclass(factory, Generator)):
            return []
        try:
            check_image_size(self.data.resolution, f"{self.generator.name}: size")
        except ValueError as exc:
            return [("data.resolution", str(exc))]
        return []

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def validate_dict(cls, raw: dict[str, Any], source: str = "spec") -> ExperimentSpec:
        """Validate a plain dict; all problems at once as a :class:`SpecError`."""
        if not isinstance(raw, dict):
            raise SpecError([("", f"{source}: expected a mapping of sections, got {type(raw)}")])
        try:
            spec = cls.model_validate(raw)
        except ValidationError as exc:
            # Report the registry problems of the parts too, so one run shows every mistake.
            found = validation_problems(exc, cls)
            seen = {path for path, _ in found}
            found += [p for p in part_problems(raw) if p[0] not in seen]
            raise SpecError(found) from None
        return spec.check()

    @classmethod
    def from_file(cls, path: str | Path) -> ExperimentSpec:
        """Load a YAML (``.yaml``/``.yml``) or JSON (``.json``) spec file."""
        return cls.validate_dict(read_mapping(Path(path)), source=str(path))

    @classmethod
    def preset(cls, name: str) -> ExperimentSpec:
        """A spec shipped with the package, e.g. ``minimal_cpu`` or ``fastgan_lite_256``."""
        return cls.validate_dict(preset_dict(name), source=f"preset {name}")

    @classmethod
    def load(
        cls,
        file: str | Path | None = None,
        *,
        preset: str | None = None,
        overrides: Sequence[str | tuple[str, Any]] = (),
    ) -> ExperimentSpec:
        """File or preset (or the defaults), then the overrides (``key=value`` strings, or
        ``(key, value)`` pairs whose value is taken as is)."""
        if file is not None and preset is not None:
            raise SpecError([("", "give a spec file or a preset, not both")])
        raw: dict[str, Any] = {}
        if file is not None:
            raw = read_mapping(Path(file))
        elif preset is not None:
            raw = preset_dict(preset)
        raw = apply_overrides(raw, overrides)
        return cls.validate_dict(raw, source=str(file or preset or "spec"))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        """Write the resolved spec as YAML (atomically)."""
        atomic_write_text(Path(path), self.to_yaml())
