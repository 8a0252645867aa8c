"""pingpong.py -- a fixed number of request/reply exchanges against an echo
service, for counting a server's system calls per request under strace.

    python3 bench/pingpong.py HOST PORT CONNECTIONS REQUESTS_PER_CONNECTION

Each connection sends 64 bytes and waits for the same 64 bytes back, in
lock-step; the connections take turns, so the server sees steady load."""
import selectors
import socket
import sys


def main():
    host, port, nconn, nreq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    msg = b"x" * 63 + b"\n"
    sel = selectors.DefaultSelector()
    left = {}
    for _ in range(nconn):
        s = socket.create_connection((host, port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
        left[s] = nreq
        s.send(msg)
    done = 0
    while left:
        events = sel.select(timeout=10)
        if not events:
            sys.exit("pingpong: no reply within 10 s")
        for key, _ in events:
            s, buf = key.fileobj, key.data
            chunk = s.recv(65536)
            if not chunk:
                sys.exit("pingpong: server closed the connection")
            buf += chunk
            while len(buf) >= len(msg):
                if bytes(buf[:len(msg)]) != msg:
                    sys.exit("pingpong: reply mismatch")
                del buf[:len(msg)]
                done += 1
                left[s] -= 1
                if left[s] == 0:
                    sel.unregister(s)
                    s.close()
                    del left[s]
                    break
                s.send(msg)
    print("requests: %d" % done)


if __name__ == "__main__":
    main()
