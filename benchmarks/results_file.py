"""benchmarks/RESULTS.md: each benchmark owns one ``## `` section and rewrites only it.

Within its section a benchmark replaces the ``### `` sub-sections it measures and keeps
the others, hand-written notes in particular, and every other benchmark's section.
"""

from __future__ import annotations

import re

__all__ = ["replace_subsection"]


def replace_subsection(text: str, section: str, name: str, body: str, *,
                       first: bool = False) -> str:
    """Puts ``body`` as the ``### name`` sub-section of ``section``.

    Args:
        text: The current content of RESULTS.md.
        section: The benchmark's ``## ...`` heading line; appended when missing.
        name: The sub-section's title.
        body: The sub-section, starting with its ``### name`` line.
        first: Where a new sub-section goes: right under the heading (True) or at the
            end of the section. Defaults to False.

    Returns:
        The new content.
    """
    start = text.find(section)
    if start < 0:
        return text.rstrip() + f"\n\n{section}\n\n{body}"
    next_section = text.find("\n## ", start + len(section))
    end = len(text) if next_section < 0 else next_section + 1
    part = text[start:end]

    pattern = re.compile(rf"^### {re.escape(name)}\n.*?(?=^### |^## |\Z)", re.S | re.M)
    if pattern.search(part):
        part = pattern.sub(lambda _: body.rstrip() + "\n\n", part, count=1)
    else:
        # The placeholder of a section never run goes once real results arrive.
        part = part.replace("Not run yet.\n", "")
        if first:
            heading, rest = part.split("\n", 1)
            part = f"{heading}\n\n{body.rstrip()}\n\n{rest.lstrip()}"
        else:
            part = part.rstrip() + f"\n\n{body.rstrip()}\n"
    if end < len(text):
        part = part.rstrip() + "\n\n"
    return text[:start] + part + text[end:]
