"""Load every UI workflow in ComfyUI's own web front end (headless Chromium) and check what it would queue.

For each workflows/<name>.json: app.loadGraphData() in the page served by a real ComfyUI with this node pack,
then app.graphToPrompt(); the prompt must equal workflows/api/<name>.json and no node may be missing. This is
what dragging the file into the browser does. Needs Chromium (`apt-get install chromium`); the test suite checks
the same files against /object_info without a browser.

    python scripts/check_workflows_in_browser.py [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.comfyui_server import start_server, stop_server  # noqa: E402

# The diffusion model files the workflows name; empty files are enough to be listed.
STAND_INS = (
    ("checkpoints", "v1-5-pruned-emaonly.safetensors"),
    ("checkpoints", "sd_xl_base_1.0.safetensors"),
    ("controlnet", "control_v11f1p_sd15_depth.pth"),
    ("controlnet", "controlnet-depth-sdxl-1.0.safetensors"),
)
LOAD_AND_CONVERT = """
(async () => {
  await app.loadGraphData(%s);
  const prompt = await app.graphToPrompt();
  const types = app.graph._nodes.map((n) => n.type);
  const missing = app.graph._nodes.filter((n) => !LiteGraph.registered_node_types[n.type]).map((n) => n.type);
  return JSON.stringify({output: prompt.output, types, missing});
})()
"""


class DevTools:
    """The least of the Chrome DevTools Protocol needed here: evaluate JavaScript in one page."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params):
        call_id = next(self.ids)
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json()
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(json.dumps(result["exceptionDetails"])[:2000])
        return result["result"].get("value")


def known_inputs(object_info: dict, class_type: str) -> set[str]:
    spec = object_info[class_type]["input"]
    return {*spec.get("required", {}), *spec.get("optional", {})}


async def check(page_ws: str, url: str, object_info: dict) -> list[str]:
    import aiohttp

    problems = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(page_ws, max_msg_size=0) as ws:
            tools = DevTools(ws)
            await tools.call("Page.enable")
            await tools.call("Page.navigate", url=url)
            for _ in range(600):
                if await tools.evaluate("typeof app !== 'undefined' && !!app.graph && !!LiteGraph") is True:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # node definitions are registered after the graph exists
            for ui_path in sorted((REPO / "workflows").glob("*.json")):
                api = json.loads((REPO / "workflows" / "api" / ui_path.name).read_text())
                result = json.loads(await tools.evaluate(LOAD_AND_CONVERT % ui_path.read_text()))
                # Front-end-only widgets (the image upload button) are queued too; ComfyUI ignores them.
                queued = {}
                for node_id, node in result["output"].items():
                    known = known_inputs(object_info, node["class_type"])
                    inputs = {name: value for name, value in node["inputs"].items() if name in known}
                    queued[node_id] = {"class_type": node["class_type"], "inputs": inputs}
                expected = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}
                if result["missing"]:
                    problems.append(f"{ui_path.name}: front end lacks node types {result['missing']}")
                if queued != expected:
                    problems.append(f"{ui_path.name}: queues {json.dumps(queued)}\n  expected {json.dumps(expected)}")
                verdict = "matches" if queued == expected else "DIFFERS from"
                print(f"{ui_path.name}: {len(result['types'])} nodes, queued prompt {verdict} api/{ui_path.name}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args(argv)
    if not args.chromium:
        parser.error("Chromium not found: apt-get install chromium, or pass --chromium")

    workdir = Path(tempfile.mkdtemp(prefix="workflows_in_browser_"))
    server = start_server(workdir / "comfyui")
    for name in ("example.png", "frames.webp"):  # the workflows' LoadImage choices must exist to load unchanged
        shutil.copy(REPO / "assets" / "icon.png", server.input_dir / name)
    for folder, name in STAND_INS:
        (server.models_dir / folder / name).touch()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    browser = subprocess.Popen(
        [args.chromium, "--headless=new", "--no-sandbox", "--disable-gpu", f"--remote-debugging-port={port}",
         f"--user-data-dir={workdir / 'chromium'}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                    pages = [p for p in json.load(response) if p["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        problems = asyncio.run(check(pages[0]["webSocketDebuggerUrl"], server.url, server.get("/object_info")))
    finally:
        browser.terminate()
        browser.wait(timeout=30)
        stop_server(server)
    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
