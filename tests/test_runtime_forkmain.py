"""Processes camfleet starts from its forkserver do not import the starting program's ``__main__`` again."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from camfleet.runtime import forkmain

pytestmark = pytest.mark.process

SCRIPT = textwrap.dedent("""
    import multiprocessing as mp
    import os
    import sys

    MARK = sys.argv[1]
    with open(MARK, "a") as f:  # every import of this script as a module leaves a line
        f.write(__name__ + "\\n")

    if __name__ == "__main__":
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["camfleet.runtime.forkmain"])
        for name in ("camfleet-cam1/ingest", "someone-else"):
            p = ctx.Process(target=os.getpid, name=name)
            p.start()
            p.join(30)
            assert p.exitcode == 0, (name, p.exitcode)
""")


def test_camfleet_processes_skip_main_others_keep_it(tmp_path: Path) -> None:
    script, mark = tmp_path / "prog.py", tmp_path / "imports.txt"
    script.write_text(SCRIPT)
    subprocess.run([sys.executable, str(script), str(mark)], check=True, timeout=60)
    # the program itself, then the one child that is not camfleet's (as __mp_main__)
    assert mark.read_text().split() == ["__main__", "__mp_main__"]


def test_prepare_drops_only_the_main_keys_of_camfleet_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(forkmain, "_prepare", lambda data: seen.append(dict(data)))
    data = {"name": "camfleet-cam1/pipeline", "sys_path": ["x"], "init_main_from_path": "/bin/camfleet"}
    forkmain.prepare_without_main(data)
    forkmain.prepare_without_main({**data, "name": "worker-1"})
    forkmain.prepare_without_main({"name": "camfleet-detector-cpu", "init_main_from_name": "tool"})
    assert seen == [{"name": "camfleet-cam1/pipeline", "sys_path": ["x"]},
                    {**data, "name": "worker-1"},
                    {"name": "camfleet-detector-cpu"}]
