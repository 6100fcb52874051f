"""Official Projected GAN network pickles: read without running them, mapped onto our modules.

Every pickle here is written by the tests (tests/official_structure.py): the official layout and
parameter names, filled from our own modules, so a correct mapping reproduces their outputs
exactly. No official code or pickle made by it is used.
"""

from __future__ import annotations

import pickle

import pytest
import torch

import projected_gan as pg
from projected_gan.official import (
    OfficialPickleError,
    generator_from_pickle,
    read_network_pickle,
)
from tests import official_structure as official
from tests.test_cli import run_main


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Move every saved tensor (parameters, BatchNorm statistics) off its initial value and the
    noise strengths off 0; fixed buffers that are not saved (FIR filters) stay as they are."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():  # shares memory with the module
            if not t.is_floating_point() or "projector" in name:
                continue
            if "running_var" in name:
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif t.ndim == 0 or "noise" in name or "running_mean" in name:
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            else:
                t.add_(0.05 * torch.randn(t.shape, generator=gen))


def _fastgan(name: str, c_dim: int, seed: int) -> torch.nn.Module:
    G = pg.create("generators", name, img_resolution=128, z_dim=32, ngf=8, c_dim=c_dim)
    _randomise(G, seed)
    if c_dim and name == "fastgan":  # the official conditional big block has one noise layer
        for block in G.up.values():
            block.noises[1].strength.data.copy_(block.noises[0].strength)
    return G.eval()


@pytest.fixture(scope="module")
def lite0_trunk():
    import timm

    return official.lite0_trunk(timm.create_model("tf_efficientnet_lite0", pretrained=False))


@pytest.fixture(scope="module")
def fastgan_pickles(tmp_path_factory, lite0_trunk):
    """An unconditional FastGAN-lite and a conditional FastGAN (3 classes) snapshot, 128 px,
    each with its discriminator, read once; {name: (path, G, G_ema, D, what the reader read)}."""
    folder = tmp_path_factory.mktemp("official")
    out = {}
    for name, c_dim in (("fastgan_lite", 0), ("fastgan", 3)):
        G, G_ema = _fastgan(name, c_dim, 1), _fastgan(name, c_dim, 2)
        D = pg.ProjectedDiscriminator(img_resolution=128, num_classes=c_dim)
        _randomise(D, 3)
        data = official.snapshot(
            official.fastgan_generator(G),
            official.fastgan_generator(G_ema),
            official.projected_discriminator(D.eval(), lite0_trunk, 128),
        )
        path = official.dump(data, folder / f"{name}.pkl")
        out[name] = (path, G, G_ema, D.eval(), read_network_pickle(path))
    return out


@pytest.fixture(scope="module")
def generator_pickle(tmp_path_factory):
    """A FastGAN-lite snapshot without D (cheap to read): (path, G_ema)."""
    G, G_ema = _fastgan("fastgan_lite", 0, 6), _fastgan("fastgan_lite", 0, 7)
    data = official.snapshot(official.fastgan_generator(G), official.fastgan_generator(G_ema), None)
    return official.dump(data, tmp_path_factory.mktemp("official") / "g.pkl"), G_ema


def _same_images(ours, theirs, z, c=None, **kwargs) -> float:
    with torch.no_grad():
        torch.manual_seed(11)
        a = ours(z, c, **kwargs)
        torch.manual_seed(11)
        b = theirs(z, c, **kwargs)
    return float((a - b).abs().max())


@pytest.mark.slow  # two discriminators built and read back: ~25 s of CPU for both
@pytest.mark.parametrize("name", ["fastgan_lite", "fastgan"])
def test_fastgan_snapshot_maps_onto_our_modules(fastgan_pickles, name):
    _, G, G_ema, D, nets = fastgan_pickles[name]
    assert pg.part_config(pg.create_from_config(nets.generator)) == pg.part_config(G)
    assert nets.info["cfg"] == name and nets.info["kimg"] == 123.0
    assert nets.info["feature_network"]["tensors"] == 288  # lite0's trunk, not carried over
    assert not nets.info["feature_network"]["equal_to_shipped_imagenet_weights"]
    z = torch.randn(4, 32)
    c = torch.tensor([0, 1, 2, 1]) if G.c_dim else None
    # random per-layer noise of the big blocks is drawn in the same order: same images
    assert _same_images(G_ema, generator_from_pickle(nets), z, c) == 0.0
    assert _same_images(G, generator_from_pickle(nets, model="G"), z, c) == 0.0
    assert _same_images(G, generator_from_pickle(nets), z, c) > 1e-3  # G_ema is another net
    # D: exactly our heads and projection head, never the feature network
    ours = {k for k in D.state_dict() if not k.startswith("projector.feature_network.")}
    assert set(nets.models["D"]) == ours
    for key, value in nets.models["D"].items():
        assert torch.equal(value, D.state_dict()[key]), key
    D2 = pg.create_from_config(nets.discriminator).eval()
    missing = D2.load_state_dict(nets.models["D"], strict=False).missing_keys
    assert missing and all(k.startswith("projector.feature_network.") for k in missing)
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    D.augment = D2.augment = None
    with torch.no_grad():
        labels = None if c is None else c[:2]
        assert torch.equal(D2(x, labels), D(x, labels))
    left = nets.info["models"]["G"]["left_at_init"]
    if name == "fastgan":  # ours only: const noise (the official one is always random), and
        # the count of the conditional BatchNorm (the official one keeps none)
        assert left and all(k.endswith(("noise_const", "num_batches_tracked")) for k in left)
        assert any(k.endswith("noise_const") for k in left)
        assert nets.models["G"]["embed.weight"].shape == (3, 32)  # 1000 official rows -> 3
    else:
        assert left == {}
    # the official synthesis always builds the 256 px stage: read, and set aside with the reason
    assert any(k.startswith("synthesis.feat_256") for k in nets.info["models"]["G"]["ignored"])


