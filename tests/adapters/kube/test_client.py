"""The kubernetes client's connection pool, sized to the threads that call it (no network needed)."""

from kubernetes import client

from flowpods.kube.client import Kube


def test_the_pool_keeps_as_many_connections_as_asked_and_the_loaded_configuration() -> None:
    default = client.Configuration.get_default_copy()
    kube = Kube(pool_size=32)
    assert kube.api.rest_client.pool_manager.connection_pool_kw["maxsize"] == 32
    assert kube.api.configuration.host == default.host
    assert client.Configuration.get_default_copy().connection_pool_maxsize == default.connection_pool_maxsize


def test_without_a_size_the_library_default_stays() -> None:
    kube = Kube()
    maxsize = kube.api.rest_client.pool_manager.connection_pool_kw["maxsize"]
    assert maxsize == client.Configuration.get_default_copy().connection_pool_maxsize
