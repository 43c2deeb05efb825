"""Ctrl-C for commands that run until stopped: the first press sets the stop event, the second
raises KeyboardInterrupt, and the previous handler comes back afterwards."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from aesoperator.cli.interrupts import stop_on_first_interrupt


def _interrupt_self() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler runs in this (main) thread at the next bytecode


def test_first_interrupt_asks_to_stop_second_aborts() -> None:
    before = signal.getsignal(signal.SIGINT)
    told: list[str] = []
    with stop_on_first_interrupt(lambda: told.append("stopping")) as stop:
        assert not stop.is_set()
        _interrupt_self()
        assert stop.is_set() and told == ["stopping"]
        with pytest.raises(KeyboardInterrupt):
            _interrupt_self()
    assert signal.getsignal(signal.SIGINT) is before


def test_handler_is_restored_when_the_command_fails() -> None:
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(RuntimeError), stop_on_first_interrupt(lambda: None):
        raise RuntimeError("boom")
    assert signal.getsignal(signal.SIGINT) is before


def test_off_the_main_thread_only_the_holder_sets_the_event() -> None:
    got: list[threading.Event] = []

    def run() -> None:
        with stop_on_first_interrupt(lambda: None) as stop:
            got.append(stop)

    before = signal.getsignal(signal.SIGINT)
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert got and not got[0].is_set()
    assert signal.getsignal(signal.SIGINT) is before
