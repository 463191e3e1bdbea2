"""Plugin code's prints go to stderr, per thread (plugins/output.py)."""

from __future__ import annotations

import sys
import threading

import pytest

from connectsw.plugins.output import plugin_output_to_stderr


def test_only_the_thread_running_plugin_code_goes_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = sys.stdout
    inside, done = threading.Event(), threading.Event()

    def plugin() -> None:
        with plugin_output_to_stderr():
            print("from the plugin")
            inside.set()
            assert done.wait(5)
            print("from the plugin, later")

    thread = threading.Thread(target=plugin)
    thread.start()
    assert inside.wait(5)
    print("from connectsw")  # another thread at the same time: stdout, as before
    done.set()
    thread.join(5)
    out, err = capsys.readouterr()
    assert out == "from connectsw\n"
    assert err == "from the plugin\nfrom the plugin, later\n"
    assert sys.stdout is before  # the router is gone with the last block


def test_nested_blocks_and_a_raising_plugin_restore_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = sys.stdout
    with pytest.raises(ValueError), plugin_output_to_stderr():
        with plugin_output_to_stderr():
            print("inner")
        print("outer")
        raise ValueError("plugin broke")
    print("after")
    out, err = capsys.readouterr()
    assert (out, err) == ("after\n", "inner\nouter\n")
    assert sys.stdout is before
