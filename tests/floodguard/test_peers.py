"""Who owns the other end of a local TCP connection, from /proc/net/tcp."""

from __future__ import annotations

import os
import socket
import sys

from ssd.floodguard.peers import local_peer_uid, owner_in_table, proc_address

TABLE = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11 1 0
   1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1002        0 12 1 0
"""


def test_proc_address_is_the_kernels_spelling() -> None:
    """Each 32-bit word of the address in host order, in hex, then the port."""
    if sys.byteorder == "little":
        assert proc_address("127.0.0.1", 8080) == "0100007F:1F90"
    assert proc_address("::1", 1).endswith(":0001")
    assert len(proc_address("::1", 1)) == 32 + 5


def test_owner_in_table_finds_the_line_of_that_connection() -> None:
    """The uid column of the line whose local and remote ends are the ones asked for."""
    assert owner_in_table(TABLE, "0100007F:C350", "0100007F:1F90") == 1002
    assert owner_in_table(TABLE, "0100007F:1F90", "0100007F:C350") is None


def test_local_peer_uid_of_a_real_connection() -> None:
    """Both ends of a loopback connection made here are ours; a socket with no peer has no owner."""
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()) as client:
        conn, _ = server.accept()
        with conn:
            assert local_peer_uid(conn) == os.getuid()
            assert local_peer_uid(client) == os.getuid()
        assert local_peer_uid(server) is None