def _stylegan2(c_dim: int) -> torch.nn.Module:
    G = pg.create(
        "generators",
        "stylegan2",
        img_resolution=32,
        z_dim=8,
        w_dim=16,
        c_dim=c_dim,
        channel_base=256,
        channel_max=64,
    )
    _randomise(G, 4)
    G.mapping_network.w_avg.normal_()
    return G.eval()


@pytest.mark.parametrize("c_dim", [0, 2])
def test_stylegan2_persistent_records_are_never_executed(tmp_path, c_dim):
    marker = tmp_path / "executed.txt"
    source = official.placeholder_source(marker)
    G = _stylegan2(c_dim)
    data = official.snapshot(
        official.stylegan2_generator(G, source), official.stylegan2_generator(G, source), None
    )
    path = official.dump(data, tmp_path / "sg2.pkl")
    # the placeholder is not an official source: refused by default, before anything runs
    with pytest.raises(OfficialPickleError, match="not a known official networks_stylegan2"):
        read_network_pickle(path)
    nets = read_network_pickle(path, allow_sources=[official.source_sha256(source)])
    assert not marker.exists()
    assert nets.generator["name"] == "stylegan2" and "D" not in nets.models
    assert nets.info["persistent_sources"] == {
        official.source_sha256(source): "allowed by the caller"
    }
    G2 = generator_from_pickle(nets)
    z = torch.randn(3, 8)
    c = torch.tensor([0, 1, 1]) if c_dim else None
    # the label embedding is folded through W.T / gain * gain: float rounding only
    assert _same_images(G, G2, z, c, noise_mode="const") < 1e-5
    assert _same_images(G, G2, z, c, noise_mode="const", truncation_psi=0.5) < 1e-5
    assert not marker.exists()


def test_the_placeholder_source_would_write_its_marker(tmp_path):
    """The payload the tests rely on is live: executed, it writes the file."""
    marker = tmp_path / "executed.txt"
    with pytest.raises(RuntimeError, match="placeholder"):
        exec(official.placeholder_source(marker), {})
    assert marker.exists()


