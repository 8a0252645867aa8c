"""Runs the README's examples: the server, over plain TCP and over TLS
(with certificates made here by openssl), and the TLS client against it,
checking every answer byte-exact."""
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

TIMEOUT = 10


def wait_listening(proc, scheme):
    """Returns (host, port) from the server's 'listening on' line."""
    deadline = time.monotonic() + TIMEOUT
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stderr], [], [], left)[0]:
            sys.exit("example: no 'listening on' line within %d s" % TIMEOUT)
        chunk = proc.stderr.read1(1)
        if not chunk:
            sys.exit("example: exited before listening")
        line += chunk
    text = line.decode().strip()
    prefix = "listening on %s://" % scheme
    if not text.startswith(prefix):
        sys.exit("example: unexpected line %r" % text)
    host, port = text[len(prefix):].rsplit(":", 1)
    return host, int(port)


def plain_exchange(addr):
    with socket.create_connection(addr, timeout=TIMEOUT) as s:
        s.sendall(b"hello, sockit!\n")
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    return got


def make_certs(d):
    """A CA and a certificate for 127.0.0.1 signed by it."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=example CA")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey",
        "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2",
        "-extfile", "san.ext")


def client(binary, endpoint):
    return subprocess.run([binary, endpoint, "hello, sockit!"],
                          capture_output=True, timeout=TIMEOUT)


def serve(binary, endpoint, scheme, check):
    proc = subprocess.Popen([binary, endpoint], stderr=subprocess.PIPE)
    try:
        check(wait_listening(proc, scheme))
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=TIMEOUT)
        if code != 0:
            sys.exit("example: exit status %d after SIGTERM" % code)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main():
    server, tls_client = sys.argv[1], sys.argv[2]

    def check_plain(addr):
        got = plain_exchange(addr)
        if got != b"HELLO, SOCKIT!\n":
            sys.exit("example: got %r" % got)

    serve(server, "tcp://127.0.0.1:0", "tcp", check_plain)
    with tempfile.TemporaryDirectory() as d:
        make_certs(d)
        cert = os.path.join(d, "server.pem")
        key = os.path.join(d, "server.key")
        ca = os.path.join(d, "ca.pem")

        def check_tls(addr):
            ep = "tls://%s:%d" % addr
            r = client(tls_client, ep + ",ca=" + ca)
            if (r.returncode, r.stdout) != (0, b"HELLO, SOCKIT!\n"):
                sys.exit("example: tls client: %d %r %r" %
                         (r.returncode, r.stdout, r.stderr))
            r = client(tls_client, ep)  # the system store knows no such CA
            want = b"certificate verify failed (unable to get local " \
                   b"issuer certificate)\n"
            if (r.returncode, r.stdout, r.stderr) != (1, b"", want):
                sys.exit("example: unverified tls client: %d %r %r" %
                         (r.returncode, r.stdout, r.stderr))

        serve(server, "tls://127.0.0.1:0,cert=%s,key=%s" % (cert, key),
              "tls", check_tls)
    print("example: ok")


if __name__ == "__main__":
    main()
