"""Shared helpers for the TLS integration tests (test_tls_serve, test_tls_tools).

Certificates are made at test time with the `openssl` command, once per test process, in a
temporary directory removed at exit (certs()). The peers are Python's `ssl` module, `openssl
s_client` / `s_server` and socat's OPENSSL addresses; none of them was written here.

Run standalone to make the certificates and print what OpenSSL says of each:

    cd tests/integration && python3 tls_helpers.py
"""

import atexit
import itertools
import os
import re
import select
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from helpers import (MIB, SOCAT, START_TIMEOUT, TIMEOUT, SockitTest, die_with_parent,
                     first_difference, free_port, server_env)

OPENSSL = shutil.which('openssl')
TLS_TIMEOUT = 10.0          # bound for any TLS socket operation
DAYS = '3650'

# What X509_verify_cert_error_string() says in OpenSSL 3.0 (main() checks them with `openssl verify`).
REASON_SELF_SIGNED = 'self-signed certificate'
REASON_NO_ISSUER = 'unable to get local issuer certificate'
REASON_HOSTNAME = 'hostname mismatch'
REASON_IP = 'IP address mismatch'
REASON_EXPIRED = 'certificate has expired'

_LEAF = 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n'
_EXT = {
    'ca': 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n',
    'server': _LEAF + 'extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n',
    'wronghost': _LEAF + 'extendedKeyUsage=serverAuth\nsubjectAltName=DNS:example.com\n',
    'self': _LEAF + 'extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n',
    'client': _LEAF + 'extendedKeyUsage=clientAuth\n',
}
# A minimal `openssl ca` setup: the only way OpenSSL 3.0 signs with explicit (past) dates.
_CA_CNF = """[ ca ]
default_ca = backdated
[ backdated ]
dir = {dir}
database = {dir}/index.txt
serial = {dir}/serial
new_certs_dir = {dir}/newcerts
certificate = {dir}/ca.pem
private_key = {dir}/ca.key
default_md = sha256
policy = anything
unique_subject = no
[ anything ]
commonName = supplied
[ server_ext ]
"""


class Certs:
    """The files certs() made: attributes named after them (ca_pem, other_ca_pem, ...) are paths."""

    def __init__(self, directory):
        self.dir = directory
        for name in sorted(os.listdir(directory)):
            if name.endswith(('.pem', '.key')):
                setattr(self, name.replace('-', '_').replace('.', '_'), os.path.join(directory, name))

    def path(self, name):
        return os.path.join(self.dir, name)

    def der(self, name):
        """The DER bytes of the (first) certificate in the PEM file name (in dir)."""
        with open(self.path(name)) as f:
            return ssl.PEM_cert_to_DER_cert(f.read())


