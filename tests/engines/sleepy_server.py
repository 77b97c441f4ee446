"""A tiny engine process for launcher tests: the lifecycle API of vLLM / SGLang without a GPU.

vLLM and SGLang are CUDA-only, so the launcher's sleep/wake protocol is exercised against this
real subprocess instead: it serves GET /health, vLLM's POST /sleep?level=N, /wake_up and GET
/is_sleeping, SGLang's POST /release_memory_occupation and /resume_memory_occupation, and a
minimal POST /v1/chat/completions that refuses (503) while asleep, like a sleeping engine that
lost its weights. Each state change is printed, so tests can read the order of events.

Usage: python sleepy_server.py PORT [--exit-at-start CODE] [--never-ready]
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class State:
    asleep = False
    sleeps = 0
    wakes = 0
    ready = True
    last = ""  # the last sleep/wake call, e.g. "/sleep level=1"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # quiet access log
        pass

    def _reply(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/health":
            self._reply(200 if State.ready else 503, {"status": "ok" if State.ready else "loading"})
        elif path == "/is_sleeping":
            self._reply(200, {"is_sleeping": State.asleep})
        elif path == "/stats":
            stats = {"sleeps": State.sleeps, "wakes": State.wakes, "asleep": State.asleep}
            self._reply(200, {**stats, "last": State.last})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if url.path in ("/sleep", "/release_memory_occupation"):
            level = parse_qs(url.query).get("level", ["-"])[0]
            State.asleep, State.sleeps = True, State.sleeps + 1
            State.last = f"{url.path} level={level}"
            print(f"sleep via {State.last}", flush=True)
            self._reply(200, {})
        elif url.path in ("/wake_up", "/resume_memory_occupation"):
            State.asleep, State.wakes = False, State.wakes + 1
            State.last = url.path
            print(f"wake via {url.path}", flush=True)
            self._reply(200, {})
        elif url.path == "/v1/chat/completions":
            if State.asleep:
                self._reply(503, {"error": {"message": "engine is asleep"}})
                return
            self._reply(200, _completion(body.get("model", "")))
        else:
            self._reply(404, {"error": "not found"})


def _completion(model: str) -> dict[str, object]:
    return {
        "id": "sleepy-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "awake and answering"},
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
    }


def main() -> None:
    port = int(sys.argv[1])
    if "--exit-at-start" in sys.argv:
        print("fatal: no CUDA device found", flush=True)
        sys.exit(int(sys.argv[sys.argv.index("--exit-at-start") + 1]))
    State.ready = "--never-ready" not in sys.argv
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
