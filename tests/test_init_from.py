"""Starting a run from trained weights (``train.init``, ``--init``, ``init_from``): what copies,
what stays at initialisation and why, the record it leaves, and the sources it refuses."""

import hashlib
import json

import pytest
import torch
import yaml

from projected_gan import ExperimentSpec, ProjectedDiscriminator, build_from_spec, create
from projected_gan.checkpoint import find_checkpoints, load_checkpoint
from projected_gan.data import default_dataset_path
from projected_gan.export import export_checkpoint
from projected_gan.training import InitError, InitSource, Trainer, init_from, read_init_source
from projected_gan.training.init_weights import plan_init
from tests.conftest import tiny_overrides
from tests.test_cli import run_main
from tests.test_hand_built_runs import hand_built


def tiny_spec(out_dir, *extra):
    return ExperimentSpec.load(preset="minimal_cpu", overrides=[*tiny_overrides(out_dir), *extra])


def equal_states(module, state, names=None):
    own = module.state_dict()
    names = list(own) if names is None else names
    return all(torch.equal(own[k].cpu(), state[k]) for k in names)


def heads(D):
    return {k: v for k, v in D.state_dict().items() if k.startswith("discriminator.")}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny run of the minimal_cpu preset (seed 0), one step in, one checkpoint.

    Without the EMA ramp-up G_ema lags G after the step, so a mix-up of the two shows."""
    out = tmp_path_factory.mktemp("init_source")
    trainer = build_from_spec(tiny_spec(out, "train.ema_rampup=null"))
    trainer.step()
    path = trainer.save()
    ckpt = load_checkpoint(path)
    assert not equal_states(trainer.G, ckpt.models["G_ema"])  # G and G_ema tell apart
    return trainer.run_dir, path, ckpt


def test_same_preset_copies_every_tensor_trains_and_resumes(source, tmp_path):
    run_dir, path, ckpt = source
    # Another seed: other initial weights, and another random projection of its own.
    spec = tiny_spec(tmp_path, f"train.init.source={run_dir}", "train.seed=7", "train.kimg=0.008")
    trainer = build_from_spec(spec)
    own_projection = ProjectedDiscriminator(
        feature_network={"name": "tf_efficientnet_lite0", "input_size": 64},
        img_resolution=32,
        projection_seed=7,
    ).projector.head.state_dict()
    src_projection = {
        k[len("projector.head.") :]: v
        for k, v in ckpt.models["D"].items()
        if k.startswith("projector.head.")
    }
    assert not all(torch.equal(own_projection[k], src_projection[k]) for k in own_projection)

    assert equal_states(trainer.G, ckpt.models["G"])
    assert equal_states(trainer.G_ema, ckpt.models["G_ema"])
    assert all(torch.equal(v, ckpt.models["D"][k]) for k, v in heads(trainer.D).items())
    # The heads came with SOURCE's projection, not the one seed 7 draws.
    assert equal_states(trainer.D.projector.head, src_projection)
    assert trainer.nimg == 0 and trainer.step_index == 0
    assert not trainer.g_opt.state and not trainer.d_opt.state  # fresh optimisers

    record = trainer.init_record
    assert record["kind"] == "run" and record["checkpoint"] == "latest"
    assert record["file"] == str(path)
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    G, D = record["modules"]["G"], record["modules"]["D"]
    assert G["copied"] == G["total"] == len(ckpt.models["G"]) == 36
    assert record["modules"]["G_ema"]["copied"] == 36
    assert D["copied"] == D["total"] == len(heads(trainer.D)) == 39
    assert D["projection_copied"] == 16
    assert G["missing"] == G["other_shape"] == D["fresh"] == []

    run = trainer.fit(progress=False)
    assert json.loads((run / "init.json").read_text()) == record
    newest = load_checkpoint(find_checkpoints(run)[0])
    assert newest.meta["init"] == record and newest.meta["nimg"] == 8

    # Resume loads the run's own checkpoint (trained past SOURCE), never SOURCE again.
    resumed = Trainer.resume(run, overrides=["train.kimg=0.012"])
    assert resumed.init_record == record and resumed.nimg == 8
    assert equal_states(resumed.G, newest.models["G"])
    assert not equal_states(resumed.G, ckpt.models["G"])
    resumed.fit(progress=False)
    assert load_checkpoint(find_checkpoints(run)[0]).meta["init"] == record


def test_unconditional_source_into_a_conditional_run(source, tmp_path):
    _, path, ckpt = source
    trainer = build_from_spec(tiny_spec(tmp_path, "data.conditional=true"))
    G0 = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    report = init_from(trainer, path, verbose=False)
    G = report.modules["G"]
    # Conditional FastGAN: a class embedding, and class-conditional BatchNorm in each up-block
    # where SOURCE has plain BatchNorm; the convolutions, the 4x4 init and to_rgb copy.
    assert (len(G.copied), G.total, len(G.missing), G.other_shape) == (21, 55, 34, [])
    assert all(k.startswith("embed.") or ".norms." in k for k in G.missing)
    assert any(k.startswith("up.8.convs.") for k in G.copied)
    assert equal_states(trainer.G, ckpt.models["G"], G.copied)
    assert all(torch.equal(trainer.G.state_dict()[k], G0[k]) for k in G.missing)
    D = report.modules["D"]
    # D: the class embeddings are new, each scale's last conv now gives 64 channels, not 1.
    assert (len(D.copied), D.total, len(D.missing), len(D.other_shape)) == (31, 51, 12, 8)
    assert all(".embeds." in k for k in D.missing)
    assert len(D.projection) == 16  # heads copied, so with SOURCE's projection
    assert "embed" in report.summary()


def test_another_resolution_copies_the_common_blocks_and_says_which_did_not(source, tmp_path):
    _, path, ckpt = source
    trainer = build_from_spec(tiny_spec(tmp_path, "data.resolution=64"))
    report = init_from(trainer, path, verbose=False)
    G = report.modules["G"]
    # 32 -> 64 px: every block of the 32 px G exists at 64 px with the same shape (to_rgb
    # included at ngf 8); the 64 px up-block and its skip-excitation start fresh.
    assert (len(G.copied), G.total, len(G.missing), G.other_shape) == (36, 50, 14, [])
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in G.missing} == {"up.64", "sle.64"}
    assert equal_states(trainer.G_ema, ckpt.models["G_ema"], G.copied)
    summary = report.summary()
    assert "14 not in SOURCE (up.64, sle.64)" in summary
    # The projector sees 64 px either way (input_size 64), so the heads fit and copy.
    assert len(report.modules["D"].copied) == report.modules["D"].total == 39


def test_an_export_folder_seeds_g_and_g_ema_and_d_starts_fresh(source, tmp_path):
    run_dir, _, ckpt = source
    export_checkpoint(run_dir, tmp_path / "export", num_samples=4)
    trainer = hand_built(tmp_path / "run")  # the Python path: a hand-built Trainer
    D0 = {k: v.clone() for k, v in trainer.D.state_dict().items()}
    report = init_from(trainer, tmp_path / "export", verbose=False)
    assert report.source.kind == "export"
    exported = (tmp_path / "export" / "model.safetensors").read_bytes()
    assert report.source.sha256 == hashlib.sha256(exported).hexdigest()
    assert equal_states(trainer.G, ckpt.models["G_ema"])  # both from the exported G_ema
    assert equal_states(trainer.G_ema, ckpt.models["G_ema"])
    assert len(report.modules["G"].copied) == len(report.modules["G_ema"].copied) == 36
    D = report.modules["D"]
    assert (len(D.copied), len(D.fresh), D.projection) == (0, 39, [])
    assert "no discriminator" in D.reason
    assert all(torch.equal(v, D0[k]) for k, v in trainer.D.state_dict().items())
    trainer.save()
    assert json.loads((tmp_path / "run" / "init.json").read_text())["kind"] == "export"


def test_another_feature_network_leaves_the_heads_fresh_and_copies_g(source, tmp_path):
    _, path, ckpt = source
    # lite1 gives maps of the same channels and sides as lite0: the heads' shapes all match,
    # but they were trained on lite0's features, so they must not copy.
    spec = tiny_spec(tmp_path, "discriminator.feature_network.name=tf_efficientnet_lite1")
    trainer = build_from_spec(spec)
    D0 = {k: v.clone() for k, v in trainer.D.state_dict().items()}
    report = init_from(trainer, path, verbose=False)
    D = report.modules["D"]
    assert (len(D.copied), len(D.fresh), len(D.other_shape), D.projection) == (0, 39, 0, [])
    assert "another feature network" in D.reason and "tf_efficientnet_lite1" in D.reason
    assert all(torch.equal(v, D0[k]) for k, v in trainer.D.state_dict().items())
    assert len(report.modules["G"].copied) == 36 and equal_states(trainer.G, ckpt.models["G"])


def _in_memory_source(G, D, **fields):
    models = {"G": G.state_dict(), "G_ema": G.state_dict(), "D": D.state_dict()}
    return InitSource(source=None, kind="test", file=None, sha256="", models=models, **fields)


def test_heads_copy_per_network_and_only_onto_identical_feature_weights():
    G = create("generators", "fastgan_lite", img_resolution=32, ngf=8)
    lite0 = {"name": "tf_efficientnet_lite0", "input_size": 64}
    lite1 = {"name": "tf_efficientnet_lite1", "input_size": 64}
    src_D = ProjectedDiscriminator(feature_network=lite0, img_resolution=32, projection_seed=1)
    run_D = ProjectedDiscriminator(feature_network=[lite1, lite0], img_resolution=32)
    modules = {"G": G, "G_ema": G, "D": run_D}
    # No configs recorded: identity comes from the feature network's weights alone.
    reports, copies = plan_init(modules, _in_memory_source(G, src_D))
    D = reports["D"]
    n = len(heads(src_D))
    assert len(D.copied) == n and all(k.startswith("discriminator.1.") for k in D.copied)
    assert len(D.fresh) == n and all(k.startswith("discriminator.0.") for k in D.fresh)
    assert D.reason.startswith("network 0: the feature network's weights differ")
    assert all(k.startswith("projector.1.head.") for k in D.projection)
    assert len(copies) == 2 * 36 + n + len(D.projection)  # G and G_ema too

    # The same network by config but other weights (say, another weights file): no copy.
    state = src_D.state_dict()
    key = next(k for k in state if k.startswith("projector.feature_network."))
    state[key] = state[key] + 1
    src = _in_memory_source(G, src_D)
    src.models["D"] = state
    reports, _ = plan_init({**modules, "D": src_D}, src)
    assert reports["D"].copied == [] and "weights differ" in reports["D"].reason


class RenamedD(ProjectedDiscriminator):
    """A discriminator keeping its projector(s) and heads under other attribute names."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.frozen = self._modules.pop("projector")
        self.judges = self._modules.pop("discriminator")

    def _part(self, new, old):
        module = self._modules[new] if new in self._modules else self._modules[old]
        return list(module) if isinstance(module, torch.nn.ModuleList) else [module]

    projectors = property(lambda self: self._part("frozen", "projector"))
    discriminators = property(lambda self: self._part("judges", "discriminator"))


