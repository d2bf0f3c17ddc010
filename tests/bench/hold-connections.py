#!/usr/bin/env python3
"""Opens N loopback TCP connections, sends 100 bytes each way on each, and holds them open.

    tests/bench/hold-connections.py N SECONDS [PORT]

For measuring what the node agent's per-scan refresh of its socket map costs per socket
(docs/benchmarks.md, "What the refresh costs"). Prints "ready" once every connection is open.
"""
import resource
import socket
import sys
import time


def main():
    count, seconds = int(sys.argv[1]), float(sys.argv[2])
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 18557
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4096)
    held = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = listener.accept()
        client.sendall(b"q" * 100)
        server.recv(100)
        server.sendall(b"a" * 100)
        client.recv(100)
        held += [client, server]
    print("ready", flush=True)
    time.sleep(seconds)


if __name__ == "__main__":
    main()
