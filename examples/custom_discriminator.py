"""Compose a custom ProjectedDiscriminator around your own feature network.

The feature network below is written the way a plugin would write it: subclass
``FeatureNetwork`` (normalisation, resize rule and freezing come with it), say what it returns
(``channels``, ``reductions``), and register it. A separate distribution would instead declare

    [project.entry-points."projected_gan.feature_networks"]
    edge_pyramid = "my_package.nets:EdgePyramid"

and ``projected_gan.create("feature_networks", "edge_pyramid")`` would find it.

It is then composed two ways (by registered names and dicts; from ready modules) and trained
for a few D and G steps on random images. Runs on a CPU in seconds:

    python examples/custom_discriminator.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import projected_gan
from projected_gan.discriminators import MultiScaleDiscriminator, ProjectedDiscriminator
from projected_gan.projectors import CCMCSM, FeatureNetwork, Projector


@projected_gan.FEATURE_NETWORKS.register("edge_pyramid")
class EdgePyramid(FeatureNetwork):
    """Fixed colour + Sobel-edge pyramid at strides 2, 4, 8, 16 (needs no pretrained weights)."""

    def __init__(self, width: int = 16, seed: int = 0) -> None:
        super().__init__(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize="never", input_size=None)
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
        # per colour channel: identity, d/dx, d/dy -> 9 maps
        kernels = torch.zeros(9, 1, 3, 3)
        kernels[0::3, 0, 1, 1] = 1.0
        kernels[1::3, 0] = sobel
        kernels[2::3, 0] = sobel.T
        self.register_buffer("kernels", kernels)
        # fixed random 1x1 mixes widen each level: the "features" of this toy network
        g = torch.Generator().manual_seed(seed)
        self.mix = nn.ParameterList(
            nn.Parameter(torch.randn(width * 2**i, 9, 1, 1, generator=g) / 3) for i in range(4)
        )
        self.channels = tuple(width * 2**i for i in range(4))
        self.reductions = (2, 4, 8, 16)
        self.freeze()

    def forward_features(self, x: Tensor) -> list[Tensor]:
        maps = []
        for mix in self.mix:
            x = F.avg_pool2d(x, 2)
            edges = F.conv2d(x, self.kernels, padding=1, groups=3)  # (B, 9, h, w)
            maps.append(F.relu(F.conv2d(edges, mix)))
        return maps


def main() -> None:
    torch.manual_seed(0)
    resolution, batch = 64, 2

    # 1. By registered names and dicts: every part is wired from the previous one.
    disc = ProjectedDiscriminator(
        feature_network={"name": "edge_pyramid", "width": 16},
        projection_head={"name": "ccm_csm", "cout": 32, "seed": 1},
        discriminator={"name": "multiscale", "norm": "group"},
        augment="color,translation,cutout",
        img_resolution=resolution,
    )
    print(
        f"by name:   projector channels {disc.projector.channels}, sizes "
        f"{disc.projector.output_sizes(resolution)}"
    )

    # 2. From ready modules: your own projector and your own heads.
    net = EdgePyramid(width=8)
    projector = Projector(net, CCMCSM(net.channels, net.reductions, cout=16, csm_kernel=3))
    heads = MultiScaleDiscriminator(
        projector.channels, projector.reductions, projector.seen_size(resolution), separable=True
    )
    disc2 = ProjectedDiscriminator(projector=projector, discriminator=heads, augment=None)
    print(f"by module: logits per image {heads.num_logits}")

    # A few steps of hinge training on random "reals" against a toy generator.
    loss = projected_gan.create("losses", "hinge")
    generator = nn.Sequential(nn.Linear(32, 3 * resolution * resolution), nn.Tanh())
    opt_d = torch.optim.Adam(disc.trainable_parameters(), lr=2e-4, betas=(0.0, 0.99))
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.0, 0.99))
    reals = torch.rand(batch, 3, resolution, resolution) * 2 - 1
    for step in range(2):
        # D step: fakes without autograd, so the projector runs without it too
        with torch.no_grad():
            fakes = generator(torch.randn(batch, 32)).view(batch, 3, resolution, resolution)
        loss_d, _ = loss.d_loss(disc(reals), disc(fakes))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # G step: the gradient flows through the frozen projector back to the images
        disc.requires_grad_(False)
        fakes = generator(torch.randn(batch, 32)).view(batch, 3, resolution, resolution)
        loss_g, _ = loss.g_loss(disc(fakes))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        disc.requires_grad_(True)
        print(f"step {step}: loss_d {loss_d.item():.3f}  loss_g {loss_g.item():.3f}")

    logits = disc2(reals)
    trainable = sum(p.numel() for p in disc.trainable_parameters())
    frozen = sum(p.numel() for p in disc.projector.parameters())
    print(f"logits {tuple(logits.shape)}; trainable {trainable:,}; frozen projector {frozen:,}")


if __name__ == "__main__":
    main()
