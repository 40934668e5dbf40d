"""The plug-in registry: order, refusals, the real registries' contents, and config unions built from them."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pytest
from pydantic import TypeAdapter, ValidationError

from curate.registry import Registry
from curate.sections import Section, plugin_config


class Alpha:
    name = "alpha"
    description = "the first"


class Beta:
    name = "beta"
    description = "the second"


def test_register_get_and_names_keep_registration_order():
    registry: Registry[Any] = Registry("widget")
    assert registry.register(Beta) is Beta  # usable as a decorator: returns the class unchanged
    registry.register(Alpha)
    assert registry.names() == ["beta", "alpha"]
    assert registry.get("alpha") is Alpha and registry.get("beta") is Beta
    assert list(registry) == [Beta, Alpha] and len(registry) == 2
    assert "alpha" in registry and "gamma" not in registry
    assert registry.describe() == [("beta", "the second"), ("alpha", "the first")]


def test_register_works_as_class_decorator():
    registry: Registry[Any] = Registry("widget")

    @registry.register
    class Gamma:
        name = "gamma"

    assert registry.get("gamma") is Gamma


def test_duplicate_name_is_refused_naming_it():
    registry: Registry[Any] = Registry("widget")
    registry.register(Alpha)

    class OtherAlpha:
        name = "alpha"

    with pytest.raises(ValueError, match="widget 'alpha' registered twice"):
        registry.register(OtherAlpha)
    assert registry.get("alpha") is Alpha  # the first registration stands


def test_unknown_name_lists_known_names():
    registry: Registry[Any] = Registry("widget")
    registry.register(Alpha)
    registry.register(Beta)
    with pytest.raises(KeyError, match=r"unknown widget 'gamma'; known: alpha, beta"):
        registry.get("gamma")
    with pytest.raises(KeyError, match="known: none"):
        Registry("widget").get("alpha")


@pytest.mark.parametrize("name", [None, "", 42])
def test_plugin_without_a_name_is_refused(name):
    registry: Registry[Any] = Registry("widget")
    plugin = type("Nameless", (), {} if name is None else {"name": name})
    with pytest.raises(TypeError, match="has no 'name'"):
        registry.register(plugin)
    assert len(registry) == 0


def test_real_registries_hold_the_shipped_plugins():
    from curate.crowd import AGGREGATORS, BACKENDS
    from curate.executors import EXECUTORS
    from curate.exporters import WRITERS
    from curate.modes import MODES
    from curate.sources import SOURCES
    from curate.stages import STAGES

    assert "local" in SOURCES
    assert "simulated" in BACKENDS
    assert "majority" in AGGREGATORS
    assert "imagenet" in WRITERS
    assert "linear_probe" in MODES
    assert "local" in EXECUTORS
    assert STAGES.names() == ["synsets", "candidates", "annotate", "noise", "review", "export", "benchmark"]
    for stage in STAGES:
        assert STAGES.get(stage.name) is stage and stage.Config is not None


def test_every_configurable_plugin_config_type_defaults_to_its_name():
    from curate.crowd import AGGREGATORS, BACKENDS
    from curate.executors import EXECUTORS
    from curate.exporters import WRITERS
    from curate.modes import MODES
    from curate.sources import SOURCES

    registries = [SOURCES, BACKENDS, AGGREGATORS, WRITERS, MODES, EXECUTORS]
    for registry in registries:
        assert len(registry) >= 1, registry.kind
        for plugin in registry:
            field = plugin.Config.model_fields.get("type")
            assert field is not None, f"{registry.kind} {plugin.name}: Config has no 'type'"
            assert field.default == plugin.name, f"{registry.kind} {plugin.name}: type defaults to {field.default!r}"
        assert registry.configs() == [p.Config for p in registry]


# ---------------------------------------------------------------- a new plug-in is one class plus one registration
class FakeSource:
    """A plug-in shaped like a real source: a name, a description and a Config beside it."""

    name: ClassVar[str] = "a"
    description: ClassVar[str] = "fake source a"

    class Config(Section):
        type: Literal["a"] = "a"
        root: str = "."
        limit: int = 10


class OtherFakeSource:
    name: ClassVar[str] = "b"
    description: ClassVar[str] = "fake source b"

    class Config(Section):
        type: Literal["b"] = "b"
        token_env: str = "B_TOKEN"


def fresh_adapter() -> TypeAdapter:
    registry: Registry[Any] = Registry("image source")
    registry.register(FakeSource)
    registry.register(OtherFakeSource)
    return TypeAdapter(plugin_config(registry))


def test_plugin_config_picks_the_config_by_type():
    value = fresh_adapter().validate_python({"type": "a", "root": "/data", "limit": 3})
    assert isinstance(value, FakeSource.Config)
    assert (value.root, value.limit) == ("/data", 3)


def test_plugin_config_accepts_a_bare_name_as_shorthand():
    value = fresh_adapter().validate_python("b")
    assert isinstance(value, OtherFakeSource.Config)
    assert value.token_env == "B_TOKEN"


def test_plugin_config_rejects_unknown_keys_and_unknown_types():
    adapter = fresh_adapter()
    with pytest.raises(ValidationError) as excinfo:
        adapter.validate_python({"type": "a", "bogus": 1})
    assert any(err["type"] == "extra_forbidden" and err["loc"][-1] == "bogus" for err in excinfo.value.errors())
    with pytest.raises(ValidationError) as excinfo:
        adapter.validate_python({"type": "b", "limit": 3})  # a key of A's config is not one of B's
    assert any(err["type"] == "extra_forbidden" for err in excinfo.value.errors())
    with pytest.raises(ValidationError, match="union_tag_invalid|does not match any of the expected tags"):
        adapter.validate_python({"type": "c"})


def test_plugin_config_with_a_single_plugin():
    registry: Registry[Any] = Registry("image source")
    registry.register(FakeSource)
    adapter = TypeAdapter(plugin_config(registry))
    assert isinstance(adapter.validate_python("a"), FakeSource.Config)
    with pytest.raises(ValidationError):
        adapter.validate_python("b")
