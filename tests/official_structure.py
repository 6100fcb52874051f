"""Pickles with the structure of the official Projected GAN code's snapshots, written by the tests.

No official code is used or imported: stand-in ``nn.Module`` classes carry the official import
paths (``pg_modules.blocks.DownBlock``, ...) and hold real torch layers with torch's hook-based
spectral norm, so their state has the official parameter names (``weight_orig``, ``weight_u``,
...). Each builder fills the official layout *from one of our modules' tensors*, slot by slot, so
that reading the pickle back must give a module that computes exactly what ours does. The
StyleGAN2 networks are written as ``torch_utils.persistence`` records whose ``module_src`` is a
placeholder that writes a marker file (and raises) if anything ever executes it.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import types
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils import spectral_norm

# timm 1.x classes in a lite0 trunk -> where timm 0.4.12 (the official pin) kept them
TIMM_2021 = {
    "Conv2dSame": ("timm.models.layers.conv2d_same", "Conv2dSame"),
    "DepthwiseSeparableConv": ("timm.models.efficientnet_blocks", "DepthwiseSeparableConv"),
    "InvertedResidual": ("timm.models.efficientnet_blocks", "InvertedResidual"),
    "BatchNormAct2d": ("torch.nn.modules.batchnorm", "BatchNorm2d"),
}


class OfficialPickler(pickle._Pickler):
    """Pickles classes (and functions) by the official path in their ``__official__``; timm's
    classes by where timm 0.4.12 kept them (``timm_paths``), or, with ``timm_paths = None``, by
    the installed timm's own paths (what a pickle written under timm >= 0.9 names)."""

    timm_paths: dict[str, tuple[str, str]] | None = TIMM_2021

    def save_global(self, obj: Any, name: str | None = None) -> None:
        path = getattr(obj, "__official__", None)
        timm_class = getattr(obj, "__module__", "").startswith("timm.")
        if path is None and timm_class and self.timm_paths is not None:
            path = self.timm_paths[obj.__name__]  # KeyError: a timm class the tests do not expect
        if path is None:
            return super().save_global(obj, name)
        self.save(path[0])
        self.save(path[1])
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)
        return None

    # the base class dispatches functions straight to its own save_global: route them here
    dispatch: ClassVar[dict] = {**pickle._Pickler.dispatch, types.FunctionType: save_global}


class NewTimmPickler(OfficialPickler):
    """As :class:`OfficialPickler`, with timm's classes under the installed (1.x) paths."""

    timm_paths = None


def dump(obj: Any, path: Path, pickler: type[OfficialPickler] = OfficialPickler) -> Path:
    buf = io.BytesIO()
    pickler(buf, protocol=4).dump(obj)
    path.write_bytes(buf.getvalue())
    return path


def official(module: str, name: str) -> type[nn.Module]:
    """A stand-in nn.Module class pickled as ``module.name``."""
    return type(name, (nn.Module,), {"__official__": (module, name)})


BLOCKS = "pg_modules.blocks"
GLU, Swish = official(BLOCKS, "GLU"), official(BLOCKS, "Swish")
InitLayer, SEBlock = official(BLOCKS, "InitLayer"), official(BLOCKS, "SEBlock")
NoiseInjection, CCBN = official(BLOCKS, "NoiseInjection"), official(BLOCKS, "CCBN")
UpBlockSmallCond = official(BLOCKS, "UpBlockSmallCond")
UpBlockBigCond = official(BLOCKS, "UpBlockBigCond")
DownBlock, FeatureFusionBlock = (
    official(BLOCKS, "DownBlock"),
    official(BLOCKS, "FeatureFusionBlock"),
)
Generator = official("pg_modules.networks_fastgan", "Generator")
DummyMapping = official("pg_modules.networks_fastgan", "DummyMapping")
FastganSynthesis = official("pg_modules.networks_fastgan", "FastganSynthesis")
FastganSynthesisCond = official("pg_modules.networks_fastgan", "FastganSynthesisCond")
ProjectedDiscriminator = official("pg_modules.discriminator", "ProjectedDiscriminator")
MultiScaleD = official("pg_modules.discriminator", "MultiScaleD")
SingleDisc = official("pg_modules.discriminator", "SingleDisc")
SingleDiscCond = official("pg_modules.discriminator", "SingleDiscCond")
F_RandomProj = official("pg_modules.projector", "F_RandomProj")


def _sn(layer: nn.Module, ours: nn.Module | None = None) -> nn.Module:
    """torch's hook spectral norm on ``layer``; with ``ours`` (an SN layer of this library),
    its weight, u, v (and bias) copied over."""
    dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
    layer = spectral_norm(layer, dim=dim)
    if ours is not None:
        sn = ours.parametrizations.weight
        with torch.no_grad():
            layer.weight_orig.copy_(sn.original)
            layer.weight_u.copy_(sn[0]._u)
            layer.weight_v.copy_(sn[0]._v)
            if getattr(ours, "bias", None) is not None:
                layer.bias.copy_(ours.bias)
    return layer


