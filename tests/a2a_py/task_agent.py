"""An A2A 1.0 agent (official SDK) that works in tasks: the first message of a task gets an
artifact `draft: <text>` and the question `what is your name?` (input_required); the answer
completes the task with an artifact `greeting for <answer>` and the message
`hello <answer>`. A first message `wait` keeps its task working until it is canceled.
JSON-RPC at /rpc, HTTP+JSON at /rest. With `--stream` its card says it streams."""

import asyncio
import sys

from a2a.helpers import new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import (
    create_agent_card_routes,
    create_jsonrpc_routes,
    create_rest_routes,
)
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import TaskState
from starlette.applications import Starlette

from common import card, serve

STREAM = '--stream' in sys.argv
if STREAM:
    sys.argv.remove('--stream')


class Tasks(AgentExecutor):
    async def execute(self, context, event_queue):
        task = context.current_task
        answering = task is not None and task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        if task is None:
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        text = context.get_user_input()
        if answering:
            await updater.add_artifact([new_text_part('greeting for ' + text)], name='greeting')
            await updater.complete(updater.new_agent_message([new_text_part('hello ' + text)]))
            return
        await updater.start_work()
        if text == 'wait':
            await asyncio.sleep(120)
            return
        await updater.add_artifact([new_text_part('draft: ' + text)], name='draft')
        await updater.requires_input(
            updater.new_agent_message([new_text_part('what is your name?')])
        )

    async def cancel(self, context, event_queue):
        task = context.current_task
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.cancel()


def build(base):
    agent_card = card(
        'task-agent', base, [('JSONRPC', '/rpc'), ('HTTP+JSON', '/rest')], streaming=STREAM
    )
    handler = DefaultRequestHandler(Tasks(), InMemoryTaskStore(), agent_card)
    routes = create_agent_card_routes(agent_card)
    routes += create_jsonrpc_routes(handler, '/rpc')
    routes += create_rest_routes(handler, path_prefix='/rest')
    return Starlette(routes=routes)


serve(build)
