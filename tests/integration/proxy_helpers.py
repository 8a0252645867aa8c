"""Helpers for the PROXY protocol and access-control integration tests (test_proxy, test_access).

PROXY headers (HAProxy's spec, versions 1 and 2) are built and parsed here with plain string
formatting and struct, independently of sockit's own code.
"""

import os
import re
import socket
import struct

from helpers import TIMEOUT, SockitTest, endpoint_address, read_to_close, recv_exactly

V2_SIG = b'\r\n\r\n\x00\r\nQUIT\n'
V2_CMD_LOCAL, V2_CMD_PROXY = 0x20, 0x21
V2_INET_STREAM, V2_INET6_STREAM, V2_UNIX_STREAM = 0x11, 0x21, 0x31
UNIX_FIELD = 108


def v1(src, dst, sport, dport, proto=None):
    """A v1 header: PROXY TCP4|TCP6 SRC DST SPORT DPORT CRLF (the protocol from the address)."""
    proto = proto or ('TCP6' if ':' in src else 'TCP4')
    return f'PROXY {proto} {src} {dst} {sport} {dport}\r\n'.encode()


V1_UNKNOWN = b'PROXY UNKNOWN\r\n'


def v2(src, dst, sport, dport, cmd=V2_CMD_PROXY, tlvs=b''):
    """A v2 PROXY header over a stream for IPv4 or IPv6 addresses (from the text)."""
    if ':' in src:
        body = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
                + struct.pack('!HH', sport, dport))
        fam = V2_INET6_STREAM
    else:
        body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!HH', sport, dport)
        fam = V2_INET_STREAM
    body += tlvs
    return V2_SIG + struct.pack('!BBH', cmd, fam, len(body)) + body


def v2_raw(ver_cmd, fam, body, length=None):
    """A v2 header with every field given (for malformed ones)."""
    return V2_SIG + struct.pack('!BBH', ver_cmd, fam, len(body) if length is None else length) + body


def v2_unix(src_path, dst_path):
    """A v2 PROXY header with AF_UNIX addresses (bytes, NUL-padded to 108 each)."""
    body = src_path.ljust(UNIX_FIELD, b'\0') + dst_path.ljust(UNIX_FIELD, b'\0')
    return V2_SIG + struct.pack('!BBH', V2_CMD_PROXY, V2_UNIX_STREAM, len(body)) + body


V2_LOCAL = V2_SIG + struct.pack('!BBH', V2_CMD_LOCAL, 0x00, 0)


def ep_strip(ep):
    """A canonical endpoint without its protocol options (,proxy=..., ,tls), tls:// as tcp://."""
    ep = re.sub(r',(proxy=\w+|tls)', '', ep)
    return re.sub(r'^tls([46]?)://', r'tcp\1://', ep)


def ep_connect(ep, timeout=TIMEOUT):
    """A plain stream socket connected to a listening endpoint as sockit printed it."""
    family, _, addr = endpoint_address(ep_strip(ep))
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(addr)
    return s


def ep_port(ep):
    """The port of a TCP endpoint as sockit printed it (options and all)."""
    return endpoint_address(ep_strip(ep))[2][1]


def sock_name(sock, which='peer'):
    """tcp://HOST:PORT of a TCP socket's own (which='self') or peer address, as sockit writes it."""
    host, port = (sock.getsockname() if which == 'self' else sock.getpeername())[:2]
    return f'tcp://[{host}]:{port}' if sock.family == socket.AF_INET6 else f'tcp://{host}:{port}'


def closed_at_once(sock, timeout=1.0):
    """True when the peer closes sock (EOF or reset) within timeout with nothing sent."""
    try:
        data, _ = read_to_close(sock, timeout=timeout)
    except AssertionError:
        return False
    except OSError:
        return True
    return data == b''