def _bn(ours: nn.Module | None, channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels)
    if ours is not None:
        bn.load_state_dict(ours.state_dict())
    return bn


def _noise(strength: torch.Tensor | None) -> nn.Module:
    noise = NoiseInjection()
    noise.weight = nn.Parameter(torch.zeros(1) if strength is None else strength.reshape(1))
    return noise


def _ccbn(ours: nn.Module, z_dim: int, channels: int) -> nn.Module:
    bn = CCBN()
    bn.gain = _sn(nn.Linear(z_dim, channels), ours.gain)
    bn.bias = _sn(nn.Linear(z_dim, channels), ours.bias)
    bn.register_buffer("stored_mean", ours.norm.running_mean.clone())
    bn.register_buffer("stored_var", ours.norm.running_var.clone())
    return bn


def _up_block(ours: nn.Module | None, cin: int, cout: int, big: bool, z_dim: int) -> nn.Module:
    """FastGAN's up-block in the official layout (Sequential slots, or the conditional class)."""
    conv = lambda i, c: _sn(  # noqa: E731
        nn.Conv2d(c, 2 * cout, 3, 1, 1, bias=False), None if ours is None else ours.convs[i]
    )
    strength = lambda i: None if ours is None else ours.noises[i].strength.detach()  # noqa: E731
    if ours is not None and ours.conditional:
        block = UpBlockBigCond() if big else UpBlockSmallCond()
        block.up = nn.Upsample(scale_factor=2, mode="nearest")
        if big:
            block.conv1, block.conv2 = conv(0, cin), conv(1, cout)
            block.bn1 = _ccbn(ours.norms[0], z_dim, 2 * cout)
            block.bn2 = _ccbn(ours.norms[1], z_dim, 2 * cout)
            block.act, block.noise = GLU(), _noise(strength(0))  # one noise layer, used twice
        else:
            block.conv, block.bn, block.act = (
                conv(0, cin),
                _ccbn(ours.norms[0], z_dim, 2 * cout),
                GLU(),
            )
        return block
    norm = lambda i: _bn(None if ours is None else ours.norms[i], 2 * cout)  # noqa: E731
    up = nn.Upsample(scale_factor=2, mode="nearest")
    if not big:
        return nn.Sequential(up, conv(0, cin), norm(0), GLU())
    return nn.Sequential(
        up, conv(0, cin), _noise(strength(0)), norm(0), GLU(),
        conv(1, cout), _noise(strength(1)), norm(1), GLU(),
    )  # fmt: skip


def _se(ours: nn.Module | None, cin: int, cout: int) -> nn.Module:
    block = SEBlock()
    gate = None if ours is None else ours.gate
    block.main = nn.Sequential(
        nn.AdaptiveAvgPool2d(4),
        _sn(nn.Conv2d(cin, cout, 4, 1, 0, bias=False), None if gate is None else gate[1]),
        Swish(),
        _sn(nn.Conv2d(cout, cout, 1, 1, 0, bias=False), None if gate is None else gate[3]),
        nn.Sigmoid(),
    )
    return block