class _Payload:
    """Unpickles as a call of ``builtins.exec`` that writes a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def test_a_global_outside_the_allow_list_is_refused_before_it_runs(tmp_path, capsys):
    marker = tmp_path / "ran.txt"
    payload = {"G_ema": _Payload(marker), "G": 1}
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload))
    pickle.loads(path.read_bytes())  # the payload is live: a plain unpickler runs it
    assert marker.exists()
    marker.unlink()
    with pytest.raises(OfficialPickleError, match=r"builtins\.exec.*allow-list"):
        read_network_pickle(path)
    assert not marker.exists()
    code, _, err = run_main(capsys, "generate", str(path), "--grid", str(tmp_path / "g.png"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "builtins.exec" in err
    assert not marker.exists()


def test_a_persistent_class_outside_the_allow_list_is_refused(tmp_path):
    marker = tmp_path / "executed.txt"
    source = official.placeholder_source(marker)
    evil = official.Persistent("Backdoor", source)
    path = official.dump({"G": evil, "G_ema": evil}, tmp_path / "evil.pkl")
    with pytest.raises(OfficialPickleError, match="'Backdoor' is not one of"):
        read_network_pickle(path, allow_sources=[official.source_sha256(source)])
    assert not marker.exists()


def test_corrupt_truncated_or_foreign_files_exit_2_with_one_line(
    tmp_path, generator_pickle, capsys
):
    path = generator_pickle[0]
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x80\x04not a pickle at all")
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    for bad, expected in (
        (truncated, "truncated or corrupt"),
        (garbage, "not a readable"),
        (plain, "not an official network snapshot"),
    ):
        with pytest.raises(OfficialPickleError, match=expected):
            read_network_pickle(bad)
        code, _, err = run_main(capsys, "generate", str(bad), "--grid", str(tmp_path / "g.png"))
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "g.png").exists()


def test_a_tensor_of_another_shape_is_refused_naming_it(tmp_path):
    G = _fastgan("fastgan_lite", 0, 5)
    theirs = official.fastgan_generator(G)
    bad = torch.nn.utils.spectral_norm(torch.nn.Conv2d(8, 3, 5, 1, 2))  # 5x5, not 3x3
    theirs.synthesis.to_big = bad
    path = official.dump(official.snapshot(theirs, theirs, None), tmp_path / "bad.pkl")
    with pytest.raises(OfficialPickleError, match=r"to_rgb.*5, 5.*expected"):
        read_network_pickle(path)


def test_convert_generate_and_export_take_a_pickle(tmp_path, generator_pickle, capsys):
    path, G_ema = generator_pickle
    code, out, err = run_main(capsys, "convert", str(path), str(tmp_path / "converted"))
    assert code == 0, err
    assert "official --cfg=fastgan_lite, 128 px" in out and "nothing in it was run" in out
    loaded = pg.load_generator(tmp_path / "converted")
    assert _same_images(G_ema, loaded, torch.randn(2, 32)) == 0.0
    card = (tmp_path / "converted" / "README.md").read_text()
    assert "converted from" in card and "123 kimg" in card
    code, out, err = run_main(
        capsys, "generate", str(path), "--seeds", "0-3", "--grid", str(tmp_path / "grid.png")
    )
    assert code == 0, err
    assert (tmp_path / "grid.png").is_file()
    code, out, err = run_main(capsys, "export", str(path), str(tmp_path / "exported"))
    assert code == 0, err
    assert _same_images(G_ema, pg.load_generator(tmp_path / "exported"), torch.randn(2, 32)) == 0.0
    # eval: a pickle records no data path this library can read
    code, _, err = run_main(capsys, "eval", str(path), "--num", "4")
    assert code == 2 and "--data" in err and "/data/flowers.zip" in err


def test_a_snapshot_pickled_on_a_gpu_loads_on_the_cpu(tmp_path, monkeypatch):
    """Official snapshots hold CUDA tensors (the loop pickles G, D, G_ema where they train)."""
    import torch.serialization

    G = _fastgan("fastgan_lite", 0, 8)
    theirs = official.fastgan_generator(G)
    with monkeypatch.context() as patch:  # storages record "cuda:0" as a GPU pickle does
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        path = official.dump(official.snapshot(theirs, theirs, None), tmp_path / "gpu.pkl")
    assert path.read_bytes().count(b"cuda:0") >= len(G.state_dict())  # every storage says so
    assert _same_images(G, generator_from_pickle(path), torch.randn(2, 32)) == 0.0


def test_eval_of_a_pickle_uses_the_default_spec_with_the_given_data(generator_pickle):
    from projected_gan import sources
    from projected_gan.commands.evaluation import _generator_alone

    path, G_ema = generator_pickle
    G, spec = _generator_alone(str(path), sources.NETWORK_PICKLE, "my_images/", torch.device("cpu"))
    assert _same_images(G_ema, G, torch.randn(2, 32)) == 0.0
    assert spec.data.conditional is False
    assert spec.metrics.names == pg.ExperimentSpec.validate_dict({}).metrics.names


class _TensorRecord:
    """Unpickles as a tensor of ``size`` over a 4-element storage (torch's own tensor record)."""

    def __init__(self, size, stride, offset=0):
        self.args = (offset, size, stride)

    def __reduce__(self):
        import collections

        storage = torch.arange(4.0).untyped_storage()
        typed = torch.TypedStorage(wrap_storage=storage, dtype=torch.float32, _internal=True)
        hooks = collections.OrderedDict()
        return torch._utils._rebuild_tensor_v2, (typed, *self.args, False, hooks)


@pytest.mark.parametrize(
    ("size", "stride", "offset"), [((100,), (1,), 0), ((3,), (1,), 2), ((4,), (-1,), 0)]
)
def test_a_tensor_larger_than_its_storage_is_refused(tmp_path, size, stride, offset):
    """torch's set_ would grow the storage to fit (a few bytes could ask for gigabytes)."""
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps({"G": _TensorRecord(size, stride, offset)}))
    with pytest.raises(OfficialPickleError, match="does not fit its storage"):
        read_network_pickle(path)
    path.write_bytes(pickle.dumps({"G": _TensorRecord((2, 2), (2, 1), 0)}))  # one that fits
    with pytest.raises(OfficialPickleError, match="not an official network snapshot"):
        read_network_pickle(path)
