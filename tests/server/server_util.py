"""Helpers for the chatterbox-server tests and bench: a tiny model directory
from the fixtures, a server process on a loopback port, raw HTTP and a
minimal WebSocket client (standard library only)."""
import base64
import http.client
import json
import os
import re
import socket
import struct
import subprocess
import threading
import time

SENTENCE = "the little robot counted stones by the river"


def make_model_dir(fixtures, out):
    """The tts example's tiny random-weight Chatterbox directory (plumbing only)."""
    os.makedirs(out, exist_ok=True)
    for src, dst in [("t3/t3_tiny.safetensors", "t3_cfg.safetensors"), ("t3/tokenizer_tiny.json", "tokenizer.json"),
                     ("t3/conds_tiny.pt", "conds.pt"), ("s3gen/flow_tiny.safetensors", "s3gen.safetensors")]:
        d = os.path.join(out, dst)
        if not os.path.exists(d):
            os.symlink(os.path.join(fixtures, src), d)
    return out


def model_args(name, model_dir, fixtures):
    return ["--model", f"{name}={model_dir}", "--model-prop", f"{name}:vocoder=hift",
            "--model-prop", f"{name}:hift-model={fixtures}/hift/hift_tiny.safetensors",
            "--model-prop", f"{name}:greedy=true"]


class Server:
    """A chatterbox-server process on 127.0.0.1 (port chosen by the kernel unless given)."""

    def __init__(self, binary, args, port=0, log=None):
        self.log = open(log, "w") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen([binary, "--listen", f"127.0.0.1:{port}"] + args, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} (rc {self.proc.wait()})")
        self.port = int(m.group(1))

    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=60):
        c = self.conn(timeout)
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data

    def metrics(self):
        _, _, data = self.request("GET", "/metrics")
        out = {}
        for line in data.decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def rss(self):
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def speech_raw(port, body, timeout=60):
    """Sends a speech request on a raw socket (Connection: close); returns the socket."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    payload = json.dumps(body).encode()
    s.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
              b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
    return s


def ttfb_request(port, body, timeout=120, path="/v1/audio/speech", host="127.0.0.1"):
    """One request with a stopwatch: (status, seconds to the first body byte, total seconds, body bytes)."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    first = r.read(1)
    t1 = time.monotonic()
    rest = r.read()
    t2 = time.monotonic()
    c.close()
    return r.status, t1 - t0, t2 - t0, len(first) + len(rest)


class WebSocket:
    """A minimal RFC 6455 client: text out (masked), text/binary in."""

    def __init__(self, port, path, timeout=60):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.s.recv(4096)
            if not chunk:
                raise RuntimeError("connection closed during the handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        self.status = int(head.split()[1])

    def _recv(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send_text(self, text):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        hdr = bytes([0x81])
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack(">Q", n)
        self.s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        """(opcode, payload); opcode 1 text, 2 binary, 8 close."""
        b0, b1 = self._recv(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._recv(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._recv(8))[0]
        if b1 & 0x80:
            mask = self._recv(4)
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._recv(n)))
        else:
            data = self._recv(n)
        return b0 & 0x0F, data

    def close(self):
        self.s.close()


def wait_for(pred, timeout, step=0.05):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(step)
    return None
