"""An A2A 1.0 agent (official SDK) that answers every message with a message
`echo: <text>`, on JSON-RPC at /rpc and HTTP+JSON at /rest. With `--rest` its card lists
HTTP+JSON only, and says it streams (`SendStreamingMessage`)."""

import sys

from a2a.helpers import new_text_message
from a2a.server.agent_execution import AgentExecutor
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import (
    create_agent_card_routes,
    create_jsonrpc_routes,
    create_rest_routes,
)
from a2a.server.tasks import InMemoryTaskStore
from starlette.applications import Starlette

from common import card, serve

REST = '--rest' in sys.argv
if REST:
    sys.argv.remove('--rest')


class Echo(AgentExecutor):
    async def execute(self, context, event_queue):
        await event_queue.enqueue_event(
            new_text_message(
                'echo: ' + context.get_user_input(), context_id=context.context_id
            )
        )

    async def cancel(self, context, event_queue):
        raise NotImplementedError('nothing to cancel')


def build(base):
    bindings = [('HTTP+JSON', '/rest')] if REST else [('JSONRPC', '/rpc'), ('HTTP+JSON', '/rest')]
    agent_card = card('echo-agent', base, bindings, streaming=REST)
    handler = DefaultRequestHandler(Echo(), InMemoryTaskStore(), agent_card)
    routes = create_agent_card_routes(agent_card)
    routes += create_jsonrpc_routes(handler, '/rpc')
    routes += create_rest_routes(handler, path_prefix='/rest')
    return Starlette(routes=routes)


serve(build)