@pytest.mark.parametrize("networks", [1, 2])
def test_heads_are_found_by_the_discriminators_structure_not_its_attribute_names(networks):
    G = create("generators", "fastgan_lite", img_resolution=32, ngf=8)
    lite0 = {"name": "tf_efficientnet_lite0", "input_size": 64}
    nets = lite0 if networks == 1 else [lite0, lite0]
    src_D = RenamedD(feature_network=nets, img_resolution=32, projection_seed=1)
    run_D = RenamedD(feature_network=nets, img_resolution=32, projection_seed=2)
    assert not any(k.startswith(("discriminator.", "projector.")) for k in run_D.state_dict())
    own_heads = [k for k in run_D.state_dict() if k.startswith("judges.")]
    reports, copies = plan_init({"G": G, "G_ema": G, "D": run_D}, _in_memory_source(G, src_D))
    D = reports["D"]
    assert D.total == len(own_heads) > 0 and sorted(D.copied) == sorted(own_heads)
    assert D.projection and all(k.startswith("frozen.") and ".head." in k for k in D.projection)
    with torch.no_grad():
        for own, theirs in copies:
            own.copy_(theirs)
    assert equal_states(run_D, src_D.state_dict())  # heads and projection now SOURCE's


def test_nothing_of_g_matching_is_refused_unless_partial(source, tmp_path, capsys):
    run_dir, _, _ = source
    out = tmp_path / "runs"
    args = ["train", "--preset", "minimal_cpu", "--no-progress", "--init", str(run_dir)]
    for o in [*tiny_overrides(out), "generator={name: stylegan2}"]:
        args += ["--set", o]
    code, _, err = run_main(capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "no tensor of its generator (fastgan_lite)" in err and "--init-partial" in err
    assert not out.exists() or not any(out.iterdir())  # no run folder at all

    spec = tiny_spec(out, "generator={name: stylegan2}", f"train.init.source={run_dir}")
    spec.train.init.partial = True
    trainer = build_from_spec(spec)
    G, D = trainer.init_record["modules"]["G"], trainer.init_record["modules"]["D"]
    assert G["copied"] == 0 and G["missing"] and D["copied"] == D["total"] == 39


@pytest.mark.parametrize("kind", ["missing", "empty_dir", "text", "corrupt", "truncated", "pkl"])
def test_a_bad_source_exits_2_with_one_line_and_writes_nothing(source, tmp_path, capsys, kind):
    _, path, _ = source
    bad = tmp_path / "bad"
    if kind == "empty_dir":
        bad.mkdir()
        (bad / "notes.txt").write_text("not a run")
    elif kind == "text":
        bad = tmp_path / "weights.txt"
        bad.write_text("hello")
    elif kind == "corrupt":
        bad = tmp_path / "snapshot-000000004.safetensors"
        bad.write_bytes(b"\x00garbage" * 100)
    elif kind == "truncated":
        bad = tmp_path / "snapshot-000000004.safetensors"
        bad.write_bytes(path.read_bytes()[:5000])
    elif kind == "pkl":  # not a network pickle (the file would write a file if unpickled)
        bad = tmp_path / "network-snapshot.pkl"
        payload = f"cos\nsystem\n(S'touch {tmp_path / 'ran'}'\ntR."
        bad.write_bytes(payload.encode())
    out = tmp_path / "runs"
    args = ["train", "--preset", "minimal_cpu", "--no-progress", "--init", str(bad)]
    code, _, err = run_main(capsys, *args, "--set", f"output.dir={out}")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(bad.name) in err
    assert not out.exists()
    assert not (tmp_path / "ran").exists()


def test_best_checkpoint_of_a_run_and_what_best_refuses(source, tmp_path):
    trainer = build_from_spec(tiny_spec(tmp_path))
    trainer.counters.note_metric(5.0)  # pretend the first metric was measured at nimg 0
    first = trainer.save()
    trainer.step()
    trainer.counters.note_metric(9.0)  # worse: the best stays at nimg 0
    newest = trainer.save()
    run = trainer.run_dir
    assert read_init_source(run).file == newest
    best = read_init_source(run, "best")
    assert best.file == first and best.checkpoint == "best"
    assert best.sha256 == hashlib.sha256(first.read_bytes()).hexdigest()
    with pytest.raises(InitError, match="picks a checkpoint of a run folder"):
        read_init_source(newest, "best")
    with pytest.raises(InitError, match="has no best checkpoint"):
        read_init_source(source[0], "best")  # a run without metrics


def test_init_flags_and_init_only_starting_a_run(source, tmp_path, capsys):
    run_dir, path, _ = source
    args = ["train", "--preset", "minimal_cpu", "--dry-run", "--init", str(run_dir)]
    code, out, err = run_main(
        capsys, *args, "--init-partial", "--set", "train.init.checkpoint=latest"
    )
    assert code == 0, err
    init = ExperimentSpec.validate_dict(yaml.safe_load(out)).train.init
    assert (init.source, init.checkpoint, init.partial) == (str(run_dir), "latest", True)
    code, _, err = run_main(capsys, "train", "--preset", "minimal_cpu", "--init-partial")
    assert code == 2 and "train.init.source: Field required" in err
    code, _, err = run_main(capsys, "train", "--resume", str(run_dir), "--init", str(path))
    assert code == 2 and "--init starts a new run" in err

    # A real run: the flags are in its spec.yaml, as overrides of the spec.
    out = tmp_path / "runs"
    tiny = [x for o in tiny_overrides(out) for x in ("--set", o)]
    flowers = str(default_dataset_path())
    args = ["train", "--preset", "minimal_cpu", *tiny, "--set", "train.kimg=0.004"]
    code, _, err = run_main(capsys, *args, "--init", str(run_dir), "--data", flowers)
    assert code == 0, err
    saved = ExperimentSpec.from_file(next(out.iterdir()) / "spec.yaml")
    assert (saved.train.init.source, saved.data.path) == (str(run_dir), flowers)

    trainer = hand_built(tmp_path / "run")
    trainer.counters.nimg, trainer.counters.step = 4, 1  # as after one step
    with pytest.raises(InitError, match="already trained"):
        init_from(trainer, path)


@pytest.mark.slow  # two lite0 trunks pickled and read back: ~20 s of CPU
@pytest.mark.parametrize("trunk_weights", ["shipped", "other"])
def test_an_official_pickle_seeds_g_g_ema_and_the_heads_on_its_own_trunk(tmp_path, trunk_weights):
    """An official network-snapshot.pkl (written here in the official layout) as SOURCE: G and
    G_ema copy; D's heads and projection copy only when the pickle's lite0 trunk is the shipped
    ImageNet one this library uses, since the heads judged that trunk's features."""
    from projected_gan.projectors.weights import create_timm_model
    from tests import official_structure as official
    from tests.test_official import _randomise

    # The official D at 32 px upsamples to 224 (interp224): our lite0 with input_size 224.
    run_args = ("discriminator.feature_network.input_size=224",)
    template = build_from_spec(tiny_spec(tmp_path / "template", *run_args))
    G, G_ema, D = (copy_of(m) for m in (template.G, template.G_ema, template.D))
    for i, module in enumerate((G, G_ema, D)):
        _randomise(module, 20 + i)
    timm_lite0 = create_timm_model("tf_efficientnet_lite0", pretrained=trunk_weights == "shipped")
    trunk = official.lite0_trunk(timm_lite0)
    data = official.snapshot(
        official.fastgan_generator(G.eval()),
        official.fastgan_generator(G_ema.eval()),
        official.projected_discriminator(D.eval(), trunk, 32),
    )
    pkl = official.dump(data, tmp_path / "network-snapshot.pkl")

    trainer = build_from_spec(tiny_spec(tmp_path / "run", *run_args, f"train.init.source={pkl}"))
    record = trainer.init_record
    assert record["kind"] == "official_pickle" and record["file"] == str(pkl)
    assert record["sha256"] == hashlib.sha256(pkl.read_bytes()).hexdigest()
    assert equal_states(trainer.G, G.state_dict())
    assert equal_states(trainer.G_ema, G_ema.state_dict())
    assert record["modules"]["G"]["copied"] == record["modules"]["G"]["total"]
    own_heads = heads(trainer.D)
    if trunk_weights == "shipped":
        assert all(torch.equal(v, D.state_dict()[k]) for k, v in own_heads.items())
        assert equal_states(trainer.D.projector.head, D.projector.head.state_dict())
        assert record["modules"]["D"]["copied"] == len(own_heads)
    else:  # heads trained on other trunk weights start fresh, and the record says why
        fresh = heads(template.D)  # same seed, same spec: the initial heads
        assert all(torch.equal(v, fresh[k]) for k, v in own_heads.items())
        assert record["modules"]["D"]["copied"] == 0
        assert any("differs from the shipped ImageNet weights" in n for n in record["notes"])
        # the true reason, not "an export holds G_ema only"
        assert "differs from the shipped ImageNet weights" in record["modules"]["D"]["reason"]


def copy_of(module):
    import copy

    return copy.deepcopy(module).cpu()
