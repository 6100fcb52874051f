"""Projectors: feature networks (contract, weights offline), projection heads, Projector."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import projected_gan
from projected_gan.errors import InputError
from projected_gan.projectors import (
    CCM,
    CCMCSM,
    WEIGHT_PACKAGES,
    FeatureNetwork,
    NoProjection,
    PretrainedWeightsError,
    Projector,
    TimmFeatureNetwork,
    create_timm_model,
)

LITE0_CHANNELS = (24, 40, 112, 320)


@pytest.fixture(scope="module")
def lite0() -> TimmFeatureNetwork:
    return projected_gan.create("feature_networks", "tf_efficientnet_lite0", pretrained=True)


def images(batch: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g) * 2 - 1


class Recorder(FeatureNetwork):
    """A tiny plugin-style network that records the image it is given."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.channels, self.reductions = (8, 16), (2, 4)
        self.seen: torch.Tensor | None = None
        self.freeze()

    def forward_features(self, x):
        self.seen = x
        a = self.stem(x)
        return [a, self.down(a)]


# ------------------------------------------------------------------------ feature networks
def test_lite0_shapes_strides_and_sizes_at_256(lite0):
    assert lite0.channels == LITE0_CHANNELS
    assert lite0.reductions == (4, 8, 16, 32)
    with torch.no_grad():
        feats = lite0(images(size=256))
    assert [f.shape[1] for f in feats] == list(LITE0_CHANNELS)
    assert [f.shape[-1] for f in feats] == [64, 32, 16, 8]
    assert lite0.output_sizes(256) == ((64, 64), (32, 32), (16, 16), (8, 8))
    assert lite0.output_sizes(64) == ((56, 56), (28, 28), (14, 14), (7, 7))  # upsampled to 224


def test_ccm_csm_on_lite0_at_256(lite0):
    head = projected_gan.create(
        "projection_heads", "ccm_csm", channels=lite0.channels, reductions=lite0.reductions, seed=0
    )
    proj = Projector(lite0, head)
    with torch.no_grad():
        out = proj(images(size=256))
    assert [o.shape[1] for o in out] == [64, 64, 128, 256]
    assert [o.shape[-1] for o in out] == [128, 64, 32, 16]
    assert proj.channels == (64, 64, 128, 256)
    assert proj.reductions == (2, 4, 8, 16)
    assert proj.output_sizes(256) == ((128, 128), (64, 64), (32, 32), (16, 16))
    assert proj.output_sizes(128) == ((112, 112), (56, 56), (28, 28), (14, 14))


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_pretrained_weights_are_real_cat_photo(variant, offline):
    from skimage import data as skimage_data  # a dev dependency

    name = f"tf_efficientnet_lite{variant}"
    cat = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1)[None].float() / 127.5 - 1
    cat = F.interpolate(cat, size=(224, 224), mode="bilinear", antialias=True)

    classifier = create_timm_model(name, pretrained=True).eval()
    taps = {}
    network = projected_gan.create("feature_networks", name)
    for module_name in network.body.feature_info.module_name():
        classifier.get_submodule(module_name).register_forward_hook(
            lambda _m, _i, out, key=module_name: taps.__setitem__(key, out)
        )
    with torch.no_grad():
        label = int(classifier(cat).argmax())  # mean = std = 0.5: [-1, 1] is its own input
        feats = network(cat)
    assert 281 <= label <= 285, f"{name} labels the cat photo as ImageNet class {label}"
    assert len(taps) == len(feats) == 4
    for tapped, feat in zip(taps.values(), feats):
        torch.testing.assert_close(feat, tapped, rtol=0, atol=0)


def test_lite3_pretrained_offline_raises_explained_error(offline):
    # lite3 ships no weight package: offline, every source fails and the message says the ways.
    with pytest.raises(PretrainedWeightsError) as info:
        projected_gan.create("feature_networks", "tf_efficientnet_lite3", pretrained=True)
    message = str(info.value)
    assert isinstance(info.value, InputError)  # exit 2 and one line on the command line
    assert "\n" not in message
    for needle in ("tf_efficientnet_lite3", "weights=", "package", "timm", "pretrained=False"):
        assert needle in message


