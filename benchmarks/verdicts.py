"""How a benchmark reports its targets: met or missed, and by how much.

A verdict is a dict with ``target`` (what the issue asks), ``measured``
(what this run found, in words) and ``met`` (a bool).
"""


def rst_lines(verdicts):
    """A bulleted rst list; missed targets in bold so they stand out."""
    return [f"- {'met' if verdict['met'] else '**missed**'}: "
            f"{verdict['target']}: {verdict['measured']}"
            for verdict in verdicts]


def print_all(verdicts):
    """One line a verdict, aligned so MISSED is seen at a glance."""
    for verdict in verdicts:
        print(f"{'met   ' if verdict['met'] else 'MISSED'} "
              f"{verdict['target']}: {verdict['measured']}")
