"""Run the controller in this process: ``python -m controller.run --port P [--events FILE]``.

os-ken 4.x has no ``osken-manager``: the app is started in-process with ``AppManager.run_apps``
(which blocks). SIGTERM and SIGINT stop it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m controller.run", description=__doc__)
    p.add_argument("--port", type=int, default=6653, help="OpenFlow TCP port")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--events", help="JSON-lines event log")
    p.add_argument("--status", help="JSON status file (switches, links, hosts), kept current")
    p.add_argument("--hold-s", type=float, default=1.0, help="flapping guard hold time")
    args = p.parse_args(argv)
    if not 0 < args.port < 65536:
        p.error(f"--port: got {args.port}, expected 1 to 65535")
    if not args.hold_s >= 0:
        p.error(f"--hold-s: got {args.hold_s}, expected a number of at least 0")
    logging.basicConfig(level=logging.INFO, format="controller %(levelname)s: %(message)s")

    from os_ken import cfg
    from os_ken.base.app_manager import AppManager

    from controller import app

    app.SETTINGS.update(events=args.events, status=args.status, hold_s=args.hold_s)
    cfg.CONF(args=["--ofp-tcp-listen-port", str(args.port), "--ofp-listen-host", args.host],
             project="os_ken")

    def stop(sig: int, _frame: object) -> None:
        # Not an exception: run_apps' cleanup joins os-ken's native server threads, which never
        # end, so the process would stay up and listening. Leave directly; the event log is
        # flushed line by line, so nothing is lost.
        logging.getLogger(__name__).info("stopping on signal %d", sig)
        sys.stdout.flush()
        logging.shutdown()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    AppManager.run_apps(["controller.app"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
