from common.streamname import MAX_STREAM_NAME, base_name, sanitize


def test_base_is_lowercased_and_filtered() -> None:
    assert sanitize("My Live!") == "my Live!"[:2] + " Live!"  # space starts the verbatim part
    assert sanitize("Cam-1.main_HD") == "cam-1.main_hd"


def test_wildcard_part_kept_but_no_path_tricks() -> None:
    assert sanitize("Vod+Folder/../etc") == "vod+Folderetc"
    assert base_name("vod+anything") == "vod"


def test_length_cap() -> None:
    assert len(sanitize("a" * 500)) == MAX_STREAM_NAME
