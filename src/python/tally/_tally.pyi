# Type stubs for tally._tally, the C half of the tally package
# (src/python/tallymodule.c).  tests/python/test_package.py checks that these
# name exactly what the module has.
from builtins import TimeoutError as builtins_TimeoutError
from typing import Any, List, Optional, Tuple, TypeVar

_C = TypeVar("_C", bound="Counter")

version: str
DEFAULT_WAIT_MS: int

CAP_LOCKFREE: int
CAP_PSHARED: int
CAP_FAIR: int
CAP_BLOCKING: int
CAP_SPINNING: int
CAP_RACY: int
CAP_REMOTE: int
CAP_THREADS_ONLY: int
CAP_ROBUST: int
CAP_NAMED: int
CAP_LOCKED: int

EINVAL: int
ENOBACKEND: int
ENOTBUILT: int
EUNSUPPORTED: int
ENOMEM: int
ESYSTEM: int
EOPTION: int
ENOTFOUND: int
EEXIST: int
EBADOBJECT: int
ENOTRECOVERABLE: int
EREMOTE: int
EUNTRUSTED: int
EMISMATCH: int
EUNFINISHED: int
ENOSPACE: int
EWRONGTYPE: int
EUNKNOWN: int
ETIMEDOUT: int

class Error(Exception):
    errname: str
    code: int

class TimeoutError(Error, builtins_TimeoutError): ...

class Counter:
    def __init__(self, backend: Optional[str] = ..., initial: int = ...,
                 shared: bool = ..., name: Optional[str] = ...,
                 create: bool = ..., exclusive: bool = ..., *,
                 _auto: Optional[str] = ...) -> None: ...
    def add(self, delta: int = ..., *,
            timeout: Optional[float] = ...) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
    def _describe(self) -> Tuple[str, int, bool, bool, int,
                                 Optional[str], Optional[str], str]: ...
    def __enter__(self: _C) -> _C: ...
    def __exit__(self, *exc_info: object) -> None: ...
    def __reduce__(self) -> Tuple[Any, ...]: ...
    @property
    def value(self) -> int: ...
    @property
    def backend(self) -> str: ...
    @property
    def name(self) -> Optional[str]: ...
    @property
    def shared(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def _auto_name(self) -> Optional[str]: ...
    _release_gil: bool

def unlink(name: str) -> None: ...
def backends() -> List[Tuple[str, str, int, bool]]: ...