def _make(d):
    def run(*args):
        r = subprocess.run([OPENSSL, *args], cwd=d, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f'openssl {" ".join(args)} failed ({r.returncode}): '
                               f'{r.stderr.decode(errors="replace")}')

    def write(name, data):
        with open(os.path.join(d, name), 'wb' if isinstance(data, bytes) else 'w') as f:
            f.write(data)
        return name

    def key(name):
        run('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f'{name}.key')

    def self_signed(name, cn, kind):
        key(name)
        conf = write(f'{name}.cnf', '[ req ]\ndistinguished_name = dn\n[ dn ]\n[ v3 ]\n' + _EXT[kind])
        run('req', '-new', '-x509', '-key', f'{name}.key', '-subj', f'/CN={cn}', '-days', DAYS,
            '-sha256', '-extensions', 'v3', '-config', conf, '-out', f'{name}.pem')

    def signed(name, cn, kind, ca):
        key(name)
        run('req', '-new', '-key', f'{name}.key', '-subj', f'/CN={cn}', '-out', f'{name}.csr')
        run('x509', '-req', '-in', f'{name}.csr', '-CA', f'{ca}.pem', '-CAkey', f'{ca}.key',
            '-CAcreateserial', '-days', DAYS, '-sha256', '-extfile', write(f'{name}.ext', _EXT[kind]),
            '-out', f'{name}.pem')

    self_signed('ca', 'sockit test CA', 'ca')
    self_signed('other-ca', 'sockit other CA', 'ca')
    signed('server', 'localhost', 'server', 'ca')
    signed('server2', 'localhost', 'server', 'ca')          # a second one, for reloads
    signed('wronghost', 'example.com', 'wronghost', 'ca')
    signed('client', 'sockit test client', 'client', 'ca')
    signed('badclient', 'sockit bad client', 'client', 'other-ca')
    self_signed('self', 'localhost', 'self')
    key('other')                                             # matches no certificate

    # Expired, signed by the CA: valid from 2020-01-01 to 2020-01-02.
    os.mkdir(os.path.join(d, 'newcerts'))
    write('index.txt', '')
    write('serial', '1000\n')
    write('backdated.cnf', _CA_CNF.format(dir=d) + _EXT['server'])
    key('expired')
    run('req', '-new', '-key', 'expired.key', '-subj', '/CN=localhost', '-out', 'expired.csr')
    run('ca', '-batch', '-config', 'backdated.cnf', '-extensions', 'server_ext', '-notext',
        '-startdate', '20200101000000Z', '-enddate', '20200102000000Z',
        '-in', 'expired.csr', '-out', 'expired.pem')

    shutil.copy(os.path.join(d, 'server.csr'), os.path.join(d, 'notcert.pem'))   # PEM, no certificate
    write('garbage.pem', b'this is not PEM at all\n' + bytes(range(256)))
    with open(os.path.join(d, 'server.pem'), 'rb') as c, open(os.path.join(d, 'server.key'), 'rb') as k:
        write('combined.pem', c.read() + k.read())            # key= defaults to the cert file


_CERTS = None
_LOCK = threading.Lock()


def certs():
    """Make the certificates once per process; returns a Certs (paths): ca_pem ca_key other_ca_pem
    server_pem/key server2_pem/key expired_pem/key self_pem/key client_pem/key badclient_pem/key
    wronghost_pem/key other_key notcert_pem garbage_pem combined_pem."""
    global _CERTS
    with _LOCK:
        if _CERTS is None:
            if OPENSSL is None:
                raise unittest.SkipTest('the openssl command is not installed')
            d = tempfile.mkdtemp(prefix='sockit-tls-certs-')
            atexit.register(shutil.rmtree, d, True)
            _make(d)
            _CERTS = Certs(d)
        return _CERTS


def tls_setup_module():
    """setUpModule of the TLS test files: the binary is there and the certificates are made."""
    from helpers import setUpModule as base
    base()
    certs()


# --------------------------------------------------------------------------- endpoints, contexts

def tls_address(ep):
    """(family, address) of a stream endpoint as sockit prints it: tls://127.0.0.1:P,
    tls://[::1]:P, tls4://, tls6://, tcp://..., unix:PATH,tls, unix:@NAME,tls."""
    if ep.startswith('unix:'):
        path = ep[len('unix:'):]
        path = path[2:] if path.startswith('//') else path
        path = path[:-len(',tls')] if path.endswith(',tls') else path
        path = path.replace('\\,', ',').replace('\\\\', '\\')
        return socket.AF_UNIX, '\0' + path[1:] if path.startswith('@') else path
    m = re.fullmatch(r'(?:tls|tcp)[46]?://(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d+)(,tls)?', ep)
    if not m:
        raise AssertionError(f'not a canonical stream endpoint: {ep!r}')
    if m.group(1) is not None:
        return socket.AF_INET6, (m.group(1), int(m.group(3)))
    return socket.AF_INET, (m.group(2), int(m.group(3)))


def tls_port(ep):
    return tls_address(ep)[1][1]


def client_context(ca=None, cert=None, key=None, verify=True):
    """A Python client context: TLS 1.2 at least, trusting ca (default: the test CA)."""
    if verify:
        ctx = ssl.create_default_context(cafile=ca or certs().ca_pem)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def server_context(cert=None, key=None):
    """A Python server context (for TLS peers in Python)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert or certs().server_pem, key or certs().server_key)
    return ctx


def plain_connect(ep, timeout=TLS_TIMEOUT):
    """A plain stream socket connected to the endpoint's address (no handshake)."""
    family, addr = tls_address(ep)
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(addr)
    except OSError:
        s.close()
        raise
    return s


# --------------------------------------------------------------------------- the TLS client

def read_records(obj, plain):
    """Decrypts the complete records obj's incoming BIO holds into plain; returns None while open,
    else how it ended ('close_notify', 'ragged': a FIN without one, 'ssl: REASON')."""
    while True:
        try:
            chunk = obj.read(MIB)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except ssl.SSLZeroReturnError:
            return 'close_notify'
        except ssl.SSLEOFError:
            return 'ragged'
        except ssl.SSLError as e:
            return f'ssl: {e.reason or e}'
        if not chunk:
            return 'close_notify'
        plain += chunk


class TLSClient:
    """A TLS client driven by hand through memory BIOs (ssl.SSLObject), so that a close_notify can
    be sent while replies still arrive (a TLS half-close), which SSLSocket.unwrap() cannot do.
    One thread; every operation has a deadline. The name verified is the IP literal on TCP (its
    SAN), none on a UNIX path (the chain still is).

    end: None while open, then 'close_notify' (the peer's clean TLS end), 'ragged' (TCP EOF
    without close_notify), 'reset' or 'ssl: REASON' (an alert or a protocol error)."""

    def __init__(self, ep, ctx=None, server_hostname=None, timeout=TLS_TIMEOUT):
        family, addr = tls_address(ep)
        if ctx is None:
            ctx = client_context()
            ctx.check_hostname = family != socket.AF_UNIX
        hostname = server_hostname or (None if family == socket.AF_UNIX else addr[0])
        self.timeout, self.end = timeout, None
        self.plain = bytearray()    # received, not yet taken
        self.out = bytearray()      # TLS records not yet on the socket
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.sock = plain_connect(ep, timeout)
        self.sock.setblocking(False)
        try:
            self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=hostname)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    self.obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._io(deadline)
            self._flush()
        except BaseException:
            self.sock.close()
            raise

    def _flush(self):
        """Send what the TLS engine produced; True once nothing is left."""
        self.out += self.outgoing.read()
        while self.out:
            try:
                del self.out[:self.sock.send(self.out)]
            except BlockingIOError:
                return False
            except (ConnectionResetError, BrokenPipeError):
                self.end = self.end or 'reset'
                self.out.clear()
        return True

    def _io(self, deadline):
        """Flush, wait (until deadline) for the socket, put what came into the incoming BIO."""
        flushed = self._flush()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f'TLS client timed out; received so far ({len(self.plain)} bytes): '
                                 f'{bytes(self.plain[:200])!r}, end {self.end}')
        r, _, _ = select.select([self.sock], [] if flushed else [self.sock], [], min(remaining, 0.5))
        if r:
            try:
                data = self.sock.recv(MIB)
            except BlockingIOError:
                return
            if data:
                self.incoming.write(data)
            else:
                self.incoming.write_eof()

    def _read_records(self):
        """Decrypt every complete record the incoming BIO holds (leaving it empty)."""
        if self.end is None:
            self.end = read_records(self.obj, self.plain)

    def _pump(self, deadline):
        try:
            self._io(deadline)
        except ConnectionResetError:
            self.end = self.end or 'reset'
        self._read_records()

    def send(self, data):
        """Send all of data (bounded), taking in replies meanwhile."""
        if data:
            self.obj.write(data)
        deadline = time.monotonic() + self.timeout
        while not self._flush():
            self._pump(deadline)
        return self

    def close_notify(self):
        """A TLS half-close: send our close_notify, go on reading (moot once the peer ended)."""
        self._read_records()            # the incoming BIO is empty: unwrap() reads nothing of it
        if self.end:
            return self
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except ssl.SSLError as e:
            raise AssertionError(f'sending close_notify failed: {e!r}') from None
        return self.send(b'')

    def _take(self, n, deadline, what):
        while (n(self.plain) if callable(n) else n) > len(self.plain):
            if self.end:
                raise AssertionError(f'TLS end ({self.end}) while waiting for {what}; got '
                                     f'{len(self.plain)} bytes: {bytes(self.plain[:200])!r}')
            self._pump(deadline)
        size = n(self.plain) if callable(n) else n
        data = bytes(self.plain[:size])
        del self.plain[:size]
        return data

    def recv_exactly(self, n, timeout=None):
        return self._take(n, time.monotonic() + (timeout or self.timeout), f'{n} bytes')

    def line(self, timeout=None):
        def size(buf):
            i = buf.find(b'\n')
            return i + 1 if i >= 0 else len(buf) + 1
        return self._take(size, time.monotonic() + (timeout or self.timeout), 'a line')

    def read_to_close(self, timeout=None, limit=64 * MIB):
        """Everything until the peer ends; returns (data, end)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.end:
            self._pump(deadline)
            if len(self.plain) > limit:
                raise AssertionError(f'more than {limit} bytes without the peer ending')
        data = bytes(self.plain)
        self.plain.clear()
        return data, self.end

    def roundtrip(self, data, close=True, timeout=30.0):
        """Send data while reading; then (close) a close_notify, and read until the peer ends.
        Returns (received, end); with close=False, once len(data) bytes came back."""
        deadline = time.monotonic() + timeout
        view, sent = memoryview(data), 0
        while sent < len(data) and not self.end:
            if len(self.out) < 256 * 1024:
                self.obj.write(view[sent:sent + 16384])
                sent = min(sent + 16384, len(data))
            self._pump(deadline)
        if close:
            self.close_notify()
        while not self.end and (close or len(self.plain) < len(data)):
            self._pump(deadline)
        got = bytes(self.plain)
        self.plain.clear()
        return got, self.end or 'open'

    def expect_silence(self, seconds):
        """Nothing may arrive, and the connection must stay open, for seconds."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.plain and not self.end:
            r, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if r:
                self._pump(deadline + 1)
        if self.plain or self.end:
            raise AssertionError(f'expected nothing for {seconds}s, got {bytes(self.plain[:200])!r}, '
                                 f'end {self.end}')

    def peer_der(self):
        return self.obj.getpeercert(binary_form=True)

    def version(self):
        return self.obj.version()

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def handshake_outcome(ep, ctx=None, payload=b'ping\n', timeout=TLS_TIMEOUT):
    """A client the server may refuse: ('handshake', error) if the handshake failed, else (end,
    data) after sending payload and a close_notify and reading until the server ended; an echo
    server that serves it gives ('close_notify', payload). (In TLS 1.3 a client is done before the
    server checked its certificate; a refusal then comes as an alert on the first read.)"""
    try:
        c = TLSClient(ep, ctx=ctx, timeout=timeout)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        return 'handshake', e
    with c:
        try:
            c.send(payload).close_notify()
        except (AssertionError, ssl.SSLError, OSError):
            pass
        data, end = c.read_to_close(timeout)
        return end, data


