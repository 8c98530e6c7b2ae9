"""Run a function as another user in a forked child, with a time limit.

A fork rather than a new interpreter: the test's Python and virtualenv
may sit where the other user cannot read them.
"""

import os
import pwd
import select
import signal
import typing as ty


def run_as(user: ty.Optional[str], function: ty.Callable[[], str],
           timeout: float = 60.0) -> str:
    """``function()``'s text, computed by ``user`` (None: this user).

    The child is forked from a process that may have other threads (nova's
    services); should it deadlock on a lock one of them held, it is killed
    after ``timeout`` seconds and the caller gets an AssertionError.
    """
    account = pwd.getpwnam(user) if user is not None else None
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        status = 1
        try:
            os.close(read_end)
            if account is not None:
                os.setgroups([])
                os.setgid(account.pw_gid)
                os.setuid(account.pw_uid)
            os.write(write_end, function().encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as answer:
        ready, _, _ = select.select([answer], [], [], timeout)
        if not ready:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            raise AssertionError(f'running as {user} did not finish within '
                                 f'{timeout:g} s')
        text = answer.read()
    _, status = os.waitpid(child, 0)
    if status != 0:
        raise AssertionError(f'running as {user} failed (wait status '
                             f'{status})')
    return text