def test_missing_weight_package_is_reported(offline, monkeypatch):
    monkeypatch.setitem(
        WEIGHT_PACKAGES, "tf_efficientnet_lite0", ("no_such_pkg_xyz", "File", "no-such-pkg")
    )
    with pytest.raises(PretrainedWeightsError, match="'no-such-pkg': not installed"):
        TimmFeatureNetwork("tf_efficientnet_lite0")


def _lite2_random_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    return create_timm_model("tf_efficientnet_lite2", pretrained=False).state_dict()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_path_loads_by_name(tmp_path, suffix):
    state = _lite2_random_state()
    path = tmp_path / f"lite2{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    net = projected_gan.create("feature_networks", "tf_efficientnet_lite2", weights=str(path))
    loaded = net.body.state_dict()
    assert len(loaded) > 100
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_weights_path_in_another_naming_scheme_maps_in_order(tmp_path):
    state = _lite2_random_state()
    renamed = {f"other_scheme.{i}": v for i, v in enumerate(state.values())}
    torch.save(renamed, tmp_path / "renamed.pt")
    net = TimmFeatureNetwork("tf_efficientnet_lite2", weights=tmp_path / "renamed.pt")
    torch.testing.assert_close(net.body.conv_stem.weight, state["conv_stem.weight"])
    torch.testing.assert_close(
        net.body.blocks[6][0].conv_pwl.weight, state["blocks.6.0.conv_pwl.weight"]
    )


def test_weights_that_do_not_fit_fail_loudly(tmp_path):
    lite0_state = create_timm_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    torch.save(lite0_state, tmp_path / "lite0.pth")
    with pytest.raises(PretrainedWeightsError, match="296 tensors, the model 386"):
        TimmFeatureNetwork("tf_efficientnet_lite1", weights=tmp_path / "lite0.pth")
    for renamed in (False, True):
        bad = dict(lite0_state, **{"conv_stem.weight": torch.zeros(16, 3, 3, 3)})
        if renamed:  # the in-order path checks shapes too
            bad = {f"k{i}": v for i, v in enumerate(bad.values())}
        torch.save(bad, tmp_path / "bad.pth")
        with pytest.raises(PretrainedWeightsError, match=r"conv_stem.weight.*\(16, 3, 3, 3\)"):
            TimmFeatureNetwork("tf_efficientnet_lite0", weights=tmp_path / "bad.pth")
    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        TimmFeatureNetwork("tf_efficientnet_lite0", weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="pretrained=False"):
        TimmFeatureNetwork("tf_efficientnet_lite0", pretrained=False, weights=tmp_path / "x.pth")


def test_frozen_and_always_eval(lite0):
    assert not any(p.requires_grad for p in lite0.parameters())
    parent = nn.Sequential(lite0)
    parent.train()
    assert not lite0.training
    assert not any(m.training for m in lite0.modules())
    stats = {k: v.clone() for k, v in lite0.state_dict().items() if "running" in k}
    with torch.no_grad():
        lite0(images(size=64))
    after = lite0.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in stats.items())


def test_generic_timm_family_uses_the_models_own_normalisation():
    net = projected_gan.create("feature_networks", "timm/resnet18", pretrained=False)
    assert net.channels == (64, 128, 256, 512) and net.reductions == (4, 8, 16, 32)
    assert net.mean == pytest.approx((0.485, 0.456, 0.406))
    x = images(size=64)
    mean = torch.tensor(net.mean).view(1, 3, 1, 1)
    std = torch.tensor(net.std).view(1, 3, 1, 1)
    expected_input = F.interpolate(((x + 1) / 2 - mean) / std, size=(224, 224), mode="bilinear")
    with torch.no_grad():
        got = net(x)
        want = net.body(expected_input)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("resize", "size", "seen"),
    [
        ("upsample_only", 32, 48),
        ("upsample_only", 64, 64),
        ("always", 64, 48),
        ("always", 32, 48),
        ("never", 32, 32),
    ],
)
def test_resize_rule(resize, size, seen):
    net = Recorder(input_size=48, resize=resize)
    with torch.no_grad():
        feats = net(images(size=size))
    assert tuple(net.seen.shape[-2:]) == (seen, seen)
    assert net.seen_size(size) == net.seen_size((size, size)) == (seen, seen)
    assert net.output_sizes(size) == tuple(tuple(f.shape[-2:]) for f in feats)


