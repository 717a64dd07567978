"""The official A2A Python client (a2a-sdk) managing push-notification configs of a task.

Usage: push_configs.py BASE_URL TOKEN BINDING TASK_ID URL
  BINDING  JSONRPC or HTTP+JSON

Creates a config {id: "py", url: URL, token: "py-token", authentication: Bearer py-cred},
reads it back, lists the task's configs, deletes it and lists again. Prints one JSON line:
{"created": ..., "got": ..., "listed": [ids], "after_delete": [ids]}. Exits non-zero on any
error (the traceback goes to stderr).
"""

import asyncio
import json
import sys

import httpx
from google.protobuf.json_format import MessageToDict

from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import (
    AuthenticationInfo,
    DeleteTaskPushNotificationConfigRequest,
    GetTaskPushNotificationConfigRequest,
    ListTaskPushNotificationConfigsRequest,
    TaskPushNotificationConfig,
)


async def main():
    base, token, binding, task_id, url = sys.argv[1:6]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        card = await A2ACardResolver(http, base).get_agent_card()
        assert card.capabilities.push_notifications, "the card offers push notifications"
        config = ClientConfig(httpx_client=http, supported_protocol_bindings=[binding])
        client = ClientFactory(config).create(card)
        created = await client.create_task_push_notification_config(
            TaskPushNotificationConfig(
                task_id=task_id,
                id="py",
                url=url,
                token="py-token",
                authentication=AuthenticationInfo(scheme="Bearer", credentials="py-cred"),
            )
        )
        got = await client.get_task_push_notification_config(
            GetTaskPushNotificationConfigRequest(task_id=task_id, id="py")
        )
        listed = await client.list_task_push_notification_configs(
            ListTaskPushNotificationConfigsRequest(task_id=task_id)
        )
        await client.delete_task_push_notification_config(
            DeleteTaskPushNotificationConfigRequest(task_id=task_id, id="py")
        )
        after = await client.list_task_push_notification_configs(
            ListTaskPushNotificationConfigsRequest(task_id=task_id)
        )
        print(json.dumps({
            "created": MessageToDict(created),
            "got": MessageToDict(got),
            "listed": [c.id for c in listed.configs],
            "after_delete": [c.id for c in after.configs],
        }))


asyncio.run(main())
