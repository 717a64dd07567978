"""The official A2A Python client (a2a-sdk) sending one message to an agent by its card URL.

Usage: client_send.py BASE_URL TOKEN BINDING STREAMING TEXT
  BINDING   JSONRPC, HTTP+JSON, or JSONRPC-0.3 (the card's 0.3 JSON-RPC interface only)
  STREAMING 1 to stream (the client's default when the card allows it), 0 for a blocking send

Prints one JSON line: {"state": <last task state seen>, "texts": [every text of the
answer's artifacts and status messages], "events": <count>, "task_id": ...}. Exits non-zero
on any error (the traceback goes to stderr).
"""

import asyncio
import json
import sys
import uuid

import httpx
from google.protobuf.json_format import MessageToDict

from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import Message, Part, Role, SendMessageRequest


def texts_of(parts):
    return [p["text"] for p in parts or [] if "text" in p]


async def main():
    base, token, binding, streaming, text = sys.argv[1:6]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        card = await A2ACardResolver(http, base).get_agent_card()
        wanted = "JSONRPC" if binding == "JSONRPC-0.3" else binding
        if binding == "JSONRPC-0.3":
            legacy = [
                i for i in card.supported_interfaces
                if i.protocol_binding == "JSONRPC" and i.protocol_version.startswith("0.3")
            ]
            assert legacy, "the card lists a 0.3 JSON-RPC interface"
            del card.supported_interfaces[:]
            card.supported_interfaces.extend(legacy)
        config = ClientConfig(
            httpx_client=http,
            streaming=streaming == "1",
            supported_protocol_bindings=[wanted],
        )
        client = ClientFactory(config).create(card)
        message = Message(
            message_id=str(uuid.uuid4()),
            role=Role.ROLE_USER,
            parts=[Part(text=text)],
        )
        state, texts, events, task_id = None, [], 0, None
        async for event in client.send_message(SendMessageRequest(message=message)):
            events += 1
            ev = MessageToDict(event)
            if "task" in ev:
                task = ev["task"]
                task_id = task.get("id")
                state = task["status"]["state"]
                for a in task.get("artifacts", []):
                    texts += texts_of(a.get("parts"))
            elif "statusUpdate" in ev:
                state = ev["statusUpdate"]["status"]["state"]
                msg = ev["statusUpdate"]["status"].get("message")
                if msg:
                    texts += texts_of(msg.get("parts"))
            elif "artifactUpdate" in ev:
                texts += texts_of(ev["artifactUpdate"]["artifact"].get("parts"))
            elif "message" in ev:
                texts += texts_of(ev["message"].get("parts"))
        print(json.dumps({"state": state, "texts": texts, "events": events, "task_id": task_id}))


asyncio.run(main())
