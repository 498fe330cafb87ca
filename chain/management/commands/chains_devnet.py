"""manage.py chains_devnet: the local chain devnets (chain/devnet.py), in the foreground until
SIGINT or SIGTERM. `make run` starts it through honcho (Procfile) next to the web server and Celery.

Under honcho, a process that exits stops all the others, so when nothing can run (no anvil and the
Solana port taken) the command says so and stays idle instead of exiting; --exit-when-ready and
--for-seconds are for tests and scripts.
"""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from chain.devnet import EVM_BLOCK_TIME_SECONDS, DevnetRefused, devnet_check, devnet_start, run_until, summary


class Command(BaseCommand):
    help = (
        "Run the local chain devnets (one anvil per EVM chain with its real chain id, a Solana JSON-RPC "
        "endpoint on LiteSVM), deploy the contracts and point the registry rows at them. DEBUG only."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--block-time",
            type=float,
            default=EVM_BLOCK_TIME_SECONDS,
            help="Seconds between EVM blocks (blocks, and so confirmations, accrue with no traffic).",
        )
        parser.add_argument("--no-evm", dest="evm", action="store_false", help="Do not start the EVM chains.")
        parser.add_argument("--no-solana", dest="solana", action="store_false", help="Do not start Solana.")
        stop = parser.add_mutually_exclusive_group()
        stop.add_argument("--exit-when-ready", action="store_true", help="Stop everything once ready and exit.")
        stop.add_argument("--for-seconds", type=float, default=None, help="Run this long, then stop and exit.")

    def handle(
        self,
        *args,
        block_time: float,
        evm: bool,
        solana: bool,
        exit_when_ready: bool,
        for_seconds: float | None,
        **options,
    ) -> None:
        try:
            devnet_check()
        except DevnetRefused as exc:
            raise CommandError(str(exc)) from None
        if not 0.1 <= block_time <= 60:
            raise CommandError("--block-time is between 0.1 and 60 seconds.")
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        devnet = None
        try:
            devnet = devnet_start(block_time=block_time, evm=evm, solana=solana, log=self._say)
            for line in summary(devnet):
                self._say(line)
            if exit_when_ready or stop.is_set():
                return
            if not devnet.running:
                self._say("Nothing to run; waiting (so the process manager keeps the other processes up).")
            if for_seconds is not None:
                timer = threading.Timer(for_seconds, stop.set)
                timer.daemon = True
                timer.start()
            run_until(devnet, stop, log=self._say)
        finally:
            if devnet is not None:
                devnet.stop()
                self._say("Chain devnets stopped.")
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
