"""One error type for what the user got wrong: every user-facing exception class of the package
derives from ``InputError``, the command line catches that one type (exit 2, one line), and the
commonest offline mistake, missing pretrained weights, is one of them."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import projected_gan
from projected_gan.errors import InputError
from tests.test_user_errors import one_line_exit_2, run_main

# Exception classes that are not about the user's input, and why. Anything else defined in the
# package must derive from InputError.
NOT_USER_ERRORS = {
    "projected_gan.training.state.TrainingStopped": "the run stopped on purpose (exit 1)",
    "projected_gan.training.recovery.HealthStopped": "a health check stopped the run (exit 3)",
    "projected_gan.data.store.CacheWriteError": "the disk refused a write (an OSError)",
    "projected_gan.data.store._Untrusted": "private: a cache to rebuild, never raised to a user",
    "projected_gan.data.store._NothingReadable": "private: caught inside the cache builder",
}


def package_exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in a module of ``projected_gan`` (warnings excluded)."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(projected_gan.__path__, "projected_gan."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(obj, BaseException)
                and not issubclass(obj, Warning)
                and obj.__module__ == module.__name__
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_every_user_facing_exception_derives_from_input_error():
    classes = package_exception_classes()
    # The walk must really see the package's errors (a broken walk would pass vacuously).
    for known in ("CheckpointError", "UnknownPartError", "PretrainedWeightsError", "DataError"):
        assert any(name.endswith("." + known) for name in classes), known
    stray = sorted(
        name
        for name, cls in classes.items()
        if not issubclass(cls, InputError) and name not in NOT_USER_ERRORS
    )
    assert not stray, f"user-facing errors that do not derive from InputError: {stray}"
    gone = sorted(set(NOT_USER_ERRORS) - set(classes))
    assert not gone, f"NOT_USER_ERRORS names classes that no longer exist: {gone}"


def test_the_cli_catches_input_error_alone():
    # One except clause for user errors: no list of types to forget one from.
    import ast

    source = inspect.getsource(importlib.import_module("projected_gan.cli").main)
    handlers = [n for n in ast.walk(ast.parse(source.strip())) if isinstance(n, ast.ExceptHandler)]
    caught = [ast.unparse(h.type) for h in handlers if h.type is not None]
    assert "InputError" in caught
    assert not any("," in c for c in caught), caught


def test_missing_pretrained_weights_offline_exits_2_in_one_line(capsys, offline, tmp_path):
    # lite3 ships no weight package: offline every source fails. A new user's commonest mistake.
    code, _, err = run_main(
        capsys,
        "train",
        "--dry-run",
        "--set",
        "discriminator.feature_network={name: tf_efficientnet_lite3, pretrained: true}",
        "--set",
        f"output.dir={tmp_path}",
    )
    one_line_exit_2(code, err)
    assert "tf_efficientnet_lite3" in err and "pretrained" in err


@pytest.mark.parametrize(
    "name", ["UnknownPartError", "PluginError", "CheckpointError", "MetricWeightsError"]
)
def test_public_error_types_are_input_errors(name):
    assert issubclass(getattr(projected_gan, name, None) or _find(name), InputError)


def _find(name: str) -> type:
    return next(cls for key, cls in package_exception_classes().items() if key.endswith(name))
