"""The one registry helper behind every "choose one of" (modes, poolings, rigs, config choices)."""
import pytest

import models
import renderers
from registries import Registry, choose


def test_lookup_registration_and_the_one_message():
    reg = Registry("thing.kind", {"a": 1}, error=KeyError)

    @reg.register("b")
    def b():
        return 2

    assert reg.lookup("b") is b and list(reg) == ["a", "b"] and reg["a"] == 1
    with pytest.raises(KeyError, match=r"unknown thing.kind='c'; choose one of a, b"):
        reg.lookup("c")
    with pytest.raises(KeyError, match=r"unknown thing.kind=\['a'\]"):
        reg.lookup(["a"])  # unhashable input is an unknown name, not a TypeError
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(3)
    assert choose("k", 2, [1, 2]) == 2


@pytest.mark.parametrize("lookup, error, message", [
    (lambda: models.get_mode("frozen"), models.ConfigError,
     "unknown train.mode='frozen'; choose one of none,"),
    (lambda: models.make_pooling("sum", 8), models.ConfigError, "unknown model.pooling='sum'; choose one of"),
    (lambda: renderers.RIGS.lookup("ring7"), ValueError, "unknown render.rig='ring7'; choose one of ring12"),
])
def test_every_registry_uses_it(lookup, error, message):
    with pytest.raises(error, match=message):
        lookup()