# --------------------------------------------------------------------------- peers

def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open(f'/proc/{pid}/stat', 'rb') as f:
        data = f.read()
    fields = data[data.rindex(b')') + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


class Peer:
    """A peer process (openssl s_server, socat), its output in files, killed by PID at cleanup."""

    def __init__(self, test, argv, stdin=subprocess.DEVNULL):
        self.argv = argv
        self.out, self.err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=stdin, stdout=self.out, stderr=self.err,
                                     preexec_fn=die_with_parent, env=server_env())
        test.addCleanup(self.stop)

    def output(self):
        self.out.seek(0)
        self.err.seek(0)
        return self.out.read(), self.err.read()

    def wait(self, ready, what, timeout=START_TIMEOUT):
        """Poll (bounded) until ready() holds; fails if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f'{self.argv[0]} exited with {self.proc.returncode}: {self.output()!r}')
            if ready():
                return self
            time.sleep(0.02)
        raise AssertionError(f'{self.argv}: {what} not within {timeout}s: {self.output()!r}')

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        self.out.close()
        self.err.close()


def _accepts(port):
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT):
            return True
    except OSError:
        return False


def socat_tls_echo(test, cert=None, key=None):
    """socat OPENSSL-LISTEN (forking) with EXEC:cat behind it: an independent TLS echo service on
    127.0.0.1. Returns (Peer, port)."""
    if SOCAT is None:
        raise unittest.SkipTest('socat is not installed')
    c, port = certs(), free_port()
    listen = (f'OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={cert or c.server_pem},'
              f'key={key or c.server_key},verify=0')
    peer = Peer(test, [SOCAT, '-T', '10', listen, 'EXEC:cat'])
    return peer.wait(lambda: _accepts(port), f'accepting on {port}'), port


def s_server(test, cert=None, key=None, extra=(), stdin=subprocess.DEVNULL):
    """openssl s_server on 127.0.0.1 (a free port), ready once it printed ACCEPT; one client at a
    time. Returns (Peer, port)."""
    if OPENSSL is None:
        raise unittest.SkipTest('openssl is not installed')
    c, port = certs(), free_port()
    peer = Peer(test, [OPENSSL, 's_server', '-accept', f'127.0.0.1:{port}', '-cert', cert or c.server_pem,
                       '-key', key or c.server_key, *extra], stdin=stdin)
    return peer.wait(lambda: b'ACCEPT' in peer.output()[0], 'ACCEPT'), port


def s_client(args, input_=b'', timeout=TLS_TIMEOUT):
    """Run openssl s_client ARGS with input_ on stdin; returns CompletedProcess."""
    if OPENSSL is None:
        raise unittest.SkipTest('openssl is not installed')
    try:
        return subprocess.run([OPENSSL, 's_client', *args], input=input_, capture_output=True,
                              timeout=timeout, env=server_env())
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f'openssl s_client {" ".join(args)} did not end within {timeout}s; '
                             f'stdout {(e.stdout or b"")[:300]!r}') from None


# --------------------------------------------------------------------------- test base

_SOCKETS = itertools.count()


class TLSTest(SockitTest):
    """SockitTest plus TLS endpoints, clients and checks."""

    def setUp(self):
        super().setUp()
        self.certs = certs()

    def tls_ep(self, kind='tcp', cert=None, key=None, extra=''):
        """A listening TLS endpoint (kind tcp, tcp6 or unix), by default with server.pem."""
        c = self.certs
        opts = f'cert={cert or c.server_pem},key={key or c.server_key}' + (f',{extra}' if extra else '')
        return {'tcp': f'tls://127.0.0.1:0,{opts}', 'tcp6': f'tls://[::1]:0,{opts}',
                'unix': f'unix:{self.path(f"tls-{next(_SOCKETS)}.sock")},tls,{opts}'}[kind]

    def client(self, ep, **kwargs):
        c = TLSClient(ep, **kwargs)
        self.addCleanup(c.close)
        return c

    def assertRoundtrip(self, got, end, data):
        if got != data:
            self.fail(f'{len(got)} bytes back instead of {len(data)}; first difference at '
                      f'{first_difference(got, data)}; end {end}')
        self.assertEqual(end, 'close_notify', 'the server should end with its own close_notify')

    def assertServes(self, ep, payload=b'still serving\n'):
        """A good TLS client is echoed on ep (a server started with -s echo)."""
        with TLSClient(ep) as c:
            c.send(payload)
            self.assertEqual(c.recv_exactly(len(payload)), payload)

    def assertVerifyFailed(self, result, reason, verb='connect'):
        """Exit 1, one stderr line `sockit: VERB tls://...: certificate verify failed (REASON)`, and
        for connect nothing on stdout (bench prints its report, as on any failure)."""
        self.assertEqual(result.returncode, 1, f'stderr {result.stderr!r}, stdout {result.stdout[:200]!r}')
        if verb == 'connect':
            self.assertEqual(result.stdout, b'')
        err = result.stderr.decode(errors='replace')
        self.assertEqual(err.count('\n'), 1, err)
        self.assertTrue(err.startswith(f'sockit: {verb} tls://'), err)
        self.assertTrue(err.endswith(f': certificate verify failed ({reason})\n'), err)


def main():
    """Make the certificates; check with `openssl verify` the reasons the tests expect."""
    c = certs()
    print('certificates in', c.dir, ':', *sorted(n for n in os.listdir(c.dir) if n.endswith(('.pem', '.key'))))
    ok = True
    for name, ca, extra, reason in [
            ('server.pem', 'ca.pem', [], None), ('server2.pem', 'ca.pem', [], None),
            ('client.pem', 'ca.pem', [], None), ('badclient.pem', 'other-ca.pem', [], None),
            ('self.pem', 'ca.pem', [], REASON_SELF_SIGNED), ('server.pem', 'other-ca.pem', [], REASON_NO_ISSUER),
            ('wronghost.pem', 'ca.pem', ['-verify_hostname', 'localhost'], REASON_HOSTNAME),
            ('wronghost.pem', 'ca.pem', ['-verify_ip', '127.0.0.1'], REASON_IP),
            ('expired.pem', 'ca.pem', ['-verify_ip', '127.0.0.1'], REASON_EXPIRED)]:
        r = subprocess.run([OPENSSL, 'verify', '-CAfile', c.path(ca), *extra, c.path(name)],
                           capture_output=True, text=True)
        out = (r.stdout + r.stderr).strip().replace('\n', ' | ')
        good = r.returncode == 0 if reason is None else f'lookup: {reason} |' in out
        ok &= good
        print('ok  ' if good else 'FAIL', name, 'against', ca, *extra, ':', out)
    return 0 if ok else 1


if __name__ == '__main__':
    raise SystemExit(main())
