"""Work-around for a reference-count bug of the PySide6 build in use (6.12.0, abi3 wheel) on Python < 3.12.

Every call of a Qt method returning void hands back `None` without taking a reference, and `Signal.emit()` does
the same with `True`/`False`, so each call takes one reference away from those singletons. On Python 3.12+ they
are immortal (PEP 683) and nothing happens; on 3.11 an annotation session of a few minutes drives the count to
zero and the interpreter aborts with "none_dealloc: deallocating None". Measured here: `QPainterPath.lineTo`
1000x lowers `sys.getrefcount(None)` by 1000.

The fix gives the three singletons what 3.12 gives them: a reference count so large that no session can exhaust
it (2**40 references; a leak of 10**5 per second would need 100 days). It touches nothing else.
"""

from __future__ import annotations

import ctypes
import platform
import sys

_HEADROOM = 1 << 40


def immortalize_singletons() -> bool:
    """Raise the reference counts of None, True and False out of reach of the leak. Returns True if it did."""
    if sys.version_info >= (3, 12) or platform.python_implementation() != "CPython":
        return False
    for obj in (None, True, False):
        if sys.getrefcount(obj) < _HEADROOM // 2:
            ctypes.c_ssize_t.from_address(id(obj)).value += _HEADROOM  # ob_refcnt is the object's first field
    return True
