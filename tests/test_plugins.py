"""Entry-point discovery with real pip-installed plugin packages (one good, one that fails to import)."""

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """An environment whose path holds both test packages, installed by pip (entry points and all)."""
    target = tmp_path_factory.mktemp("site-packages")
    for package in ("llm_demo_plugin", "llm_broken_plugin"):
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
             "--target", str(target), str(FIXTURES / package)],
            check=True,
        )  # fmt: skip
    return {**os.environ, "PYTHONPATH": str(target), "HYDRA_FULL_ERROR": "", "WANDB_MODE": "offline"}


def run(env, *args, module="lightning_llm"):
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.slow
def test_listing_shows_the_plugin_and_names_the_broken_package(plugin_env):
    result = run(plugin_env, "optim", module="lightning_llm.plugins")
    assert result.returncode == 0, result.stderr
    assert "demo_sgd" in result.stdout and "[llm-demo-plugin]" in result.stdout
    assert "lr=0.05 momentum=0.0" in result.stdout
    assert "llm-broken-plugin" in result.stderr and "ImportError" in result.stderr


@pytest.mark.slow
def test_plugin_config_comes_from_its_signature(plugin_env):
    result = run(plugin_env, "optim=demo_sgd", "optim.momentum=0.5", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert "name: demo_sgd" in result.stdout and "momentum: 0.5" in result.stdout
    bad = run(plugin_env, "optim=demo_sgd", "optim.lrr=1")
    assert bad.returncode != 0
    assert "optim 'demo_sgd' has no parameter 'lrr' (did you mean 'lr'?)" in bad.stderr


def test_selecting_a_missing_name_mentions_the_broken_package(plugin_env):
    result = run(plugin_env, "optim=broken_lion")
    assert result.returncode != 0
    assert "unknown optim 'broken_lion'" in result.stderr
    assert "llm-broken-plugin: ImportError" in result.stderr


@pytest.mark.slow
def test_cli_trains_with_a_third_party_optimizer(plugin_env, tmp_path):
    run_dir = tmp_path / "run"
    result = run(
        plugin_env,
        *TINY,
        "optim=demo_sgd",
        "scheduler=demo_step",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["step"] == 8
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert "name: demo_sgd" in (run_dir / ".hydra" / "config.yaml").read_text()


class FakeEntryPoint:
    """An installed package's entry point: loading it runs ``body`` (its import)."""

    def __init__(self, name, body):
        self.name, self.value, self.dist, self.body = name, f"{name}:plugins", None, body

    def load(self):
        self.body()


def load_entry_points(monkeypatch, entries: list[FakeEntryPoint]) -> None:
    """``plugins.load()`` from a fresh start, with ``entries`` as the installed packages' entry points."""
    from lightning_llm import plugins, registry

    monkeypatch.setattr(plugins, "entry_points", lambda group: entries)
    monkeypatch.setattr(plugins, "_loaded", False)
    monkeypatch.setattr(registry, "_BROKEN", {})
    plugins.load()


def write_package(tmp_path, monkeypatch, name: str, init: str, conf: dict[str, str] | None = None):
    """A package ``name`` importable from ``tmp_path`` (``init`` its __init__.py, ``conf`` its packaged
    files by path), and its entry point."""
    import importlib

    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text(init)
    for path, text in (conf or {}).items():
        (package / path).parent.mkdir(parents=True, exist_ok=True)
        (package / path).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)  # another case's import
    return FakeEntryPoint(name, lambda: importlib.import_module(name))


def declare_optimizer(plugin_name, **defaults):
    """A third party's optimizer whose signature has ``defaults`` (as annotated parameters)."""
    from lightning_llm import registry

    def body():
        def make(params, lr: float = 0.1, **_):
            raise AssertionError("never built")

        parameters = [inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        parameters += [
            inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=value, annotation=annotation)
            for key, (annotation, value) in defaults.items()
        ]
        make.__signature__ = inspect.Signature(parameters)
        registry.register("optim", plugin_name)(make)

    return body


def test_a_package_whose_declaration_no_command_could_read_is_skipped_not_fatal(
    own_registry, monkeypatch, caplog
):
    """Each of these used to fail every command (--help and the listing too) with a traceback, whether or
    not the run used the plugin; now the package is named as failed, its plugins are left out, and the rest
    loads."""
    import torch

    from lightning_llm import registry

    def exits():
        raise SystemExit(3)

    def bad_name():
        registry.register("optim", "my/opt")(lambda params, lr=0.1: None)

    def preset_name():  # conf/scheduler/linear_to_zero.yaml would be chosen by scheduler=linear_to_zero
        registry.register("scheduler", "linear_to_zero")(lambda optimizer, total_steps, power=2.0: None)

    packages = {
        "pkg_named": declare_optimizer("named", name=(str, "x")),  # the framework's own field
        "pkg_preset": preset_name,
        "pkg_fw": declare_optimizer("fw", decay_embeddings=(bool, False)),  # a key the framework adds
        "pkg_dtype": declare_optimizer("dtyped", dtype=(torch.dtype, torch.float32)),  # not a config value
        "pkg_exit": exits,
        "pkg_slash": bad_name,
        "pkg_good": declare_optimizer("goodopt", momentum=(float, 0.9)),
    }
    fakes = [FakeEntryPoint(name, body) for name, body in packages.items()]
    load_entry_points(monkeypatch, fakes)
    assert caplog.text.count("failed to load and is skipped") == 6  # one line each, logged
    broken = registry.broken()
    assert sorted(broken) == ["pkg_dtype", "pkg_exit", "pkg_fw", "pkg_named", "pkg_preset", "pkg_slash"]
    assert "scheduler=linear_to_zero is lightning_llm's preset conf/scheduler/" in broken["pkg_preset"]
    assert "parameter name is a name the framework gives every optim node" in broken["pkg_named"]
    assert "parameter decay_embeddings is a name the framework" in broken["pkg_fw"]
    assert "SystemExit: 3" in broken["pkg_exit"]
    assert "a plugin name is ASCII letters, digits" in broken["pkg_slash"]
    assert "\n" not in broken["pkg_dtype"]  # one line, not OmegaConf's full_key and object_type lines
    assert "goodopt" in registry.names("optim")
    assert not {"named", "fw", "dtyped"} & set(registry.names("optim"))


def test_a_package_that_replaced_a_built_in_and_then_failed_leaves_the_built_in(own_registry, monkeypatch):
    from lightning_llm import registry

    built_in = registry.get("optim", "adamw")

    def replaces_then_fails():
        registry.register("optim", "adamw", replace=True)(lambda params, lr=0.1: None)
        raise RuntimeError("boom after registering")

    load_entry_points(monkeypatch, [FakeEntryPoint("pkg", replaces_then_fails)])
    assert registry.get("optim", "adamw") is built_in
    assert "boom after registering" in registry.broken()["pkg"]


def test_a_dict_default_and_an_enum_parameter_are_config_values(own_registry):
    """A dict default is copied per node like a list one; an Enum is checked by name and handed to the
    plugin as the member, whether it was overridden or not."""
    import enum

    from omegaconf import OmegaConf

    from lightning_llm import config, registry

    class Mode(enum.Enum):
        FAST = "fast"
        SLOW = "slow"

    @registry.register("optim", "modal")
    def modal(params, mode: Mode = Mode.FAST, extra: dict = {"a": 1}):  # noqa: B006 - the case tested
        raise AssertionError("never built")

    node = OmegaConf.structured(config.schema(registry.get("optim", "modal")))
    assert node.mode is Mode.FAST and node.extra == {"a": 1}
    node.mode = "SLOW"
    assert node.mode is Mode.SLOW
    with pytest.raises(Exception, match="Invalid value 'bogus'"):
        node.mode = "bogus"


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [("lr: 0.2\nlrr: 3\n", "ConfigKeyError: Key 'lrr' not in"), ("lr: [0.2\n", "ParserError")],
)
def test_a_package_whose_packaged_defaults_do_not_fit_fails_at_load(
    own_registry, tmp_path, monkeypatch, yaml_text, expected
):
    """A plugin package's conf/<kind>/<name>.yaml is checked against its signature when the package loads,
    naming the file: it used to be a traceback in every command (--help too), at the ConfigStore."""
    from lightning_llm import registry

    init = (
        "from lightning_llm import register\n"
        "@register('optim', 'pkgy')\n"
        "def pkgy(params, lr: float = 0.1):\n"
        "    raise AssertionError('never built')\n"
    )
    entry = write_package(tmp_path, monkeypatch, "pkg_yaml", init, {"conf/optim/pkgy.yaml": yaml_text})
    load_entry_points(monkeypatch, [entry])
    broken = registry.broken()["pkg_yaml"]
    assert "optim 'pkgy': its packaged defaults (conf/optim/pkgy.yaml)" in broken and expected in broken
    assert "pkgy" not in registry.names("optim")