def fastgan_generator(G: nn.Module) -> nn.Module:
    """Our FastGAN / FastGAN-lite ``G`` (img_resolution >= 128) as the official Generator.

    Like the official synthesis, the 256 px up-block and gate exist below 256 px too (random,
    unused); a conditional model's embedding has 1000 rows, ours in the first ``c_dim``.
    """
    ngf, z_dim, res, c_dim = G.ngf, G.z_dim, G.img_resolution, G.c_dim
    nfc = {r: int(m * ngf) for r, m in {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5,
                                         512: 0.25, 1024: 0.125}.items()}  # fmt: skip
    out = Generator()
    out.z_dim, out.c_dim, out.w_dim, out.img_resolution, out.img_channels = z_dim, c_dim, 0, res, 3
    out.mapping = DummyMapping()
    syn = FastganSynthesisCond() if c_dim else FastganSynthesis()
    syn.img_resolution, syn.z_dim = res, z_dim
    init = InitLayer()
    init.init = nn.Sequential(
        _sn(nn.ConvTranspose2d(z_dim, 2 * nfc[4], 4, 1, 0, bias=False), G.init.conv),
        _bn(G.init.norm, 2 * nfc[4]),
        GLU(),
    )
    syn.init = init
    stages = [8, 16, 32, 64, 128, 256] + [r for r in (512, 1024) if r <= res]
    for r in stages:
        ours = dict(G.up).get(str(r))
        setattr(syn, f"feat_{r}", _up_block(ours, nfc[r // 2], nfc[r], not G.lite, z_dim))
    for small, big in ((4, 64), (8, 128), (16, 256), (32, 512)):
        if big <= max(256, res) and (big != 512 or res > 256):
            ours = dict(G.sle).get(str(big))
            setattr(syn, f"se_{big}", _se(ours, nfc[small], nfc[big]))
    syn.to_big = _sn(nn.Conv2d(nfc[res], 3, 3, 1, 1, bias=True), G.to_rgb)
    if c_dim:
        syn.embed = nn.Embedding(1000, z_dim)
        with torch.no_grad():
            syn.embed.weight[:c_dim] = G.embed.weight
    out.synthesis = syn
    return out


def _down_block(ours: nn.Module) -> nn.Module:
    block = DownBlock()
    conv = ours[0]
    layer = nn.Conv2d(conv.in_channels, conv.out_channels, 4, 2, 1)
    block.main = nn.Sequential(_sn(layer, conv), _bn(ours[1], conv.out_channels), nn.LeakyReLU(0.2))
    return block


def lite0_trunk(timm_lite0: nn.Module) -> nn.Module:
    """The official ``pretrained`` trunk: layer0 = stem + blocks 0-1, layer1-3 = blocks 2, 3-4,
    5-6 of a timm EfficientNet-lite0."""
    trunk = nn.Module()
    m = timm_lite0
    trunk.layer0 = nn.Sequential(m.conv_stem, m.bn1, *m.blocks[0:2])
    trunk.layer1 = nn.Sequential(*m.blocks[2:3])
    trunk.layer2 = nn.Sequential(*m.blocks[3:5])
    trunk.layer3 = nn.Sequential(*m.blocks[5:9])
    return trunk


def projected_discriminator(D: nn.Module, trunk: nn.Module, img_resolution: int) -> nn.Module:
    """Our ProjectedDiscriminator (lite0, CCM+CSM, standard heads) as the official one."""
    out = ProjectedDiscriminator()
    out.diffaug, out.interp224 = True, img_resolution < 224
    proj = F_RandomProj()
    proj.proj_type, proj.cout, proj.expand = 2, 64, True
    proj.pretrained = trunk
    scratch = nn.Module()
    head = D.projector.head
    for i, conv in enumerate(head.ccm):
        setattr(scratch, f"layer{i}_ccm", _copy_conv(conv))
    for i in reversed(range(4)):
        fusion = FeatureFusionBlock()
        fusion.out_conv = _copy_conv(head.csm[i])
        setattr(scratch, f"layer{i}_csm", fusion)
    proj.scratch = scratch
    out.feature_network = proj
    multi = MultiScaleD()
    discs = {}
    heads = D.discriminator
    for i, disc in enumerate(heads.discs):
        *downs, final = list(disc.main)
        single = SingleDiscCond() if heads.num_classes else SingleDisc()
        last = _sn(nn.Conv2d(final.in_channels, final.out_channels, 4, 1, 0, bias=False), final)
        layers = [_down_block(b) for b in downs]
        if heads.num_classes:
            single.main = nn.Sequential(*layers)
            single.cls = last
            single.embed = nn.Embedding(1000, 128)
            embed, linear, _ = heads.embeds[i]
            with torch.no_grad():
                single.embed.weight[: heads.num_classes] = embed.weight
            single.embed_proj = nn.Sequential(nn.Linear(128, 64), nn.LeakyReLU(0.2))
            single.embed_proj[0].load_state_dict(linear.state_dict())
        else:
            single.main = nn.Sequential(*layers, last)
        discs[str(i)] = single
    multi.mini_discs = nn.ModuleDict(discs)
    out.discriminator = multi
    return out


def _copy_conv(conv: nn.Conv2d) -> nn.Conv2d:
    layer = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, bias=True)
    layer.load_state_dict(conv.state_dict())
    return layer


# ------------------------------------------------------------------------------ StyleGAN2


def placeholder_source(marker: Path) -> str:
    """A module source that writes ``marker`` and raises if it is ever executed."""
    return (
        f"open({str(marker)!r}, 'w').write('the pickle source was executed')\n"
        "raise RuntimeError('placeholder networks_stylegan2 source executed')\n"
    )


def source_sha256(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def _reconstruct(meta: dict) -> Any:  # never called: pickled by its official path only
    raise AssertionError("not to be called")


_reconstruct.__official__ = ("torch_utils.persistence", "_reconstruct_persistent_obj")


class Persistent(nn.Module):
    """Pickles as the official persistence record of ``class_name`` with ``source``."""

    def __init__(self, class_name: str, source: str, **attrs: Any) -> None:
        super().__init__()
        self._record = (class_name, source)
        self.__dict__.update(attrs)

    def __reduce_ex__(self, protocol: int) -> Any:
        class_name, source = self._record
        state = {k: v for k, v in self.__dict__.items() if k != "_record"}
        meta = {
            "type": "class",
            "version": 6,
            "module_src": source,
            "class_name": class_name,
            "state": state,
        }
        return _reconstruct, (meta,)


def _fc(source: str, weight: torch.Tensor, bias: torch.Tensor, lr: float = 1.0) -> Persistent:
    fc = Persistent(
        "FullyConnectedLayer", source, weight_gain=lr / weight.shape[1] ** 0.5, bias_gain=lr
    )
    fc.weight, fc.bias = nn.Parameter(weight.clone()), nn.Parameter(bias.clone())
    return fc


def stylegan2_generator(G: nn.Module, source: str) -> Persistent:
    """Our StyleGAN2 ``G`` as the official persistent Generator (skip architecture).

    The label embedding (an equalised-lr linear layer there) is written so that it gives our
    embedding rows for one-hot labels: weight = rows.T / gain, bias 0.
    """
    kw = {"z_dim": G.z_dim, "c_dim": G.c_dim, "w_dim": G.w_dim}
    kw.update(img_resolution=G.img_resolution, img_channels=G.img_channels)
    out = Persistent("Generator", source, num_ws=G.num_ws, **kw)
    out._init_kwargs = {
        **kw,
        "mapping_kwargs": {"num_layers": len(G.mapping_network.layers)},
        "channel_base": 256,
        "channel_max": 64,
        "conv_clamp": 256,
    }
    out._init_args = ()
    net = G.mapping_network
    mapping = Persistent(
        "MappingNetwork", source, num_layers=len(net.layers), w_avg_beta=net.w_avg_beta, **kw
    )
    for i, layer in enumerate(net.layers):
        setattr(mapping, f"fc{i}", _fc(source, layer.weight, layer.bias, layer.bias_gain))
    if G.c_dim:
        gain = 1 / G.c_dim**0.5
        mapping.embed = _fc(source, net.embed.weight.T / gain, torch.zeros(G.w_dim))
    mapping.register_buffer("w_avg", net.w_avg.clone())
    out.mapping = mapping
    synthesis = Persistent("SynthesisNetwork", source, w_dim=G.w_dim)
    fir = torch.tensor([1.0, 3.0, 3.0, 1.0])
    fir = torch.outer(fir, fir) / 64
    for block in G.synthesis_network.blocks:
        res = block.resolution
        b = Persistent("SynthesisBlock", source, resolution=res, architecture="skip")
        if block.is_first:
            b.const = nn.Parameter(block.const.detach().clone())
        layers = [("conv1", block.conv1)] if block.is_first else [
            ("conv0", block.conv0), ("conv1", block.conv1)
        ]  # fmt: skip
        for name, ours in layers:
            layer = Persistent("SynthesisLayer", source, resolution=res, up=int(ours.up) + 1)
            layer.affine = _fc(source, ours.affine.weight, ours.affine.bias)
            layer.weight = nn.Parameter(ours.weight.detach().clone())
            layer.noise_strength = nn.Parameter(ours.noise.strength.detach().clone())
            layer.bias = nn.Parameter(ours.bias.detach().clone())
            layer.register_buffer("noise_const", ours.noise.noise_const[0, 0].clone())
            if ours.up:
                layer.register_buffer("resample_filter", fir.clone())
            setattr(b, name, layer)
        torgb = Persistent("ToRGBLayer", source)
        torgb.affine = _fc(source, block.torgb.affine.weight, block.torgb.affine.bias)
        torgb.weight = nn.Parameter(block.torgb.weight.detach().clone())
        torgb.bias = nn.Parameter(block.torgb.bias.detach().clone())
        b.torgb = torgb
        b.register_buffer("resample_filter", fir.clone())
        setattr(synthesis, f"b{res}", b)
    out.synthesis = synthesis
    return out


def snapshot(G: nn.Module, G_ema: nn.Module, D: nn.Module | None, nimg: int = 123_000) -> dict:
    """The dict the official training loop pickles into ``network-snapshot.pkl``."""
    data: dict[str, Any] = {"G": G, "G_ema": G_ema}
    if D is not None:
        data["D"] = D
    data["training_set_kwargs"] = {"path": "/data/flowers.zip", "resolution": 128, "max_size": 8}
    data["progress"] = {
        "cur_nimg": torch.LongTensor([nimg]),
        "cur_tick": torch.LongTensor([3]),
        "batch_idx": torch.LongTensor([50]),
        "best_fid": 9999,
    }
    return data
