"""Dates in the admin: one format, to the second, with the zone named (TIME_ZONE is UTC).

Django's own English formats drop the seconds ("Nov. 30, 2026, 1:18 p.m."); an operator
comparing an attempt's start with a log line needs them. Loaded through FORMAT_MODULE_PATH.
"""

from __future__ import annotations

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
