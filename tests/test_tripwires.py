"""The kernel's tripwires (autograder.tripwires) on a small stand-in library, in a fresh process: no kernel, no torch."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from autograder import tripwires
from autograder.course import REPO

pytestmark = pytest.mark.unit

LIBRARY = {
    "fakelib/__init__.py": "from .ops import softmax, relu\nfrom .nn import Attention\n",
    "fakelib/ops.py": "def softmax(x):\n    return 'library softmax'\n\ndef relu(x):\n    return x\n",
    "fakelib/nn.py": "class Attention:\n    def __init__(self):\n        self.ready = True\n\n"
                     "    def forward(self, x):\n        return 'library attention'\n",
}
PATTERNS = ["fakelib*softmax", "fakelib.nn.Attention*"]


def run(tmp_path, body: str) -> list[str]:
    """Arm the tripwires as the kernel's preamble does, run `body`, return the hit log's lines."""
    for name, text in LIBRARY.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "connection.json").write_text("{}")
    preamble = tripwires.preamble(PATTERNS)
    program = preamble + "\nimport sys\nsys.path.insert(0, %r)\n" % str(tmp_path) + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", program, "-f", str(tmp_path / "connection.json")],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return (tmp_path / tripwires.LOG_NAME).read_text().splitlines()


def verdict(lines, nonce, value=None):
    hits, tampered = tripwires.read(lines, nonce, {"value": value})
    return sorted({n for names in hits for n in names}), tampered


@pytest.mark.timeout(120)
def test_calls_from_threads_and_c_are_caught(tmp_path):
    lines = run(tmp_path, """
        import threading
        from fakelib import softmax as s   # imported after the preamble: already armed
        import fakelib
        record = sys.modules['_autograder_tripwires']
        s(1)                                # outside a call: nothing recorded
        record.open('a1')
        worker = threading.Thread(target=lambda: s(1))
        worker.start()
        worker.join()
        record.close('a1', 'null')
        record.open('a2')
        assert next(map(fakelib.ops.softmax, [1])) == 'library softmax'
        fakelib.relu(1)                     # not forbidden
        record.close('a2', 'null')
        record.open('a3')
        fakelib.nn.Attention().forward(1)
        record.close('a3', 'null')
    """)
    assert not any(line.startswith("H") and " a" not in line for line in lines)
    assert verdict(lines, "a1") == (["fakelib.ops.softmax", "fakelib.softmax"], None)
    assert verdict(lines, "a2") == (["fakelib.ops.softmax", "fakelib.softmax"], None)
    assert verdict(lines, "a3") == (["fakelib.nn.Attention.__init__", "fakelib.nn.Attention.forward"], None)


@pytest.mark.timeout(120)
def test_tampering_is_reported_for_that_call(tmp_path):
    lines = run(tmp_path, """
        import fakelib, fakelib.ops
        record = sys.modules['_autograder_tripwires']
        record.open('ok')
        record.close('ok', '[1, 2]')
        wrapper = fakelib.ops.softmax
        original = next(c.cell_contents for c in wrapper.__closure__ if callable(c.cell_contents)
                        and getattr(c.cell_contents, '__name__', '') == 'softmax')
        fakelib.ops.softmax = original      # put the original back
        record.open('t1')
        record.close('t1', 'null')
        fakelib.ops.softmax = wrapper
        record.open('t2')                   # a call whose end mark never comes
    """)
    assert verdict(lines, "ok", [1, 2]) == ([], None)
    assert verdict(lines, "ok", [1, 3])[1] == "the answer the grader received is not the one the call produced"
    assert "fakelib.ops.softmax unwrapped" in verdict(lines, "t1")[1]
    assert "left no record" in verdict(lines, "t2")[1]
    assert "left no record" in verdict(lines, "never-sent")[1]