def try_send(sock, data):
    """Sends data, ignoring a peer that has already closed or reset the connection."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open(f'/proc/{pid}/stat', 'rb') as f:
        data = f.read()
    fields = data[data.rindex(b')') + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


# --------------------------------------------------------------------------- reading headers

def _recv_n(conn, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise AssertionError(f'EOF inside a PROXY header after {bytes(buf)!r}')
        buf += chunk
    return bytes(buf)


def read_header(conn):
    """Reads exactly one PROXY header from a Python-side connection (no byte after it) and returns
    it as a dict: version, raw, and for a PROXY one family (AF_INET/AF_INET6/AF_UNIX), src, dst,
    sport, dport; local=True for v1 UNKNOWN / v2 LOCAL. Anything not a valid header fails."""
    first = _recv_n(conn, 1)
    if first == b'P':
        line = bytearray(first)
        while not line.endswith(b'\r\n'):
            if len(line) >= 107:
                raise AssertionError(f'v1 header longer than 107 bytes: {bytes(line)!r}')
            line += _recv_n(conn, 1)
        words = line[:-2].decode('ascii').split(' ')
        if words[0] != 'PROXY':
            raise AssertionError(f'not a v1 header: {bytes(line)!r}')
        if words[1] == 'UNKNOWN':
            return {'version': 1, 'raw': bytes(line), 'local': True}
        if len(words) != 6 or words[1] not in ('TCP4', 'TCP6'):
            raise AssertionError(f'bad v1 header: {bytes(line)!r}')
        family = socket.AF_INET if words[1] == 'TCP4' else socket.AF_INET6
        for a in words[2:4]:
            socket.inet_pton(family, a)         # raises on a bad address
        return {'version': 1, 'raw': bytes(line), 'local': False, 'family': family,
                'src': words[2], 'dst': words[3], 'sport': int(words[4]), 'dport': int(words[5])}
    fixed = first + _recv_n(conn, 15)
    if fixed[:12] != V2_SIG:
        raise AssertionError(f'not a PROXY header: {fixed!r}')
    ver_cmd, fam, length = struct.unpack('!BBH', fixed[12:])
    body = _recv_n(conn, length)
    raw = fixed + body
    if ver_cmd >> 4 != 2:
        raise AssertionError(f'v2 version {ver_cmd >> 4}: {raw!r}')
    if ver_cmd == V2_CMD_LOCAL:
        return {'version': 2, 'raw': raw, 'local': True, 'fam': fam}
    if ver_cmd != V2_CMD_PROXY:
        raise AssertionError(f'v2 command {ver_cmd & 15}: {raw!r}')
    h = {'version': 2, 'raw': raw, 'local': False}
    if fam == V2_INET_STREAM:
        h.update(family=socket.AF_INET, src=socket.inet_ntoa(body[0:4]), dst=socket.inet_ntoa(body[4:8]))
        h['sport'], h['dport'] = struct.unpack('!HH', body[8:12])
    elif fam == V2_INET6_STREAM:
        h.update(family=socket.AF_INET6, src=socket.inet_ntop(socket.AF_INET6, body[0:16]),
                 dst=socket.inet_ntop(socket.AF_INET6, body[16:32]))
        h['sport'], h['dport'] = struct.unpack('!HH', body[32:36])
    elif fam == V2_UNIX_STREAM:
        h.update(family=socket.AF_UNIX, src=body[:UNIX_FIELD], dst=body[UNIX_FIELD:2 * UNIX_FIELD])
    else:
        raise AssertionError(f'v2 family/transport {fam:#x}: {raw!r}')
    return h


class ProxyTest(SockitTest):
    """SockitTest plus clients that start with a PROXY header."""

    def pconnect(self, server, header=None, i=0, data=b''):
        """A client of server's endpoint i that has sent header (if any) and data."""
        s = ep_connect(server.endpoints[i])
        server.clients.append(s)
        if header is not None or data:
            s.sendall((header or b'') + data)
        return s

    def assertEchoes(self, sock, payload=b'ping\n'):
        sock.sendall(payload)
        self.assertEqual(recv_exactly(sock, len(payload)), payload)

