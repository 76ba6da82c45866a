"""Default ports and timings, as MistServer's (reference 2.5 and appendix)."""

API_PORT = 4242
HTTP_PORT = 8080
RTMP_PORT = 1935
RTSP_PORT = 5554
SRT_PORT = 8889
WEBRTC_PORT = 18203

DVR_MS = 50_000  # live buffer window
FRAGMENT_MS = 1_900  # target fragment/segment duration
MAXKEEPAWAY_MS = 45_000  # furthest a live viewer may lag behind the edge
AUDIO_KEY_INTERVAL_MS = 2_047  # virtual keyframes on non-video tracks
PAGE_TIMEOUT_S = 15  # unused VoD data pages are unloaded after this
INPUT_TIMEOUT_S = 30  # an input with no viewers exits after this
STATS_DELAY_S = 15
SESSION_DENY_S = 600
TRIGGER_TIMEOUT_S = 10
