"""The experiment spec: pydantic models, YAML/JSON round trip, presets and dotted overrides.

Every section forbids unknown fields. A part section is ``{name: <registered name>, **kwargs}``;
the name is checked against its registry (plugins included) and the kwargs against the part's
signature, so a typo fails before any work with the field path in the message::

    generator.name: 'fastgun' is not a registered generator; did you mean 'fastgan'?
"""

from __future__ import annotations

import inspect
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from projected_gan.registry import REGISTRIES, PluginError, UnknownPartError

__all__ = [
    "DataSpec",
    "DiscriminatorSpec",
    "ExperimentSpec",
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

# Arguments build_from_spec supplies itself; a spec must not set them.
INJECTED_ARGS: dict[str, tuple[str, ...]] = {
    "generators": ("img_resolution", "c_dim"),
    "projection_heads": ("channels", "reductions"),
    "discriminators": ("channels", "reductions", "image_size", "num_classes"),
}


class SpecError(ValueError):
    """An invalid spec. ``problems`` holds ``(field_path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{path}: {msg}" if path else msg for path, msg in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PartSpec(BaseModel):
    """``{name: ..., **kwargs}`` for one registered part; the kwargs go to its factory."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def check_part(
    kind: str, part: PartSpec, path: str, name_path: str | None = None
) -> list[tuple[str, str]]:
    """Problems with ``part`` as a ``kind`` (unknown name, unknown or injected kwargs).

    ``path`` is the section's field path; ``name_path`` where the name itself sits
    (default ``<path>.name``).
    """
    registry = REGISTRIES[kind]
    try:
        entry = registry.entry(part.name)
    except (UnknownPartError, PluginError) as exc:
        return [(name_path or f"{path}.name", str(exc))]
    problems = []
    injected = set(INJECTED_ARGS.get(kind, ()))
    for key in part.kwargs:
        if key in injected:
            problems.append((f"{path}.{key}", "is set by the pipeline itself; remove it"))
    sig = entry.signature()
    if sig is None or any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return problems
    accepted = [
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    for key in part.kwargs:
        if key not in accepted and key not in injected:
            usable = ", ".join(a for a in accepted if a not in injected) or "none"
            problems.append(
                (f"{path}.{key}", f"{part.name!r} has no argument {key!r}; it accepts: {usable}")
            )
    return problems


# Where parts sit in a spec, and their registry. Name-only parts are plain strings.
PART_FIELDS: tuple[tuple[str, str], ...] = (
    ("generator", "generators"),
    ("discriminator.feature_network", "feature_networks"),
    ("discriminator.projection_head", "projection_heads"),
    ("discriminator.discriminator", "discriminators"),
    ("discriminator.augment", "augmentations"),
)
NAME_FIELDS: tuple[tuple[str, str], ...] = (
    ("loss.name", "losses"),
    ("metrics.feature_network", "feature_networks"),
)


def part_problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """Registry problems of every part in a (possibly still invalid) spec dict."""

    def get(path: str) -> Any:
        node: Any = raw
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        return node

    problems: list[tuple[str, str]] = []
    for path, kind in PART_FIELDS:
        node = get(path)
        if isinstance(node, dict) and isinstance(node.get("name"), str):
            problems += check_part(kind, PartSpec.model_validate(node), path)
    named = list(NAME_FIELDS)
    names = get("metrics.names")
    if isinstance(names, list):
        named += [(f"metrics.names.{i}", "metrics") for i in range(len(names))]
    for path, kind in named:
        parent, _, key = path.rpartition(".")
        node = get(parent)
        value = node[int(key)] if isinstance(node, list) else get(path)
        if isinstance(value, str):
            problems += check_part(kind, PartSpec(name=value), path, name_path=path)
    return problems


def _is_power_of_two(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


class DataSpec(_Strict):
    """Where the images come from and how they are prepared."""

    path: str | None = Field(None, description="image folder or zip; null = the shipped flowers64")
    resolution: int = Field(64, description="side of the square training images (power of two)")
    mirror: bool = Field(False, description="add x-flipped copies (doubles the dataset)")
    conditional: bool = Field(False, description="use class sub-folders as labels")
    workers: int = Field(2, ge=1, description="threads decoding images when building the cache")
    cache_dir: str | None = Field(None, description="decoded-dataset cache (default ~/.cache)")
    strict: bool = Field(False, description="fail on the first unreadable image instead of skip")
    min_images: int = Field(16, ge=1, description="fail if fewer readable images remain")
    max_images: int | None = Field(None, ge=1, description="use only the first N images")

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, v: int) -> int:
        if not (_is_power_of_two(v) and 16 <= v <= 1024):
            raise ValueError(f"must be a power of two between 16 and 1024, got {v}")
        return v


class DiscriminatorSpec(_Strict):
    """The Projected discriminator: feature network -> projection head -> multi-scale heads."""

    feature_network: PartSpec = PartSpec(name="tf_efficientnet_lite0")
    projection_head: PartSpec = PartSpec(name="ccm_csm")
    discriminator: PartSpec = PartSpec(name="multiscale")
    augment: PartSpec | None = PartSpec(name="diffaugment", policy="color,translation,cutout")


class LossSpec(_Strict):
    """Adversarial loss and optional R1 penalty (off by default, as in Projected GAN)."""

    name: str = "hinge"
    r1_gamma: float = Field(0.0, ge=0, description="R1 weight; 0 = off")
    r1_interval: int = Field(16, ge=1, description="apply R1 every N D steps (lazy)")


class OptimSpec(_Strict):
    """Adam for both networks; per-network learning rates override ``lr`` and are never ignored."""

    lr: float = Field(2e-4, gt=0)
    g_lr: float | None = Field(None, gt=0)
    d_lr: float | None = Field(None, gt=0)
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = Field(1e-8, gt=0)

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {v}")
        return (float(v[0]), float(v[1]))

    @property
    def generator_lr(self) -> float:
        return self.g_lr if self.g_lr is not None else self.lr

    @property
    def discriminator_lr(self) -> float:
        return self.d_lr if self.d_lr is not None else self.lr


class TrainSpec(_Strict):
    """Length, precision, EMA and the cadence of logs, samples, checkpoints and metrics (kimg)."""

    batch: int = Field(64, gt=0, description="global batch (split across processes)")
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


class OutputSpec(_Strict):
    """Where runs are written: ``<dir>/<NNNNN>-<name>/``."""

    dir: str = "runs"
    name: str | None = None
    tensorboard: bool = True


class ExperimentSpec(_Strict):
    """Everything needed to train: data, parts, loss, optimiser, schedule, metrics, output."""

    data: DataSpec = DataSpec()
    generator: PartSpec = PartSpec(name="fastgan_lite")
    discriminator: DiscriminatorSpec = DiscriminatorSpec()
    loss: LossSpec = LossSpec()
    optim: OptimSpec = OptimSpec()
    train: TrainSpec = TrainSpec()
    metrics: MetricsSpec = MetricsSpec()
    output: OutputSpec = OutputSpec()

    def part_problems(self) -> list[tuple[str, str]]:
        """Unknown part names or arguments, checked against the registries (plugins included)."""
        return part_problems(self.model_dump())

    def check(self) -> ExperimentSpec:
        """Raise :class:`SpecError` if any part is unknown or mis-configured; return self."""
        problems = self.part_problems()
        if problems:
            raise SpecError(problems)
        return self

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
            found = _problems(exc)
            seen = {path for path, _ in found}
            found += [p for p in part_problems(raw) if p[0] not in seen]
            raise SpecError(found) from None
        return spec.check()

    @classmethod
    def from_file(cls, path: str | Path) -> ExperimentSpec:
        """Load a YAML (``.yaml``/``.yml``) or JSON (``.json``) spec file."""
        return cls.validate_dict(_read_mapping(Path(path)), source=str(path))

    @classmethod
    def preset(cls, name: str) -> ExperimentSpec:
        """A spec shipped with the package, e.g. ``minimal_cpu`` or ``fastgan_lite_256``."""
        return cls.validate_dict(_preset_dict(name), source=f"preset {name}")

    @classmethod
    def load(
        cls,
        file: str | Path | None = None,
        *,
        preset: str | None = None,
        overrides: list[str] | tuple[str, ...] = (),
        data: str | None = None,
    ) -> ExperimentSpec:
        """File or preset (or the defaults), then ``data`` and ``key=value`` overrides."""
        if file is not None and preset is not None:
            raise SpecError([("", "give a spec file or a preset, not both")])
        raw: dict[str, Any] = {}
        if file is not None:
            raw = _read_mapping(Path(file))
        elif preset is not None:
            raw = _preset_dict(preset)
        if data is not None:
            raw.setdefault("data", {})["path"] = data
        raw = apply_overrides(raw, overrides)
        return cls.validate_dict(raw, source=str(file or preset or "spec"))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        """Write the resolved spec as YAML (atomically)."""
        from projected_gan.atomic import atomic_write_text

        atomic_write_text(Path(path), self.to_yaml())


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field; " + _known_fields(exc.title, err["loc"])
        elif err["type"] in {"literal_error", "enum"}:
            msg = f"{msg} (got {err.get('input')!r})"
        problems.append((loc, msg))
    return problems


def _known_fields(title: str, loc: tuple) -> str:
    model: type[BaseModel] = ExperimentSpec
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        candidates = [ann, *getattr(ann, "__args__", ())]
        nested = next(
            (c for c in candidates if inspect.isclass(c) and issubclass(c, BaseModel)), None
        )
        if nested is None:
            return "check the spelling"
        model = nested
    import difflib

    names = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}accepted: {', '.join(names)}"


def _read_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SpecError([("", f"spec file {str(path)!r} does not exist")])
    text = path.read_text()
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = path.suffix.lstrip(".").upper() or "YAML"
        raise SpecError([("", f"{path}: not valid {kind}: {exc}")]) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError([("", f"{path}: expected a mapping of sections at the top level")])
    return raw


def list_presets() -> list[str]:
    """Names of the presets shipped in ``projected_gan/presets``."""
    folder = resources.files("projected_gan") / "presets"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def _preset_dict(name: str) -> dict[str, Any]:
    names = list_presets()
    if name not in names:
        import difflib

        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SpecError([("preset", f"{name!r} is not a preset{hint} Presets: {', '.join(names)}")])
    text = (resources.files("projected_gan") / "presets" / f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``section.field=value`` strings (values parsed as YAML) to a raw spec dict."""
    raw = json.loads(json.dumps(raw))  # deep copy of plain data
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError([("--set", f"expected KEY=VALUE with a dotted key, got {item!r}")])
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        node = raw
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise SpecError([(key, f"{where} is a value, not a section; cannot set {key}")])
            node = child
        node[parts[-1]] = parsed
    return raw