def test_a_listed_plugins_packaged_defaults_apply(own_registry, tmp_path, monkeypatch):
    """A metric's or callback's conf/<kind>/<name>.yaml was checked at load but never applied (only the
    config groups' were, through their config nodes)."""
    from lightning_llm import config

    init = (
        "from lightning_llm import register\n"
        "@register('metric', 'pkgm')\n"
        "def pkgm(every: int = 1, scale: float = 1.0):\n"
        "    raise AssertionError('never built')\n"
    )
    entry = write_package(tmp_path, monkeypatch, "pkg_listed", init, {"conf/metric/pkgm.yaml": "every: 3\n"})
    load_entry_points(monkeypatch, [entry])
    assert config.plugin_params("metric", "pkgm")[1] == {"every": 3, "scale": 1.0}
    assert config.plugin_params("metric", {"name": "pkgm", "every": 5})[1] == {"every": 5, "scale": 1.0}


def test_a_package_a_broken_one_imported_first_still_loads(own_registry, tmp_path, monkeypatch):
    """The broken package's import of a healthy one stayed in sys.modules, so the healthy package's own entry
    point imported nothing and registered nothing: its plugins were gone, and it was not said to be broken."""
    import importlib

    from lightning_llm import registry

    (tmp_path / "pkg_zb.py").write_text(
        "from lightning_llm import register\n"
        "@register('optim', 'from_b')\n"
        "def from_b(params, lr: float = 0.1):\n"
        "    raise AssertionError('never built')\n"
    )
    (tmp_path / "pkg_aa.py").write_text("import pkg_zb\nraise RuntimeError('aa is broken')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("pkg_aa", "pkg_zb"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    entries = [
        FakeEntryPoint(name, lambda name=name: importlib.import_module(name)) for name in ("pkg_aa", "pkg_zb")
    ]
    load_entry_points(monkeypatch, entries)
    assert list(registry.broken()) == ["pkg_aa"]
    assert registry.get("optim", "from_b").source == "pkg_zb"


