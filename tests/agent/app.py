"""Test workloads for the node agent's end-to-end tests, standard library only.

Each mode is one program a pod runs:
  http-server PORT                  HTTP/1.1 server; GET /work?sleep_ms=N&status=C sleeps and answers C;
                                    GET /admin?fail_ratio=R&sleep_ms=N changes how it answers from then on
                                    (a share R of requests fail with 500, each takes N ms more)
  http-client URL COUNT [--traceparent] [--path P]
                                    COUNT keep-alive GETs; prints one JSON line per request
                                    (status, trace_id and parent_id of the traceparent it sent)
  http-load URL SECONDS RATE [--traceparent] [--connect-each]
                                    RATE keep-alive GETs per second for SECONDS; prints a JSON summary;
                                    with --connect-each, one connection (and name lookup) per GET
  tcp-sink PORT REPLY               accepts one connection, reads to EOF, answers REPLY bytes;
                                    prints the bytes it read
  tcp-send HOST PORT BYTES          sends BYTES, half-closes, reads to EOF; prints the bytes read
  connect HOST PORT TIMEOUT         one connect attempt; prints ok, refused or timeout
  dns-server PORT NAME=IP...        answers A queries for the names given, NXDOMAIN otherwise;
                                    NAME=SERVFAIL answers that name with SERVFAIL
  resolve NAME                      resolves through the system resolver; prints the address
                                    or NXDOMAIN
  delay-link NODE_NS POD_NS DEVICE DELAY_MS
                                    a link with a delay, as `tc netem delay` would make on a kernel
                                    that has it: a TUN device `eth0` in POD_NS and one named DEVICE
                                    in NODE_NS, joined by this process, which holds every packet
                                    the pod sends for DELAY_MS; a line `LOSS_PERCENT DELAY_MS` on
                                    stdin changes the link, as `tc qdisc change ... netem` would:
                                    it then also drops that share of packets each way
"""

import collections
import ctypes
import fcntl
import http.client
import http.server
import json
import os
import random
import select
import socket
import struct
import sys
import time
import urllib.parse


BEHAVIOUR = {"fail_ratio": 0.0, "sleep_ms": 0, "served": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/admin":
            BEHAVIOUR["fail_ratio"] = float(query.get("fail_ratio", [BEHAVIOUR["fail_ratio"]])[0])
            BEHAVIOUR["sleep_ms"] = int(query.get("sleep_ms", [BEHAVIOUR["sleep_ms"]])[0])
            status, sleep_ms = 200, 0
        else:
            BEHAVIOUR["served"] += 1
            sleep_ms = int(query.get("sleep_ms", ["0"])[0]) + BEHAVIOUR["sleep_ms"]
            status = int(query.get("status", ["200"])[0])
            # Every n-th request fails, n = 1/ratio: a steady share, not a random one.
            ratio = BEHAVIOUR["fail_ratio"]
            if ratio > 0 and BEHAVIOUR["served"] % max(1, round(1 / ratio)) == 0:
                status = 500
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
        body = b"ok\n" if status < 400 else b"failed\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def http_server(port):
    server = http.server.ThreadingHTTPServer(("0.0.0.0", int(port)), Handler)
    server.daemon_threads = True
    print("listening", flush=True)
    server.serve_forever()


def http_client(url, count, *options):
    parsed = urllib.parse.urlparse(url)
    traced = "--traceparent" in options
    path = parsed.path or "/"
    if parsed.query:
        path += "?" + parsed.query
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=10)
    for _ in range(int(count)):
        headers = {}
        trace_id = parent_id = ""
        if traced:
            trace_id = os.urandom(16).hex()
            parent_id = os.urandom(8).hex()
            headers["traceparent"] = f"00-{trace_id}-{parent_id}-01"
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        print(json.dumps({"status": response.status, "trace_id": trace_id, "parent_id": parent_id}), flush=True)
    connection.close()


def http_load(url, seconds, rate, *options):
    parsed = urllib.parse.urlparse(url)
    traced = "--traceparent" in options
    connect_each = "--connect-each" in options
    path = parsed.path + ("?" + parsed.query if parsed.query else "")
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=10)
    period = 1 / float(rate)
    deadline = time.monotonic() + float(seconds)
    next_at = time.monotonic()
    statuses = {}
    while time.monotonic() < deadline:
        headers = {}
        if traced:
            headers["traceparent"] = f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            statuses[response.status] = statuses.get(response.status, 0) + 1
        except (OSError, http.client.HTTPException):
            connection.close()
            statuses["error"] = statuses.get("error", 0) + 1
        if connect_each:
            connection.close()
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
    connection.close()
    print(json.dumps(statuses), flush=True)


