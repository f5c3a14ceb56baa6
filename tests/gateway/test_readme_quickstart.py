"""The README quick start works as written, against a real gateway (its address swapped in)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import httpx
import pytest

from wattgate.settings import load_settings

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"


def quick_start() -> str:
    text = README.read_text()
    start = text.index("## Quick start")
    return text[start : text.index("\n## ", start + 1)]


@pytest.fixture(scope="module")
def gateway(deploy, digits_repository, tmp_path_factory):
    return deploy(load_settings(None, models={"repository": str(digits_repository)},
                                server={"state_dir": str(tmp_path_factory.mktemp("readme"))}))


def test_curl_examples_answer(gateway):
    section = quick_start()
    lines = "\n".join(re.findall(r"```bash\n(.*?)```", section, re.S)).replace("\\\n", " ").splitlines()
    commands = [line for line in lines if line.startswith("curl ")]
    assert len(commands) >= 2
    for command in commands:
        args = shlex.split(command)
        url = next(a for a in args if a.startswith("localhost:8000")).replace("localhost:8000", gateway.removeprefix("http://"))
        body = args[args.index("-d") + 1] if "-d" in args else None
        r = httpx.post("http://" + url, content=body, headers={"content-type": "application/json"}) if body else httpx.get("http://" + url)
        assert r.status_code == 200, (command, r.text)
    labels = next(o for o in json.loads(r.text)["outputs"] if o["name"] == "label")
    assert labels["data"] == [0]  # the README's sample image is a handwritten 0


def test_python_example_runs(gateway):
    block = re.search(r"```python\n(.*?)```", quick_start(), re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.replace("127.0.0.1:8000", gateway.removeprefix("http://")), "README", "exec"), {})
    assert re.fullmatch(r"\[\d \d\]\n", out.getvalue())
