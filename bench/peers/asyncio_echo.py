"""asyncio_echo.py -- an echo server on Python's asyncio, the idiomatic way
(Protocol callbacks).   python3 asyncio_echo.py tcp PORT | unix PATH | udp PORT"""
import asyncio
import os
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class EchoDatagram(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def main(kind, where):
    loop = asyncio.get_running_loop()
    if kind == "udp":
        await loop.create_datagram_endpoint(EchoDatagram, local_addr=("127.0.0.1", int(where)))
        await asyncio.Event().wait()
    if kind == "unix":
        if os.path.exists(where):
            os.unlink(where)
        server = await loop.create_unix_server(Echo, where, backlog=4096)
    else:
        server = await loop.create_server(Echo, "127.0.0.1", int(where), backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