def test_blur_removes_a_pixel_checkerboard_keeps_flat_areas_and_is_recorded():
    from projected_gan.projectors.feature_networks import binomial_blur

    flat = torch.full((1, 3, 16, 16), 0.3)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 2.0 - 1
    x = flat + 0.5 * checker.expand(1, 3, 16, 16)
    torch.testing.assert_close(binomial_blur(x), flat)  # zero response at Nyquist, gain 1 at DC
    period4 = torch.tensor([1.0, 1.0, -1.0, -1.0]).repeat(4).expand(1, 3, 16, 16)
    # response cos(pi f) ** (2 * passes) at f = 1/4 cycles per pixel: 1/2 per pass
    torch.testing.assert_close(binomial_blur(period4, 2)[..., 4:-4].abs().max(), torch.tensor(0.25))

    plain, blurred = Recorder(input_size=48), Recorder(input_size=48, blur=1)
    blurred.load_state_dict(plain.state_dict())
    with torch.no_grad():
        plain(flat + 0.5 * checker.expand(1, 3, 16, 16)), blurred(x)
        assert not torch.allclose(plain.seen, blurred.seen)
        blurred(x), plain(flat)
    torch.testing.assert_close(blurred.seen, plain.seen)  # the checkerboard never reaches it
    net = projected_gan.create(
        "feature_networks", "tf_efficientnet_lite0", pretrained=False, input_size=64, blur=2
    )
    assert net.blur == 2 and "blur=2" in repr(net)
    assert projected_gan.part_config(net)["kwargs"]["blur"] == 2
    with pytest.raises(ValueError, match="blur"):
        Recorder(blur=-1)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="resize"):
        Recorder(resize="sometimes")
    with pytest.raises(ValueError, match="input_size"):
        Recorder(input_size=None)
    with pytest.raises(ValueError, match="model_name"):
        create_timm_model("no_such_model_anywhere")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        Recorder()(torch.zeros(2, 1, 8, 8))


def test_every_builtin_and_a_plugin_is_creatable(plugin_dist):
    for variant in range(5):
        net = projected_gan.create(
            "feature_networks", f"tf_efficientnet_lite{variant}", pretrained=False
        )
        assert len(net.channels) == len(net.reductions) == 4
    plugin_dist(
        "tiny-fn-plugin",
        "0.1",
        {
            "tiny_fn_plugin": """
                from torch import nn
                from projected_gan.projectors import FeatureNetwork

                class TinyNet(FeatureNetwork):
                    '''A plugin feature network.'''

                    def __init__(self, width: int = 4, pretrained: bool = False):
                        super().__init__(resize="never", input_size=None)
                        self.conv = nn.Conv2d(3, width, 3, stride=2, padding=1)
                        self.channels, self.reductions = (width, width), (2, 2)
                        self.freeze()

                    def forward_features(self, x):
                        y = self.conv(x)
                        return [y, y.relu()]
            """
        },
        {"projected_gan.feature_networks": {"tiny_net": "tiny_fn_plugin:TinyNet"}},
    )
    net = projected_gan.create("feature_networks", "tiny_net", width=6)
    head = projected_gan.create(
        "projection_heads", "ccm_csm", channels=net.channels, reductions=net.reductions
    )
    with torch.no_grad():
        out = Projector(net, head)(images(size=32))
    assert [o.shape[1] for o in out] == [64, 64]
    assert [o.shape[-1] for o in out] == [32, 32]  # equal strides: deeper map is not resized


# ------------------------------------------------------------------------------------ heads
CH, RED = (8, 16, 32, 64), (4, 8, 16, 32)


