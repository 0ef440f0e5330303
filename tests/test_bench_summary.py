"""A timed benchmark session records one summary run (experiment `benchmarks`) in the store."""
import subprocess

from conftest import PYTHON, python_env

BENCH = '''
def test_tiny(benchmark):
    benchmark.extra_info["items_per_s"] = 123.5
    benchmark.extra_info["ratio.vs_reference"] = 2.0
    benchmark(sum, range(100))
'''


def test_timed_session_records_summary_run(tmp_path, store_dir, mongo_client):
    (tmp_path / "bench_tiny.py").write_text(BENCH)
    out = subprocess.run([PYTHON, "-m", "pytest", "-p", "conftest", "-q", str(tmp_path / "bench_tiny.py"),
                          "--benchmark-min-rounds=3", "-o", "python_files=bench_*.py",
                          "--rootdir", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=python_env(HARNESS_STORE_DIR=store_dir))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    doc = mongo_client.clip3d.runs.find_one({"experiment.name": "benchmarks"}, sort=[("start_time", -1)])
    assert doc is not None and doc["status"] == "COMPLETED"
    entry = doc["result"]["benchmarks"]["test_tiny"]
    assert entry["rounds"] >= 3 and 0 < entry["min_s"] <= entry["mean_s"]
    assert entry["extra_info"]["ratio_vs_reference"] == 2.0  # dots are not allowed in keys
    assert doc["result"]["throughput"]["test_tiny__items_per_s"] == 123.5
    assert doc["info"]["machine"]["python_version"]


def test_untimed_session_records_nothing(tmp_path, store_dir, mongo_client):
    before = mongo_client.clip3d.runs.count_documents({"experiment.name": "benchmarks"})
    (tmp_path / "bench_tiny.py").write_text(BENCH)
    out = subprocess.run([PYTHON, "-m", "pytest", "-p", "conftest", "-q", str(tmp_path / "bench_tiny.py"),
                          "--benchmark-disable", "-o", "python_files=bench_*.py", "--rootdir", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=python_env(HARNESS_STORE_DIR=store_dir))
    assert out.returncode == 0, out.stdout[-2000:]
    assert mongo_client.clip3d.runs.count_documents({"experiment.name": "benchmarks"}) == before
