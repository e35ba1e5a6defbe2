"""The broker configuration the stack writes, for one node and for three."""

import socket
from pathlib import Path

import pytest

from medstream import stack as local_stack
from medstream.stack import Stack, _node_properties


def props(stack: Stack, node_index: int = 0) -> dict[str, str]:
    text = _node_properties(stack, stack.kafka_nodes[node_index])
    return dict(line.split("=", 1) for line in text.splitlines())


def test_single_node_is_combined_broker_and_controller(tmp_path: Path) -> None:
    p = props(Stack(tmp_path))
    assert p["process.roles"] == "broker,controller"
    assert p["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert p["auto.create.topics.enable"] == "false"
    assert p["group.initial.rebalance.delay.ms"] == "0"
    assert p["offsets.topic.replication.factor"] == "1"


def test_cluster_has_three_voters_rf3_min_isr2_and_no_unclean_election(tmp_path: Path) -> None:
    stack = Stack(tmp_path, cluster=True)
    assert len(stack.kafka_nodes) == 3
    ports = {n.broker_port for n in stack.kafka_nodes} | {
        n.controller_port for n in stack.kafka_nodes
    }
    assert len(ports) == 6
    for index in range(3):
        p = props(stack, index)
        assert p["node.id"] == str(index + 1)
        assert len(p["controller.quorum.voters"].split(",")) == 3
        assert p["default.replication.factor"] == "3"
        assert p["min.insync.replicas"] == "2"
        assert p["offsets.topic.replication.factor"] == "3"
        assert p["unclean.leader.election.enable"] == "false"
        assert p["auto.create.topics.enable"] == "false"


def test_single_and_cluster_never_share_ports_or_folders(tmp_path: Path) -> None:
    single, cluster = Stack(tmp_path), Stack(tmp_path, cluster=True)
    assert not {n.broker_port for n in single.kafka_nodes} & {
        n.broker_port for n in cluster.kafka_nodes
    }
    assert single.kafka_dir != cluster.kafka_dir


def test_a_redis_still_loading_its_file_is_not_healthy_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis accepts connections before it has loaded its append-only file and answers
    only afterwards: the health check must say "not yet", not raise a timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        monkeypatch.setattr(local_stack, "LOCAL_REDIS_PORT", listener.getsockname()[1])
        assert local_stack.redis_healthy(Stack(tmp_path)) is False
    finally:
        listener.close()
