"""An agent that offers only A2A 0.3 (as LangGraph's server does): its card has 0.3's
`url` / `preferredTransport: JSONRPC` / `protocolVersion: 0.3.0` and no 1.0 interface, and
it answers JSON-RPC `message/send` with a message `echo03: <text>` (official SDK, its 0.3
compatibility layer)."""

from a2a.helpers import new_text_message
from a2a.server.agent_execution import AgentExecutor
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from common import card, serve


class Echo(AgentExecutor):
    async def execute(self, context, event_queue):
        await event_queue.enqueue_event(
            new_text_message(
                'echo03: ' + context.get_user_input(), context_id=context.context_id
            )
        )

    async def cancel(self, context, event_queue):
        raise NotImplementedError('nothing to cancel')


def build(base):
    handler = DefaultRequestHandler(
        Echo(), InMemoryTaskStore(), card('v03-agent', base, [('JSONRPC', '/rpc')])
    )
    card03 = {
        'name': 'v03-agent',
        'description': 'v03-agent: a test agent that speaks A2A 0.3 only',
        'url': base + '/rpc',
        'preferredTransport': 'JSONRPC',
        'protocolVersion': '0.3.0',
        'version': '1.0.0',
        'capabilities': {'streaming': False},
        'defaultInputModes': ['text/plain'],
        'defaultOutputModes': ['text/plain'],
        'skills': [{'id': 'test', 'name': 'test', 'description': 'echo', 'tags': ['test']}],
    }

    async def agent_card(_request):
        return JSONResponse(card03)

    routes = [Route('/.well-known/agent-card.json', agent_card)]
    routes += create_jsonrpc_routes(handler, '/rpc', enable_v0_3_compat=True)
    return Starlette(routes=routes)


serve(build)
