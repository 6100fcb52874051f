import pytest

import projected_gan
from projected_gan.registry import Registry, UnknownPartError


@pytest.fixture
def reg():
    return Registry("widgets", "widget")


def test_register_create_get_names_contains(reg):
    @reg.register("alpha", aliases=("a",), tags=("small",))
    def alpha(size: int = 3, *, scale: float = 1.0):
        """An alpha widget."""
        return ("alpha", size, scale)

    @reg.register()
    class Beta:
        """Beta widget.

        More text.
        """

        def __init__(self, depth: int = 2):
            self.depth = depth

    assert reg.create("alpha", size=5) == ("alpha", 5, 1.0)
    assert reg.create("a") == ("alpha", 3, 1.0)  # alias
    assert reg.get("Beta") is Beta
    assert reg.create("Beta", depth=7).depth == 7
    assert reg.names() == ["Beta", "alpha"]
    assert reg.names("al*") == ["alpha"]
    assert reg.names(tags=["small"]) == ["alpha"]
    assert "alpha" in reg and "a" in reg and "gamma" not in reg and 3 not in reg
    card = reg.describe("alpha")
    assert "An alpha widget." in card
    assert "size = 3" in card and "scale = 1.0" in card
    assert "built-in" in card
    assert reg.entry("Beta").summary == "Beta widget."
    assert reg.entry("Beta").defaults() == {"depth": 2}


def test_unknown_name_suggests_close_matches(reg):
    reg.add("fastgan", lambda: None)
    reg.add("fastgan_lite", lambda: None)
    with pytest.raises(UnknownPartError) as info:
        reg.create("fastgun")
    msg = str(info.value)
    assert isinstance(
        info.value, projected_gan.InputError
    )  # exit 2 and one line on the command line
    assert "'fastgun' is not a registered widget" in msg
    assert "did you mean 'fastgan'" in msg
    assert "projected-gan list widgets" in msg


def test_double_registration_needs_override(reg):
    reg.add("x", lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("x", lambda: 2)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("y", lambda: 2, aliases=("x",))
    reg.add("x", lambda: 3, override=True)
    assert reg.create("x") == 3


def test_bad_names_and_non_callables_are_refused(reg):
    with pytest.raises(ValueError, match="invalid name"):
        reg.add("has space", lambda: 1)
    with pytest.raises(TypeError):
        reg.add("z", 42)


def test_top_level_create_and_list_parts():
    kinds = projected_gan.list_parts()
    assert set(kinds) == {
        "feature_networks",
        "projection_heads",
        "discriminators",
        "generators",
        "losses",
        "augmentations",
        "metrics",
        "loggers",
    }
    with pytest.raises(UnknownPartError, match="did you mean 'generators'"):
        projected_gan.create("generator", "fastgan")


def test_family_prefix_binds_member_name(reg):
    def timm_net(model_name: str, pretrained: bool = True):
        """Any timm model."""
        return (model_name, pretrained)

    reg.add("timm/", timm_net)
    assert reg.create("timm/resnet50", pretrained=False) == ("resnet50", False)
    assert "timm/convnext_tiny" in reg
    assert reg.entry("timm/x").summary == "Any timm model."
    assert "pretrained = True" in reg.describe("timm/resnet50")
    assert "timm/" in reg.names()
    assert "timm/" not in [n for n in reg.names() if not n.endswith("/")]
