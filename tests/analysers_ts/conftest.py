from tests.codecs_ts.conftest import ts_files

__all__ = ["ts_files"]