def test_of_two_packages_claiming_a_name_the_first_by_name_keeps_it(own_registry, monkeypatch):
    """Which one kept it followed the order of sys.path, so one machine's run used the other's plugin."""
    from lightning_llm import registry

    entries = [
        FakeEntryPoint(name, declare_optimizer("shared", lr=(float, 0.1))) for name in ("pkg_z", "pkg_a")
    ]
    load_entry_points(monkeypatch, entries)
    assert registry.get("optim", "shared").source == "pkg_a"


def test_a_value_a_parameter_without_a_type_cannot_take_is_named(own_registry):
    """``lr=0.1`` without an annotation takes any value from the config: optim.lr=abc reached the plugin and
    came back as float()'s "could not convert string to float", naming no key."""
    import torch

    from lightning_llm import cli, config, registry

    @registry.register("optim", "untyped")
    def untyped(params, lr=0.1):
        return torch.optim.SGD(params, lr=float(lr))

    from hydra.core.config_store import ConfigStore

    config.store_schemas()
    try:
        with pytest.raises(cli.ConfigError, match=r"optim.lr='abc': optim 'untyped' declares no type for lr"):
            cli.precheck(["optim=untyped", "optim.lr=abc"])
        cli.precheck(["optim=untyped", "optim.lr=0.5"])
    finally:  # Hydra's store is the process's: other tests list the options
        repo = ConfigStore.instance().repo
        repo["optim"].pop("untyped.yaml", None)
        repo["schema"]["optim"].pop("untyped.yaml", None)
