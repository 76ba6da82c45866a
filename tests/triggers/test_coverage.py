"""Every trigger issue 7 lists has a test that fires it through the real programs.

The table names, per trigger, the test that starts the real controller and programs,
causes the event with a real client and asserts the payload lines. This test fails when
a trigger is missing from the table, when the named test is gone, or when its source no
longer looks at that trigger's calls.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

from controller.triggers import KNOWN

OUTPUTS = "tests.triggers.test_outputs"
CONTROLLER = "tests.triggers.test_controller"
LIVE = "tests.triggers.test_live_events"

FIRED_BY = {
    "SYSTEM_START": (CONTROLLER, "test_system_stream_and_output_triggers"),
    "SYSTEM_STOP": (CONTROLLER, "test_system_stream_and_output_triggers"),
    "OUTPUT_START": (CONTROLLER, "test_system_stream_and_output_triggers"),
    "OUTPUT_STOP": (CONTROLLER, "test_system_stream_and_output_triggers"),
    "STREAM_ADD": (CONTROLLER, "test_system_stream_and_output_triggers"),
    "STREAM_CONFIG": (CONTROLLER, "test_system_stream_and_output_triggers"),
    "STREAM_REMOVE": (CONTROLLER, "test_system_stream_and_output_triggers"),
    "STREAM_SOURCE": (CONTROLLER, "test_stream_source_load_ready_end_abort"),
    "STREAM_LOAD": (CONTROLLER, "test_stream_source_load_ready_end_abort"),
    "STREAM_READY": (OUTPUTS, "test_ffmpeg_viewers_in_clients_totals_prometheus_and_access_log"),
    "STREAM_UNLOAD": (LIVE, "test_stream_unload_vod_and_buffer"),
    "STREAM_PUSH": (OUTPUTS, "test_push_rewrite_renames_incoming_rtmp_push"),
    "STREAM_BUFFER": (LIVE, "test_stream_buffer_states_and_live_bandwidth"),
    "STREAM_END": (OUTPUTS, "test_ffmpeg_viewers_in_clients_totals_prometheus_and_access_log"),
    "LIVE_TRACK_LIST": (
        OUTPUTS,
        "test_ffmpeg_viewers_in_clients_totals_prometheus_and_access_log",
    ),
    "LIVE_BANDWIDTH": (LIVE, "test_stream_buffer_states_and_live_bandwidth"),
    "INPUT_ABORT": (CONTROLLER, "test_stream_source_load_ready_end_abort"),
    "RTMP_PUSH_REWRITE": (OUTPUTS, "test_rtmp_push_rewrite_rewrites_the_url"),
    "PUSH_REWRITE": (OUTPUTS, "test_push_rewrite_renames_incoming_rtmp_push"),
    "PUSH_OUT_START": (OUTPUTS, "test_push_out_start_and_end_triggers"),
    "PUSH_END": (OUTPUTS, "test_push_out_start_and_end_triggers"),
    "RECORDING_END": (OUTPUTS, "test_push_out_start_and_end_triggers"),
    "OUTPUT_END": (OUTPUTS, "test_push_out_start_and_end_triggers"),
    "CONN_OPEN": (OUTPUTS, "test_ffmpeg_viewers_in_clients_totals_prometheus_and_access_log"),
    "CONN_CLOSE": (OUTPUTS, "test_ffmpeg_viewers_in_clients_totals_prometheus_and_access_log"),
    "CONN_STOP": (OUTPUTS, "test_conn_stop_when_a_viewer_got_the_whole_file"),
    "CONN_PLAY": (OUTPUTS, "test_ffmpeg_viewers_in_clients_totals_prometheus_and_access_log"),
    "PLAY_REWRITE": (OUTPUTS, "test_play_rewrite_serves_another_stream"),
    "DEFAULT_STREAM": (OUTPUTS, "test_default_stream_serves_fallback"),
    "USER_NEW": (OUTPUTS, "test_user_new_false_blocks_http_hls_and_rtmp"),
    "USER_END": (OUTPUTS, "test_ffmpeg_viewers_in_clients_totals_prometheus_and_access_log"),
}

# Every trigger MistServer's code fires (issue 7's list plus the undocumented CONN_STOP).
REQUIRED = KNOWN


def test_every_listed_trigger_has_a_firing_test() -> None:
    assert len(REQUIRED) == 31
    missing = [name for name in REQUIRED if name not in FIRED_BY]
    assert not missing, f"no firing test for {missing}"


@pytest.mark.parametrize("name", REQUIRED)
def test_firing_test_exists_and_looks_at_the_trigger(name: str) -> None:
    module, test = FIRED_BY[name]
    func = getattr(importlib.import_module(module), test, None)
    assert callable(func), f"{name}: {module}.{test} does not exist"
    source = inspect.getsource(func)
    assert f'"{name}"' in source, f"{name}: {module}.{test} does not check its calls"
    assert "assert" in source
