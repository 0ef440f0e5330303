"""``python -m harness`` (and the ``clip3d`` console script).

Sacred commands (``render``, ``train``, ``evaluate``, the default ``run``, ``print_config`` …) go to
the one experiment; ``sync`` and ``worker`` are store maintenance commands outside Sacred;
``queue`` enqueues a run (Sacred's queue) for workers. What the console shows (a summary instead of
the result dump, no third-party INFO noise, one line for bad input) is ``harness/console.py``.
"""
import sys


def mongo_url_as_config(argv: list[str]) -> list[str]:
    """Turn ``-m mongodb://user:pw@host/db`` into ``with store.url=... store.db=db``.

    Sacred's ``-m`` only parses ``[host:port:]db``; a full URL (credentials, replica sets, options)
    goes through the config instead, where the observer masks its password before storing it.
    """
    out, updates, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        flag, _, inline = arg.partition("=") if arg.startswith("--mongo_db=") else (arg, "", "")
        if flag in ("-m", "--mongo_db"):
            value = inline or (argv[i + 1] if i + 1 < len(argv) else "")
            if value.startswith(("mongodb://", "mongodb+srv://")):
                from pymongo.uri_parser import parse_uri

                updates.append(f"store.url={value}")
                database = parse_uri(value, validate=False, warn=True).get("database")
                if database:
                    updates.append(f"store.db={database}")
                i += 1 if inline else 2
                continue
        out.append(arg)
        i += 1
    if not updates:
        return out
    if "with" in out:
        at = out.index("with") + 1
        return out[:at] + updates + out[at:]
    return out + ["with", *updates]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else None
    if command == "sync":
        from harness.tracking import main_sync

        return main_sync(argv[1:])
    from harness import console

    console.setup()  # before Sacred is imported: its import warning, then the console's log handler
    if command == "worker":
        from harness.sweeps import main_worker

        return main_worker(argv[1:])
    if command == "queue":
        from harness.sweeps import enqueue

        return enqueue(argv[1:])
    from harness.commands import ex

    # Bad input exits here (SystemExit 2) with one line; see HarnessExperiment.run.
    run = ex.run_commandline(["harness", *mongo_url_as_config(argv)])
    console.print_summary(run)  # instead of Sacred's "Result: {...}" (kept off the console)
    return 0 if run is None or run.status == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
