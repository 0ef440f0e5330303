"""``python -m harness`` (and the ``clip3d`` console script).

Sacred commands (``render``, ``train``, ``evaluate``, the default ``run``, ``print_config`` …) go to
the one experiment; ``sync`` and ``worker`` are store maintenance commands outside Sacred;
``queue`` enqueues a run (Sacred's queue) for workers.
"""
import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else None
    if command == "sync":
        from harness.tracking import main_sync

        return main_sync(argv[1:])
    if command == "worker":
        from harness.sweeps import main_worker

        return main_worker(argv[1:])
    if command == "queue":
        from harness.sweeps import enqueue

        return enqueue(argv[1:])
    from harness.commands import ex

    run = ex.run_commandline(["harness", *argv])
    return 0 if run is None or run.status == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
