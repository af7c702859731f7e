"""The README's Python example runs as written (in a scratch folder) and prints its exponents."""
import os
import re
import subprocess
import sys

from conftest import ROOT


def test_readme_python_example_runs(tmp_path):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Using it from Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert res.returncode == 0, res.stderr[-3000:]
    lines = re.findall(r"^(network_best|entk_init): alpha = (\S+) \[(\S+), (\S+)\]$", res.stdout, re.M)
    assert [m for m, *_ in lines] == ["network_best", "entk_init"]
    for _, alpha, lo, hi in lines:
        assert float(lo) <= float(alpha) <= float(hi) and float(alpha) > 0.2  # more data helps on digits
    assert re.search(r"^deficit = \S+ \[\S+, \S+\]$", res.stdout, re.M)
