"""Moved to `implicit_reasoning.runtime.quiet`: re-exported here until the next release."""

import warnings

from implicit_reasoning.runtime.quiet import (
    DEEPSPEED_CPU_NOTICE,
    UPSTREAM_DEPRECATIONS,
    deepspeed_notice_dropped,
    import_integrations_quietly,
    quiet_notices,
    upstream_deprecations,
)

__all__ = [
    "DEEPSPEED_CPU_NOTICE",
    "UPSTREAM_DEPRECATIONS",
    "deepspeed_notice_dropped",
    "import_integrations_quietly",
    "quiet_notices",
    "upstream_deprecations",
]

warnings.warn(
    "implicit_reasoning.utils.quiet moved to implicit_reasoning.runtime.quiet;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
