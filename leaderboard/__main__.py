"""``python -m leaderboard [--url URL] [--db DB] [--read-only] [--port N]``: start the Streamlit app."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).with_name("app.py")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leaderboard", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="MongoDB URL (default: $HARNESS_MONGO_URL, then the embedded store)")
    parser.add_argument("--db", default=None, help="database name (default: clip3d)")
    parser.add_argument("--read-only", action="store_true", help="disable editing tags and notes")
    parser.add_argument("--port", type=int, default=None)
    args, streamlit_args = parser.parse_known_args(argv)
    command = [sys.executable, "-m", "streamlit", "run", str(APP), "--browser.gatherUsageStats", "false"]
    if args.port:
        command += ["--server.port", str(args.port)]
    command += streamlit_args
    env = dict(os.environ)
    if args.url:
        env["HARNESS_MONGO_URL"] = args.url
    if args.db:
        env["LEADERBOARD_DB"] = args.db
    if args.read_only:
        env["LEADERBOARD_READ_ONLY"] = "1"
    return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())
