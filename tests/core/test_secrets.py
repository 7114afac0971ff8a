"""Secrets by reference: the executor renders a marker, the worker resolves it and masks the value."""

from __future__ import annotations

import pytest

from flowpods.core import secrets
from flowpods.core.templating import render


def test_a_rendered_task_refers_to_its_secrets_by_name_only():
    task = render({"uri": "https://x/?k={{ secret('API_KEY') }}", "headers": {"A": "{{ secret('db.pass') }}"}}, {})
    assert "API_KEY" in task["uri"] and secrets.names(task) == ["API_KEY", "db.pass"]


def test_resolving_replaces_every_marker_and_returns_the_values_to_mask():
    task = render({"a": "{{ secret('A') }}-{{ secret('A') }}", "b": ["{{ secret('B') }}"]}, {})
    resolved, used = secrets.resolve(task, {"A": "alpha", "B": "beta"}.get)
    assert resolved == {"a": "alpha-alpha", "b": ["beta"]}
    assert sorted(used) == ["alpha", "beta"]


def test_a_missing_secret_names_the_kubernetes_secret_and_the_local_option():
    with pytest.raises(secrets.MissingSecret) as caught:
        secrets.resolve(render("{{ secret('NOPE') }}", {}), lambda name: None)
    assert "'NOPE'" in str(caught.value) and secrets.SECRET_OBJECT in str(caught.value)
    assert "--secrets" in str(caught.value)


def test_masking_reaches_nested_values_and_leaves_tiny_values_alone():
    assert secrets.mask({"k": ["token=abc123", 1]}, ["abc123"]) == {"k": ["token=******", 1]}
    assert secrets.mask("a b c", ["a"]) == "a b c"


def test_the_worker_variable_name_is_a_valid_environment_name():
    assert secrets.env_name("db.pass-word") == "FLOWPODS_SECRET_db_pass_word"
