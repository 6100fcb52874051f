"""Entry-point plugins, with real throwaway distributions on sys.path."""

import os
import subprocess
import sys
import warnings

import pytest

import projected_gan
from projected_gan.registry import PluginError, PluginWarning, Registry

GOOD = {
    "my_pg_plugin.nets": """
        import torch

        class MyNet(torch.nn.Module):
            '''A plugin feature network.'''
            channels = (8,)
            reductions = (2,)

            def __init__(self, width: int = 8):
                super().__init__()
                self.width = width

        def build(width: int = 8, pretrained: bool = False):
            '''Build the plugin network.'''
            return MyNet(width)
    """,
    "my_pg_plugin.__init__": "",
}


def test_plugin_is_lazy_and_creatable(plugin_dist):
    plugin_dist(
        "my-pg-plugin",
        "0.3.1",
        GOOD,
        {"projected_gan.feature_networks": {"my_net": "my_pg_plugin.nets:build"}},
    )
    reg = projected_gan.FEATURE_NETWORKS
    assert "my_net" in reg.names()  # listed from metadata ...
    assert "my_pg_plugin.nets" not in sys.modules  # ... without importing it
    assert reg.plugin_distribution("my_net") == "my-pg-plugin 0.3.1"
    net = projected_gan.create("feature_networks", "my_net", width=5)
    assert type(net).__module__ == "my_pg_plugin.nets"
    assert net.width == 5
    card = reg.describe("my_net")
    assert "plugin my-pg-plugin 0.3.1" in card and "width = 8" in card


def test_broken_plugin_raises_plugin_error_and_spares_the_rest(plugin_dist):
    plugin_dist(
        "broken-plugin",
        "1.0",
        {"broken_pg.__init__": "", "broken_pg.nets": "raise ImportError('no cuda toolkit')\n"},
        {"projected_gan.losses": {"bad_loss": "broken_pg.nets:build"}},
    )
    assert "bad_loss" in projected_gan.LOSSES.names()
    with pytest.raises(PluginError) as info:
        projected_gan.create("losses", "bad_loss")
    msg = str(info.value)
    assert "bad_loss" in msg and "broken-plugin" in msg and "no cuda toolkit" in msg
    assert isinstance(info.value.__cause__, ImportError)
    # Other parts still work.
    assert projected_gan.LOSSES.names() is not None


def test_non_callable_plugin_is_refused(plugin_dist):
    plugin_dist(
        "odd-plugin",
        "0.1",
        {"odd_pg.__init__": "", "odd_pg.things": "NUMBER = 42\n"},
        {"projected_gan.generators": {"not_callable": "odd_pg.things:NUMBER"}},
    )
    with pytest.raises(PluginError, match=r"not callable.*odd-plugin"):
        projected_gan.GENERATORS.get("not_callable")


def test_clash_with_builtin_is_refused(plugin_dist):
    reg = Registry("clashkind", "clash part")

    def builtin():
        return "built-in"

    reg.add("same", builtin)
    plugin_dist(
        "clash-plugin",
        "0.1",
        GOOD,
        {"projected_gan.clashkind": {"same": "my_pg_plugin.nets:build"}},
    )
    with pytest.warns(PluginWarning, match="clash-plugin.*taken by built-in"):
        assert reg.create("same") == "built-in"
        reg.names()


def test_disable_env(plugin_dist, monkeypatch):
    plugin_dist(
        "my-pg-plugin",
        "0.3.1",
        GOOD,
        {"projected_gan.feature_networks": {"my_net": "my_pg_plugin.nets:build"}},
    )
    reg = projected_gan.FEATURE_NETWORKS
    monkeypatch.setenv("PROJECTED_GAN_DISABLE_PLUGINS", "1")
    assert "my_net" not in reg.names()
    assert "my_net" not in reg
    monkeypatch.setenv("PROJECTED_GAN_DISABLE_PLUGINS", "other,my_net")
    assert "my_net" not in reg
    monkeypatch.setenv("PROJECTED_GAN_DISABLE_PLUGINS", "my-pg-plugin")
    assert "my_net" not in reg
    monkeypatch.setenv("PROJECTED_GAN_DISABLE_PLUGINS", "something_else")
    assert "my_net" in reg


def _cli(args, extra_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(extra_path), *sys.path]))
    return subprocess.run(
        [sys.executable, "-m", "projected_gan", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_lists_plugin_with_distribution_and_broken_one_does_not_break_import(plugin_dist):
    root = plugin_dist(
        "my-pg-plugin",
        "0.3.1",
        GOOD,
        {"projected_gan.feature_networks": {"my_net": "my_pg_plugin.nets:build"}},
    )
    # A second, broken plugin in the same place: import and listing must survive it.
    broken = {"broken_pg.__init__": "", "broken_pg.nets": "raise RuntimeError('boom')\n"}
    for module, source in broken.items():
        path = root / (module.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    ep_file = next(root.glob("*.dist-info")) / "entry_points.txt"
    ep_file.write_text(ep_file.read_text() + "bad_net = broken_pg.nets:build\n")

    out = _cli(["list", "feature_networks"], root)
    assert out.returncode == 0, out.stderr
    assert "my_net  [plugin: my-pg-plugin 0.3.1]" in out.stdout
    assert "bad_net" in out.stdout

    out = _cli(["describe", "feature_networks", "bad_net"], root)
    assert out.returncode == 2
    assert "boom" in out.stderr and "my-pg-plugin" in out.stderr
    assert "Traceback" not in out.stderr


def test_warnings_are_not_raised_for_plain_listing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        projected_gan.list_parts()


def test_unknown_name_says_plugins_are_disabled(plugin_dist, monkeypatch):
    plugin_dist(
        "my-pg-plugin",
        "0.3.1",
        GOOD,
        {"projected_gan.feature_networks": {"my_net": "my_pg_plugin.nets:build"}},
    )
    reg = projected_gan.FEATURE_NETWORKS
    reg.names()  # read the entry points once, as any listing does
    monkeypatch.setenv("PROJECTED_GAN_DISABLE_PLUGINS", "1")
    with pytest.raises(projected_gan.UnknownPartError) as info:
        reg.entry("my_net")
    assert "my-pg-plugin" in str(info.value) and "PROJECTED_GAN_DISABLE_PLUGINS" in str(info.value)
    with pytest.raises(projected_gan.UnknownPartError) as info:
        reg.entry("no_such_net")
    assert "disables plugins" in str(info.value)
    monkeypatch.delenv("PROJECTED_GAN_DISABLE_PLUGINS")
    with pytest.raises(projected_gan.UnknownPartError) as info:
        reg.entry("no_such_net")
    assert "PROJECTED_GAN_DISABLE_PLUGINS" not in str(info.value)
