"""What the test agents share: a listening socket on 127.0.0.1 (port 0, or the port given as
the first argument, so a test can bring an agent back on the port it had), its port printed
on stdout, then uvicorn serving the app built for that base URL."""

import asyncio
import socket
import sys

import uvicorn
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
)


def card(name, base, bindings, streaming=False):
    """An A2A 1.0 card with the given (binding, path) interfaces."""
    return AgentCard(
        name=name,
        description=f'{name}: a test agent',
        version='1.0.0',
        supported_interfaces=[
            AgentInterface(url=base + path, protocol_binding=b, protocol_version='1.0')
            for b, path in bindings
        ],
        capabilities=AgentCapabilities(streaming=streaming),
        default_input_modes=['text/plain'],
        default_output_modes=['text/plain'],
        skills=[AgentSkill(id='test', name='test', description='answers tests', tags=['test'])],
    )


def serve(build_app):
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(('127.0.0.1', port))
    sock.listen(128)
    port = sock.getsockname()[1]
    app = build_app(f'http://127.0.0.1:{port}')
    print(port, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level='warning'))
    asyncio.run(server.serve(sockets=[sock]))
