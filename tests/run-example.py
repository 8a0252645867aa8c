"""Runs the README's example server and checks one exchange, byte-exact."""
import select
import signal
import socket
import subprocess
import sys
import time

TIMEOUT = 10


def wait_listening(proc):
    """Returns (host, port) from the server's 'listening on' line."""
    deadline = time.monotonic() + TIMEOUT
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stderr], [], [], left)[0]:
            sys.exit("example: no 'listening on' line within %d s" % TIMEOUT)
        chunk = proc.stderr.read1(1) if hasattr(proc.stderr, "read1") else proc.stderr.read(1)
        if not chunk:
            sys.exit("example: exited before listening")
        line += chunk
    text = line.decode().strip()
    prefix = "listening on tcp://"
    if not text.startswith(prefix):
        sys.exit("example: unexpected line %r" % text)
    host, port = text[len(prefix):].rsplit(":", 1)
    return host, int(port)


def main():
    proc = subprocess.Popen([sys.argv[1], "tcp://127.0.0.1:0"],
                            stderr=subprocess.PIPE)
    try:
        addr = wait_listening(proc)
        with socket.create_connection(addr, timeout=TIMEOUT) as s:
            s.sendall(b"hello, sockit!\n")
            s.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        if got != b"HELLO, SOCKIT!\n":
            sys.exit("example: got %r" % got)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=TIMEOUT)
        if code != 0:
            sys.exit("example: exit status %d after SIGTERM" % code)
        print("example: ok")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
