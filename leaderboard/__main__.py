"""``python -m leaderboard [--url URL] [--db DB] [--read-only] [--host H] [--port N]``: start the app.

It listens on 127.0.0.1 unless ``--host`` says otherwise; ``--host 0.0.0.0`` shares it with every
machine that can reach the port, prints what that exposes, and then editing tags and notes needs
``LEADERBOARD_EDIT_TOKEN`` (``name:secret``; see ``leaderboard.access``) or is off.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from leaderboard import access

APP = Path(__file__).with_name("app.py")
DEFAULT_PORT = 8501  # Streamlit's


def build(argv=None) -> tuple[list[str], dict, argparse.Namespace]:
    """The streamlit command line, its environment and the parsed arguments."""
    parser = argparse.ArgumentParser(prog="python -m leaderboard", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="MongoDB URL (default: $HARNESS_MONGO_URL, then the embedded store)")
    parser.add_argument("--db", default=None, help="database name (default: clip3d)")
    parser.add_argument("--read-only", action="store_true", help="disable editing tags and notes")
    parser.add_argument("--host", default=access.LOOPBACK,
                        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0: every "
                             f"interface, then editing needs ${access.ENV_TOKEN})")
    parser.add_argument("--port", type=int, default=None)
    args, streamlit_args = parser.parse_known_args(argv)
    if any(a == "--server.address" or a.startswith("--server.address=") for a in streamlit_args):
        parser.error("use --host to choose the address to listen on")
    command = [sys.executable, "-m", "streamlit", "run", str(APP), "--browser.gatherUsageStats", "false",
               "--server.address", args.host]
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
    return command, env, args


def main(argv=None) -> int:
    command, env, args = build(argv)
    if not access.is_loopback(args.host):
        from runstore import describe

        read_only = args.read_only or env.get("LEADERBOARD_READ_ONLY", "") not in ("", "0", "false")
        policy = access.EditPolicy.from_env(args.host, read_only=read_only, environ=env)
        store = describe(env.get("HARNESS_MONGO_URL"))
        for line in access.exposure_lines(args.host, args.port or DEFAULT_PORT, store,
                                          env.get("LEADERBOARD_DB") or "clip3d", policy):
            print(line, flush=True)
    return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())
