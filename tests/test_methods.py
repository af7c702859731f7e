"""Kernel tags: the one mapping between path names and (method, k)."""
import re

import pytest

from ntkscaling.pipeline import tags as methods


@pytest.mark.parametrize("tag,expected", [
    ("entk_init", {"method": "entk_init", "k": 0, "n": None}),
    ("entk_after_k256", {"method": "entk_after", "k": 256, "n": None}),
    ("entk_after_n64", {"method": "entk_after_n", "k": 64, "n": 64}),
    ("infinite_ntk", {"method": "infinite_ntk", "k": None, "n": None}),
])
def test_parse_tag(tag, expected):
    assert methods.parse_tag(tag) == expected
    assert re.fullmatch(methods.TAG_PATTERN, tag)


@pytest.mark.parametrize("bad", ["entk_after_k", "entk_after", "network", "entk_init2", "infinite"])
def test_bad_tags_are_refused(bad):
    with pytest.raises(ValueError, match="unknown"):
        methods.parse_tag(bad)
    assert not re.fullmatch(methods.TAG_PATTERN, bad)


def test_entk_tags():
    assert methods.entk_tags() == ["entk_init"]
    assert methods.entk_tags([16, 64], True, [8, 32]) == ["entk_init", "entk_after_k16", "entk_after_k64",
                                                          "entk_after_n8", "entk_after_n32"]


def test_every_method_is_declared_once_and_labelled_and_coloured():
    from ntkscaling.pipeline import tags as methods
    from ntkscaling import plotting
    from ntkscaling.analysis import scaling
    assert scaling.METHOD_ORDER is methods.METHODS
    assert set(plotting.METHOD_LABELS) == set(methods.METHODS) == set(plotting.METHOD_COLORS)
    tags = {methods.parse_tag(t)["method"] for t in ("entk_init", "entk_after_k8", "entk_after_n8", *methods.INFINITE_TAGS)}
    assert tags | set(methods.RIDGELESS_METHODS) == set(methods.METHODS)  # kernels, networks, the linearized one
