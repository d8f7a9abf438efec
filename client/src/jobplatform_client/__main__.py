"""``python -m jobplatform_client``: the ``jobplatform`` command."""

from __future__ import annotations

import sys

from jobplatform_client.cli import main

sys.exit(main())
