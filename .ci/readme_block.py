"""Print the fenced code block that follows `<!-- ci:NAME ... -->` in README.md (for .ci/run).

CI runs the README's own lines, so the set-up and test command a newcomer reads are the ones checked.
"""

import re
import sys
from pathlib import Path

name = sys.argv[1]
readme = Path(__file__).resolve().parents[1] / "README.md"
match = re.search(rf"<!-- ci:{re.escape(name)}\b[^>]*-->\s*```[a-z]*\n(.*?)```", readme.read_text(), re.S)
if match is None:
    sys.exit(f"README.md has no <!-- ci:{name} --> marker followed by a fenced code block")
print(match.group(1), end="")