def fake_features(seed: int = 0, size: int = 32, batch: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, size // r, size // r, generator=g) for c, r in zip(CH, RED)]


def test_same_seed_same_projection_other_seed_differs_global_rng_untouched():
    before = torch.get_rng_state()
    a, b = CCMCSM(CH, RED, seed=7), CCMCSM(CH, RED, seed=7)
    assert torch.equal(before, torch.get_rng_state())
    c = CCMCSM(CH, RED, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sc.keys() and len(sa) == 16  # 8 convs, weight + bias, all saved
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not any(torch.equal(sa[k], sc[k]) for k in sa)


def test_heads_are_frozen_and_restored_from_state_dict():
    a, c = CCMCSM(CH, RED, seed=1), CCMCSM(CH, RED, seed=2)
    assert not any(p.requires_grad for p in a.parameters())
    c.load_state_dict(a.state_dict())
    feats = fake_features()
    for x, y in zip(a(feats), c(feats)):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_ccm_channels_and_default_init_bounds():
    head = CCM(CH, RED, cout=16)
    assert head.channels == (16, 32, 64, 128) and head.reductions == RED
    assert CCM(CH, RED, cout=16, expand=False).channels == (16, 16, 16, 16)
    out = head(fake_features())
    assert [o.shape[1] for o in out] == [16, 32, 64, 128]
    for conv, cin in zip(head.ccm, CH):
        assert conv.weight.abs().max() <= cin**-0.5
        assert conv.bias.abs().max() <= cin**-0.5
        assert conv.weight.std() > 0.4 * cin**-0.5  # really spread over U(+-1/sqrt(fan_in))


def test_kaiming_init_scale():
    head = CCM((256,), (4,), cout=512, init="kaiming")
    w = head.ccm[0].weight
    assert w.std().item() == pytest.approx((2 / 256) ** 0.5, rel=0.05)
    assert torch.count_nonzero(head.ccm[0].bias) == 0


@pytest.mark.parametrize("kernel", [1, 3])
def test_csm_matches_the_definition(kernel):
    """Top-down: add deeper fused map, upsample x2 (align_corners=True), conv halving channels."""
    head = CCMCSM(CH, RED, cout=8, csm_kernel=kernel, seed=3)
    feats = fake_features()
    got = head(feats)
    mixed = [conv(f) for conv, f in zip(head.ccm, feats)]
    want, deeper = [None] * 4, None
    for i in (3, 2, 1, 0):
        x = mixed[i] if deeper is None else mixed[i] + deeper
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        want[i] = deeper = head.csm[i](x)
    assert head.channels == (8, 8, 16, 32)
    assert head.reductions == (2, 4, 8, 16)
    assert head.output_sizes((8, 4, 2, 1)) == (16, 8, 4, 2)
    assert head.output_sizes(((8, 6), (4, 3))) == ((16, 12), (8, 6))
    for g, w in zip(got, want):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_none_head_passes_features_through():
    head = projected_gan.create("projection_heads", "none", channels=CH, reductions=RED)
    assert isinstance(head, NoProjection) and head.channels == CH
    feats = fake_features()
    assert all(a is b for a, b in zip(head(feats), feats))
    with pytest.raises(ValueError, match="expects 4 feature maps"):
        head(feats[:3])


def test_head_bad_arguments_are_named():
    with pytest.raises(ValueError, match="csm_kernel"):
        CCMCSM(CH, RED, csm_kernel=2)
    with pytest.raises(ValueError, match="init"):
        CCM(CH, RED, init="orthogonal")
    with pytest.raises(ValueError, match="channels and reductions"):
        CCM(CH, RED[:2])


# --------------------------------------------------------------------------------- projector
def test_projector_checks_its_parts():
    net = Recorder(resize="never", input_size=None)
    with pytest.raises(ValueError, match="head expects feature channels"):
        Projector(net, CCM((8, 32), (2, 4)))
    with pytest.raises(TypeError, match="FeatureNetwork"):
        Projector(nn.Conv2d(3, 3, 1), CCM((8, 16), (2, 4)))
    proj = Projector(net)
    assert proj.channels == (8, 16) and isinstance(proj.head, NoProjection)
    proj.train()
    assert not proj.training and not any(p.requires_grad for p in proj.parameters())


def test_projector_channels_last_and_bf16_autocast():
    net = projected_gan.create(
        "feature_networks", "tf_efficientnet_lite0", resize="never", input_size=None
    )
    proj = Projector(net, CCMCSM(net.channels, net.reductions))
    x = images(size=64)
    with torch.no_grad():
        ref = proj(x)
        cl = proj(x.contiguous(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = proj(x)
    for r, c, b in zip(ref, cl, low):
        torch.testing.assert_close(c, r, rtol=1e-4, atol=1e-4)
        assert b.dtype == torch.bfloat16 and torch.isfinite(b).all()
        assert (b.float() - r).abs().mean() < 0.1 * r.abs().mean()