def tcp_sink(port, reply):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", int(port)))
    listener.listen(1)
    print("listening", flush=True)
    connection, _ = listener.accept()
    received = 0
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            break
        received += len(chunk)
    connection.sendall(b"r" * int(reply))
    connection.close()
    print(received, flush=True)


def tcp_send(host, port, count):
    connection = socket.create_connection((host, int(port)), timeout=30)
    remaining = int(count)
    block = b"s" * 65536
    while remaining:
        sent = connection.send(block[: min(remaining, len(block))])
        remaining -= sent
    connection.shutdown(socket.SHUT_WR)
    received = 0
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            break
        received += len(chunk)
    connection.close()
    print(received, flush=True)


def connect(host, port, timeout):
    attempt = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    attempt.settimeout(float(timeout))
    try:
        attempt.connect((host, int(port)))
        print("ok", flush=True)
    except ConnectionRefusedError:
        print("refused", flush=True)
    except (socket.timeout, TimeoutError):
        print("timeout", flush=True)
    finally:
        attempt.close()


def dns_server(port, *entries):
    zone = {}
    for entry in entries:
        name, address = entry.split("=")
        zone[name.lower().rstrip(".")] = address
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("0.0.0.0", int(port)))
    print("listening", flush=True)
    while True:
        query, client = server.recvfrom(512)
        if len(query) < 12:
            continue
        ident, _flags, qdcount = struct.unpack("!HHH", query[:6])
        if qdcount != 1:
            continue
        labels, offset = [], 12
        while offset < len(query) and query[offset]:
            length = query[offset]
            labels.append(query[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
            offset += 1 + length
        question_end = offset + 5
        question = query[12:question_end]
        qtype = struct.unpack("!H", query[offset + 1 : offset + 3])[0]
        name = ".".join(labels).lower()
        address = zone.get(name)
        if address is None or address == "SERVFAIL":
            rcode = 3 if address is None else 2
            header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, 0, 0, 0)
            server.sendto(header + question, client)
        elif qtype == 1:
            header = struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0)
            answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 300, 4) + socket.inet_aton(address)
            server.sendto(header + question + answer, client)
        else:
            header = struct.pack("!HHHHHH", ident, 0x8180, 1, 0, 0, 0)
            server.sendto(header + question, client)


def resolve(name):
    try:
        infos = socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)
        print(infos[0][4][0], flush=True)
    except socket.gaierror:
        print("NXDOMAIN", flush=True)


def enter_netns(name):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), f"setns {name}")
    os.close(fd)


def open_tun(name):
    tun = os.open("/dev/net/tun", os.O_RDWR)
    # TUNSETIFF with IFF_TUN | IFF_NO_PI: bare IP packets.
    fcntl.ioctl(tun, 0x400454CA, struct.pack("16sH", name.encode(), 0x0001 | 0x1000))
    return tun


def delay_link(node_ns, pod_ns, device, delay_ms):
    enter_netns(node_ns)
    node_side = open_tun(device)
    enter_netns(pod_ns)
    pod_side = open_tun("eth0")
    watched = [pod_side, node_side, sys.stdin.fileno()]
    delay, loss = int(delay_ms) / 1000, 0.0
    commands = b""
    held = collections.deque()  # (due, packet): what the pod sent, in order
    print("listening", flush=True)
    while True:
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else None
        ready, _, _ = select.select(watched, [], [], timeout)
        for fd in ready:
            if fd == sys.stdin.fileno():
                read = os.read(fd, 4096)
                if not read:
                    watched.remove(fd)  # the test closed its end: the link stays as it is
                    continue
                commands += read
                while b"\n" in commands:
                    line, commands = commands.split(b"\n", 1)
                    percent, milliseconds = line.split()
                    loss, delay = float(percent) / 100, int(milliseconds) / 1000
                continue
            try:
                packet = os.read(fd, 65536)
            except OSError:
                # EIO while a device is still down: nothing to move yet.
                time.sleep(0.01)
                continue
            if loss and random.random() < loss:
                continue
            if fd == pod_side:
                # In order, as on a wire, also when the delay has just shrunk.
                due = max(time.monotonic() + delay, held[-1][0] if held else 0.0)
                held.append((due, packet))
            else:
                forward(pod_side, packet)
        now = time.monotonic()
        while held and held[0][0] <= now:
            forward(node_side, held.popleft()[1])


def forward(fd, packet):
    try:
        os.write(fd, packet)
    except OSError:
        pass  # the device is down: a lossy link drops it


MODES = {
    "http-server": http_server,
    "http-client": http_client,
    "http-load": http_load,
    "tcp-sink": tcp_sink,
    "tcp-send": tcp_send,
    "connect": connect,
    "dns-server": dns_server,
    "resolve": resolve,
    "delay-link": delay_link,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
