"""The throughput benchmark still runs end to end (--quick); it prints ratios, timing is not asserted."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_runs_and_prints_every_ratio():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--quick"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "machine:" in text and "Traceback" not in out.stderr
    for pattern in (r"ratio collector/raw \(wall clock\) = \d+\.\d\d", r"ratio collector/raw-df \(CPU\) = \d+\.\d\d",
                    r"physical ceiling: a socket counting delivered bytes +\| [\d,]+", r"nats-py callback, json\.loads \+ float +\| [\d,]+",
                    r"ratio simulator/raw = \d+\.\d\d", r"Collector\.frame\(\) of [\d,]+ rows", r"repeated call +: [\d.]+ ms",
                    r"at 1,000 rows .*: [\d.]+ ms .* CPU", r"CPU : .* beside it: x\d\.\d\d\d",
                    r"first reading in a DataFrame after \d+\.\d\d s"):
        assert re.search(pattern, text), f"{pattern!r} not in:\n{text}"
