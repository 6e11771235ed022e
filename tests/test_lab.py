"""`make lab`'s launcher: the kernelspec the notebooks name, the `jupyter lab` command for root / headless machines
with LAB_ARGS passed through, and a real server that answers with its token."""
from __future__ import annotations

import json
import re
import socket
import sys
import urllib.error
import urllib.request

import pytest

from pulkit.core import paths
from pulkit.tools import lab
from pulkit.tools import reproduce as rp


def test_kernel_spec_runs_this_python_with_the_runner_hash_seed_and_encryption():
    spec = lab.kernel_spec()
    assert spec["argv"][0] == sys.executable and "{connection_file}" in spec["argv"]
    assert spec["display_name"] == "pulkit (.venv)" and spec["language"] == "python"
    assert spec["env"] == {"PYTHONHASHSEED": "0"}
    assert "curve" in spec["metadata"]["supported_encryption"]


@pytest.fixture
def prefix(tmp_path, monkeypatch):
    """sys.prefix and every Jupyter folder in a temporary place."""
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "env"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "env" / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "user"))
    return tmp_path


def test_install_kernelspec_writes_once_and_refuses_a_shadowing_spec(prefix, monkeypatch):
    assert lab.install_kernelspec() == "pulkit"
    written = prefix / "env" / "share" / "jupyter" / "kernels" / "pulkit" / "kernel.json"
    assert json.loads(written.read_text()) == lab.kernel_spec()
    assert (written.parent / "logo-64x64.png").is_file()
    stamp = written.stat().st_mtime_ns
    lab.install_kernelspec()
    assert written.stat().st_mtime_ns == stamp                      # unchanged: not rewritten

    assert rp.ensure_kernel() == "pulkit"                          # the runner takes this spec as it is
    assert written.stat().st_mtime_ns == stamp

    shadow = prefix / "shadow" / "kernels" / "pulkit" / "kernel.json"
    shadow.parent.mkdir(parents=True)
    other = str(prefix / "other" / "bin" / "python")                 # an interpreter that is not this one
    shadow.write_text(json.dumps({**lab.kernel_spec(), "argv": [other, "-m", "ipykernel_launcher",
                                                                 "-f", "{connection_file}"]}))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "shadow"))
    with pytest.raises(lab.LabError, match=f"runs {re.escape(other)}, not"):
        lab.install_kernelspec()


def test_lab_command_adds_root_and_headless_flags_unless_given():
    cmd = lab.lab_command(["--port=9999"], as_root=True, headless=True)
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={paths.project_root().resolve()}" in cmd
    assert "--LabApp.default_url=/lab/tree/notebooks" in cmd
    assert "--allow-root" in cmd and "--no-browser" in cmd and cmd[-1] == "--port=9999"
    laptop = lab.lab_command([], as_root=False, headless=False)
    assert "--allow-root" not in laptop and "--no-browser" not in laptop
    given = lab.lab_command(["--ServerApp.allow_root=True", "--ServerApp.open_browser=True"], as_root=True,
                            headless=True)
    assert "--allow-root" not in given and "--no-browser" not in given


def test_lab_paths_and_links(tmp_path):
    (tmp_path / "runs" / "a b").mkdir(parents=True)
    nb = tmp_path / "runs" / "a b" / "05 x.ipynb"
    cmd = lab.lab_command([], tmp_path, nb, as_root=False, headless=False)
    assert "--LabApp.default_url=/lab/tree/runs/a%20b/05%20x.ipynb" in cmd
    with pytest.raises(lab.LabError, match="is not under the folder JupyterLab serves"):
        lab.lab_command([], tmp_path / "runs", paths.notebooks_dir())
    served = lab.Lab(process=None, root=tmp_path, url="http://localhost:8888/", token="t0k")
    assert served.link(nb) == "http://localhost:8888/lab/tree/runs/a%20b/05%20x.ipynb?token=t0k"
    assert served.link() == served.link(tmp_path.parent) == "http://localhost:8888/lab?token=t0k"   # not served


def test_lab_args_come_from_the_environment_then_the_command_line(monkeypatch):
    monkeypatch.setenv("LAB_ARGS", "--ip=0.0.0.0 --ServerApp.token='a b'")
    assert lab.extra_args(["--port=1"]) == ["--ip=0.0.0.0", "--ServerApp.token=a b", "--port=1"]
    monkeypatch.setenv("LAB_ARGS", "--ip='0.0.0.0")
    with pytest.raises(lab.LabError, match="LAB_ARGS=.* does not parse"):
        lab.extra_args([])


@pytest.mark.slow
def test_a_started_server_answers_with_its_token_and_knows_the_kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTERLAB_WORKSPACES_DIR", str(tmp_path / "workspaces"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    served = lab.start([f"--port={port}", "--ServerApp.port_retries=0"], headless=True)
    try:
        assert served.token and f":{port}/" in served.url
        assert served.link(paths.notebooks_dir()).endswith(f"/lab/tree/notebooks?token={served.token}")
        api = f"{served.url}api/kernelspecs"
        specs = json.loads(urllib.request.urlopen(f"{api}?token={served.token}", timeout=30).read())
        assert specs["kernelspecs"]["pulkit"]["spec"]["display_name"] == "pulkit (.venv)"
        with pytest.raises(urllib.error.HTTPError):                 # the token is required
            urllib.request.urlopen(api, timeout=30)
    finally:
        assert served.stop() == 0
