"""The Cache handle: one acache * shared by any number of threads."""
from __future__ import annotations

import ctypes
import json
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, NamedTuple, NoReturn, Optional, Union

from . import _constants as K
from ._constants import Outcome, ReportAction, ReservationPhase, TouchResult
from ._lib import (AffinityCb, Buf, ClockFn, ListQuery, Options, Report, Stats, Target, Touch,
                   lib)
from ._lib import ReportResult as _CReportResult
from .errors import InvalidArgumentError, error_for

__all__ = ["Affinity", "Cache", "ClosedError", "ReportResult"]

#: A decoded JSON object of the library (an admin body or its ``data``).
JSONDict = Dict[str, Any]
#: A string argument: str (encoded as UTF-8) or bytes as they are.
Text = Union[str, bytes]

_byref = ctypes.byref
_c_void_p = ctypes.c_void_p


class ClosedError(InvalidArgumentError):
    """The Cache was closed; no further call can use it."""

    def __init__(self) -> None:
        super().__init__(K.ACACHE_EINVALID, "aether_cache: the Cache is closed")


@dataclass(frozen=True)
class Affinity:
    """One pin: which provider, endpoint and key served a client key's
    requests for one API format and model. created_at and expire_at are epoch
    seconds (time.time() form); the dataclass repr shows every field."""
    affinity_key: str
    api_format: str
    model_name: str
    provider_id: str
    endpoint_id: str
    key_id: str
    created_at: float
    expire_at: float
    request_count: int


class ReportResult(NamedTuple):
    """What Cache.report() did: the action, and the consecutive transient
    failures on the pin after it (the kept count, or the count that dropped
    it). A tuple, so ``action, failures = c.report(...)`` works."""
    action: ReportAction
    failures: int


_PHASES = {"probe": K.ACACHE_RESERVATION_PROBE, "stable": K.ACACHE_RESERVATION_STABLE}


def _b(s: Optional[Text]) -> Optional[bytes]:
    """str -> UTF-8 bytes for a const char * argument; None stays NULL."""
    if s is None or isinstance(s, bytes):
        return s
    return s.encode("utf-8")


def _u(p: Optional[bytes]) -> str:
    # The record getters never return NULL for an open record.
    return "" if p is None else p.decode("utf-8", "replace")


def _raise(rc: int) -> NoReturn:
    # Read the thread-local message now: any later library call on this
    # thread may replace it.
    raise error_for(rc, lib.acache_last_error().decode("utf-8", "replace"))


def _take_text(rc: int, buf: Buf) -> str:
    """Return the buffer as str (or raise for rc), disposing of it either way."""
    try:
        if rc < 0:
            _raise(rc)
        return ctypes.string_at(buf.ptr, buf.size).decode("utf-8")
    finally:
        lib.acache_buf_dispose(_byref(buf))


def _unwrap(doc: JSONDict) -> JSONDict:
    """Admin bodies {"status": "ok", "data": X} -> X."""
    if doc.get("status") == "ok" and "data" in doc:
        data: JSONDict = doc["data"]
        return data
    return doc


def _affinity_from(a: Any) -> Affinity:
    return Affinity(
        affinity_key=_u(lib.acache_affinity_client_key(a)),
        api_format=_u(lib.acache_affinity_api_format(a)),
        model_name=_u(lib.acache_affinity_model_name(a)),
        provider_id=_u(lib.acache_affinity_provider_id(a)),
        endpoint_id=_u(lib.acache_affinity_endpoint_id(a)),
        key_id=_u(lib.acache_affinity_key_id(a)),
        created_at=lib.acache_affinity_created_at(a),
        expire_at=lib.acache_affinity_expire_at(a),
        request_count=lib.acache_affinity_request_count(a),
    )


def _target(kind: int, **fields: Optional[Text]) -> Target:
    """An acache_target of `kind` with the given string fields (None = NULL)."""
    t = Target(version=K.ACACHE_TARGET_VERSION, kind=kind)
    for name, value in fields.items():
        setattr(t, name, _b(value))
    return t


def _storage_order(a: Affinity) -> bytes:
    # The order of the storage keys cache_affinity:{key}:{format}:{model}.
    return b":".join(_b(x) or b"" for x in (a.affinity_key, a.api_format, a.model_name))


class Cache:
    """A libaethercache handle.

    Safe to share between threads: every method may run concurrently (ctypes
    releases the GIL during the C call). close() waits for calls in flight,
    and any call after it raises ClosedError instead of touching freed memory.

    Args:
        store: store URI; None = "memory://" (redis://host:port/db, unix:///path).
        catalog: catalog URI (json:///path, a path, postgresql://...); None = none.
        encryption_key: Aether's ENCRYPTION_KEY, to decrypt stored API keys.
        use_dev_encryption_key: with no encryption_key, use Aether's development key.
        default_ttl: affinity TTL in seconds; 0 = 300.
        l1_ttl_ms, l1_max_entries: L1 cache in front of Redis; 0 = default, <0 = off.
        connect_timeout_ms, command_timeout_ms: Redis timeouts; 0 = 2000.
        mapping_list_cap, mapping_ttl: model-mapping stats settings; 0 = default.
        clock: callable returning "now" in epoch seconds (tests); None = wall clock.
    """

    def __init__(self, store: Optional[str] = None, catalog: Optional[str] = None, *,
                 encryption_key: Optional[Text] = None, use_dev_encryption_key: bool = False,
                 default_ttl: int = 0, l1_ttl_ms: int = 0, l1_max_entries: int = 0,
                 connect_timeout_ms: int = 0, command_timeout_ms: int = 0,
                 mapping_list_cap: int = 0, mapping_ttl: int = 0,
                 clock: Optional[Callable[[], float]] = None) -> None:
        self._h: Optional[ctypes.c_void_p] = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        # The library's struct may be larger (fields appended in a newer
        # patch release): allocate its size and let it set the defaults.
        raw = ctypes.create_string_buffer(max(lib.acache_options_size(),
                                              ctypes.sizeof(Options)))
        rc = lib.acache_options_init(raw, K.ACACHE_OPTIONS_VERSION)
        if rc < 0:
            _raise(rc)
        o = Options.from_buffer(raw)
        o.store_uri = _b(store)
        o.catalog_uri = _b(catalog)
        o.default_ttl_s = int(default_ttl)
        o.l1_ttl_ms = int(l1_ttl_ms)
        o.l1_max_entries = int(l1_max_entries)
        o.connect_timeout_ms = int(connect_timeout_ms)
        o.command_timeout_ms = int(command_timeout_ms)
        o.encryption_key = _b(encryption_key)
        o.use_dev_encryption_key = 1 if use_dev_encryption_key else 0
        o.mapping_list_cap = int(mapping_list_cap)
        o.mapping_ttl_s = int(mapping_ttl)
        # The callback object must outlive the handle, which calls it.
        self._clock = ClockFn(lambda _payload: float(clock())) if clock else None  # type: ignore[misc]
        if self._clock is not None:
            o.clock = self._clock
        h = _c_void_p()
        rc = lib.acache_open(_byref(h), raw)
        if rc < 0:
            _raise(rc)
        self._h = h

    # ---- lifetime ----------------------------------------------------------

    def close(self) -> None:
        """Close the handle after the calls in flight return. Idempotent."""
        with self._lock:
            h, self._h = self._h, None
            while self._busy:
                self._idle.wait()
        if h is not None:
            lib.acache_close(h)

    def __enter__(self) -> Cache:
        """The Cache itself; leaving the with block closes it."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the Cache (see close())."""
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_h", None) is not None:
            lib.acache_close(self._h)
            self._h = None

    def __repr__(self) -> str:
        if self._h is None:
            return "<aether_cache.Cache closed>"
        return "<aether_cache.Cache store=%r>" % self.store_type

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._h is None

    def _enter(self) -> ctypes.c_void_p:
        with self._lock:
            if self._h is None:
                raise ClosedError()
            self._busy += 1
            return self._h

    def _leave(self) -> None:
        with self._lock:
            self._busy -= 1
            if self._busy == 0:
                self._idle.notify_all()

    def _status(self, fn: Callable[..., Any], *args: Any) -> int:
        """fn(handle, *args) -> int status; raises on failure."""
        h = self._enter()
        try:
            rc = int(fn(h, *args))
            if rc < 0:
                _raise(rc)
            return rc
        finally:
            self._leave()

    def _text(self, fn: Callable[..., Any], *args: Any) -> str:
        """fn(&buf, handle, *args) -> text of the buffer."""
        buf = Buf()
        h = self._enter()
        try:
            return _take_text(fn(_byref(buf), h, *args), buf)
        finally:
            self._leave()

    def _json(self, fn: Callable[..., Any], *args: Any) -> JSONDict:
        doc: JSONDict = json.loads(self._text(fn, *args))  # every body is an object
        return doc

    def _count(self, fn: Callable[..., Any], *args: Any) -> int:
        """fn(&size_t, handle, *args) -> the count."""
        n = ctypes.c_size_t(0)
        h = self._enter()
        try:
            rc = fn(_byref(n), h, *args)
            if rc < 0:
                _raise(rc)
            return n.value
        finally:
            self._leave()

    @property
    def store_type(self) -> str:
        """The store's scheme: "memory" or "redis"."""
        h = self._enter()
        try:
            return _u(lib.acache_store_type(h))
        finally:
            self._leave()

    # ---- gateway hot path --------------------------------------------------

    def get(self, affinity_key: Text, api_format: Text, model_name: Text) -> Affinity:
        """The live pin for (affinity_key, api_format, model_name).
        Raises NotFoundError when there is none (counted as a miss)."""
        out = _c_void_p()
        h = self._enter()
        try:
            rc = lib.acache_affinity_get(_byref(out), h, _b(affinity_key),
                                         _b(api_format), _b(model_name))
            if rc < 0:
                _raise(rc)
        finally:
            self._leave()
        try:
            return _affinity_from(out)
        finally:
            lib.acache_affinity_free(out)

    def touch(self, *, affinity_key: Text, api_format: Text, model_name: Text,
              provider_id: Text, endpoint_id: Text, key_id: Text,
              supports_caching: bool = True, ttl: int = 0) -> TouchResult:
        """Record a request served through (provider_id, endpoint_id, key_id)
        for (affinity_key, api_format, model_name): creates, refreshes or
        switches the pin. Keyword-only: six strings in a row are too easy to
        swap. supports_caching=False (the provider caches no prompts) writes
        nothing; ttl is in seconds, 0 = the handle's default_ttl.
        Returns a TouchResult (SKIPPED, CREATED, REFRESHED or SWITCHED)."""
        t = Touch(version=K.ACACHE_TOUCH_VERSION, affinity_key=_b(affinity_key),
                  api_format=_b(api_format), model_name=_b(model_name),
                  provider_id=_b(provider_id), endpoint_id=_b(endpoint_id),
                  key_id=_b(key_id), supports_caching=1 if supports_caching else 0,
                  ttl_s=int(ttl))
        res = ctypes.c_int(0)
        self._status(lambda h: lib.acache_affinity_touch(_byref(res), h, _byref(t)))
        return TouchResult(res.value)

    def report(self, *, affinity_key: Text, api_format: Text, model_name: Text,
               provider_id: Text, endpoint_id: Text, key_id: Text,
               outcome: Union[Outcome, int], supports_caching: bool = True,
               ttl: int = 0) -> ReportResult:
        """How a request served through (provider_id, endpoint_id, key_id)
        ended (acache_affinity_report); keyword-only like touch().
        Outcome.SUCCESS is touch(); TRANSIENT counts a failure on the pin,
        dropped at max_transient_failures in a row; TERMINAL drops it at once
        (a compare-and-delete on this target). Returns a ReportResult
        (action, failures on the pin after the call)."""
        r = Report(version=K.ACACHE_REPORT_VERSION, affinity_key=_b(affinity_key),
                   api_format=_b(api_format), model_name=_b(model_name),
                   provider_id=_b(provider_id), endpoint_id=_b(endpoint_id),
                   key_id=_b(key_id), outcome=int(outcome),
                   supports_caching=1 if supports_caching else 0, ttl_s=int(ttl))
        res = _CReportResult(version=K.ACACHE_REPORT_RESULT_VERSION)
        self._status(lambda h: lib.acache_affinity_report(_byref(res), h, _byref(r)))
        return ReportResult(ReportAction(res.action), int(res.failures))

    # ---- listings ----------------------------------------------------------

    def records(self, affinity_key: Optional[Text] = None) -> List[Affinity]:
        """Every live raw record (optionally of one client key), as Affinity,
        in storage-key order (acache_affinity_foreach)."""
        out: List[Affinity] = []
        failed: List[BaseException] = []

        def visit(a: Any, _payload: Any) -> int:
            try:
                out.append(_affinity_from(a))
                return 0
            except BaseException as e:  # noqa: BLE001 - re-raised below
                failed.append(e)
                return 1  # stop: ctypes cannot raise through C

        self._status(lib.acache_affinity_foreach, _b(affinity_key), AffinityCb(visit), None)
        if failed:
            raise failed[0]
        return sorted(out, key=_storage_order)

    def list_affinities(self, keyword: Optional[Text] = None, limit: int = 100,
                        offset: int = 0) -> JSONDict:
        """One page of the enriched listing (the admin body's data):
        {"items", "meta", "matched_user_id"}. keyword filters on user, key,
        provider and model names; limit 1..1000, offset >= 0."""
        q = ListQuery(version=K.ACACHE_LIST_QUERY_VERSION, keyword=_b(keyword),
                      limit=int(limit), offset=int(offset))
        return _unwrap(self._json(lib.acache_list_affinities, _byref(q)))

    def resolve_user(self, identifier: Text) -> str:
        """User id for a user id, username, email or API key id."""
        return self._text(lib.acache_resolve_user, _b(identifier))

    def user_affinities(self, identifier: Text) -> JSONDict:
        """One user's pins: {status, [message], user_info, affinities,
        total_endpoints}. Raises NotFoundError for an unknown identifier."""
        return self._json(lib.acache_user_affinities, _b(identifier))

    # ---- invalidation ------------------------------------------------------

    def invalidate_single(self, affinity_key: Text, api_format: Text, model_name: Text, *,
                          key_id: Optional[Text] = None, provider_id: Optional[Text] = None,
                          endpoint_id: Optional[Text] = None) -> None:
        """Delete one pin if every given (keyword-only) filter matches;
        NotFoundError otherwise."""
        self._status(lib.acache_affinity_invalidate, _b(affinity_key), _b(api_format),
                     _b(model_name), _b(key_id), _b(provider_id), _b(endpoint_id))

    def _invalidate(self, t: Target) -> int:
        """acache_invalidate(&n, handle, &t) -> n."""
        return self._count(lambda n, h: lib.acache_invalidate(n, h, _byref(t)))

    def invalidate_api_key(self, affinity_key: Text) -> int:
        """Remove every pin of one client API key; returns how many."""
        return self._invalidate(_target(K.ACACHE_TARGET_API_KEY, affinity_key=affinity_key))

    def invalidate_user(self, identifier: Text) -> JSONDict:
        """Remove the pins of a user (or of one API key id): the admin body
        {status, message, user_info, count}. NotFoundError when unknown."""
        t = _target(K.ACACHE_TARGET_USER, identifier=identifier)
        return self._json(lambda b, h: lib.acache_invalidate_json(b, h, _byref(t)))

    def invalidate_provider(self, provider_id: Text) -> int:
        """Remove every pin naming provider_id; returns how many."""
        return self._invalidate(_target(K.ACACHE_TARGET_PROVIDER, provider_id=provider_id))

    def invalidate_key(self, key_id: Text) -> int:
        """Remove every pin to one provider API key (key disabled); returns how many."""
        return self._invalidate(_target(K.ACACHE_TARGET_KEY, key_id=key_id))

    def invalidate_endpoint(self, endpoint_id: Text) -> int:
        """Remove every pin to one provider endpoint; returns how many."""
        return self._invalidate(_target(K.ACACHE_TARGET_ENDPOINT, endpoint_id=endpoint_id))

    def clear_all(self) -> int:
        """Remove every affinity record; returns how many."""
        return self._invalidate(_target(K.ACACHE_TARGET_ALL))

    # ---- stats, config, metrics -------------------------------------------

    def stats(self) -> JSONDict:
        """The admin stats `data` (affinity_stats, scheduler_metrics, ...)."""
        return _unwrap(self._json(lib.acache_stats_json))

    def counters(self) -> Dict[str, Union[int, float]]:
        """The raw acache_stats counters as a dict."""
        # Stats declares the version 1 layout: ask for exactly that (a newer
        # version would have the library write past the ctypes struct).
        s = Stats(version=1)
        self._status(lambda h: lib.acache_stats_get(_byref(s), h))
        return {name: getattr(s, name) for name, _ in Stats._fields_ if name != "version"}

    def config(self) -> JSONDict:
        """The admin config `data`."""
        return _unwrap(self._json(lib.acache_config_json))

    def metrics(self) -> str:
        """Prometheus text exposition (format 0.0.4)."""
        return self._text(lib.acache_metrics_text)

    def record_batch(self, batch_size: int) -> None:
        """Report a candidate batch of batch_size (scheduler_metrics)."""
        self._call_void(lib.acache_scheduler_record_batch, int(batch_size))

    def record_candidates(self, count: int) -> None:
        """Report that count candidates were enumerated (scheduler_metrics)."""
        self._call_void(lib.acache_scheduler_record_candidates, int(count))

    def record_cache(self, hit: bool) -> None:
        """Report a cache hit or miss seen while scheduling (scheduler_metrics)."""
        self._call_void(lib.acache_scheduler_record_cache, 1 if hit else 0)

    def record_concurrency_denied(self) -> None:
        """Report a candidate rejected for concurrency (scheduler_metrics)."""
        self._call_void(lib.acache_scheduler_record_concurrency_denied)

    def record_request(self, api_format: Optional[Text] = None,
                       model_name: Optional[Text] = None) -> None:
        """Remember the last request's API format and model (scheduler_metrics)."""
        self._call_void(lib.acache_scheduler_record_request, _b(api_format),
                        _b(model_name))

    def record_reservation(self, ratio: float, phase: Union[str, ReservationPhase, int],
                           confidence: float, load_factor: float) -> None:
        """Report a reservation check of the scheduler: the ratio it chose in
        phase ("probe", "stable" or a ReservationPhase), with its confidence
        and load factor. Feeds scheduler_metrics' reservation counters and
        dynamic_reservation in stats(). InvalidArgumentError for an unknown
        phase or a NaN/infinite value (nothing is recorded)."""
        if isinstance(phase, str):
            code = _PHASES.get(phase)
            if code is None:
                raise InvalidArgumentError(K.ACACHE_EINVALID,
                                           f"reservation phase {phase!r} unknown")
        else:
            code = int(phase)
        self._status(lib.acache_scheduler_record_reservation, float(ratio), code,
                     float(confidence), float(load_factor))

    def _call_void(self, fn: Callable[..., Any], *args: Any) -> None:
        h = self._enter()
        try:
            fn(h, *args)
        finally:
            self._leave()

    # ---- model-mapping cache (Redis store only) -----------------------------

    def model_mapping_stats(self) -> JSONDict:
        """The model-mapping stats `data` ({available, ...})."""
        return _unwrap(self._json(lib.acache_model_mapping_stats))

    def clear_model_mappings(self) -> int:
        """Delete every model:* / global_model:* key; returns how many.
        UnsupportedError on a non-Redis store."""
        return int(self._json(lib.acache_model_mapping_clear_all)["deleted_count"])

    def clear_model_mapping(self, model_name: Text) -> List[str]:
        """Delete global_model:resolve:{name} and global_model:name:{name};
        returns the keys that existed (in that order)."""
        keys: List[str] = self._json(lib.acache_model_mapping_clear_model,
                                     _b(model_name))["deleted_keys"]
        return keys

    def clear_provider_model_mapping(self, provider_id: Text,
                                     global_model_id: Text) -> List[str]:
        """Delete model:provider_global:{p}:{g} and its hits key; returns the
        keys that existed (in that order)."""
        keys: List[str] = self._json(lib.acache_model_mapping_clear_provider,
                                     _b(provider_id), _b(global_model_id))["deleted_keys"]
        return keys

    # ---- usage analyses (need a catalog) -----------------------------------

    def ttl_analysis(self, hours: int = 168, *, user_id: Optional[Text] = None,
                     api_key_id: Optional[Text] = None) -> JSONDict:
        """TTL recommendations from the catalog's usage of the last hours
        (1..720), per user, or per API key of user_id / api_key_id.
        UnsupportedError without a catalog."""
        return self._json(lib.acache_ttl_analysis, int(hours), _b(user_id),
                          _b(api_key_id))

    def hit_analysis(self, hours: int = 168, *, user_id: Optional[Text] = None,
                     api_key_id: Optional[Text] = None) -> JSONDict:
        """Cache-hit rates, tokens and costs of the last hours (1..720), for
        everyone or one user / API key. UnsupportedError without a catalog."""
        return self._json(lib.acache_hit_analysis, int(hours), _b(user_id),
                          _b(api_key_id))

    def interval_timeline(self, hours: int = 24, limit: int = 10000, *,
                          user_id: Optional[Text] = None,
                          include_user_info: bool = False) -> JSONDict:
        """Intervals between consecutive requests of a user over the last hours
        (1..720), at most limit points; include_user_info names the users.
        UnsupportedError without a catalog."""
        return self._json(lib.acache_interval_timeline, int(hours), int(limit),
                          _b(user_id), 1 if include_user_info else 0)

    # ---- keys --------------------------------------------------------------

    @staticmethod
    def mask_key(key: Optional[Text], prefix_len: int = 8,
                 suffix_len: int = 4) -> Optional[str]:
        """Mask a key as Aether displays it; None for an empty key."""
        data = _b(key)
        if not data:
            return None
        buf = Buf()
        rc = lib.acache_mask_key(_byref(buf), data, len(data), int(prefix_len),
                                 int(suffix_len))
        return _null_if_absent(rc, buf)

    def decrypt_and_mask(self, stored: Text) -> Optional[str]:
        """Decrypt a stored key column with the handle's key and mask it;
        None when empty. CryptoError when it does not decrypt."""
        buf = Buf()
        h = self._enter()
        try:
            rc = lib.acache_decrypt_and_mask(_byref(buf), h, _b(stored))
            return _null_if_absent(rc, buf)
        finally:
            self._leave()

    @staticmethod
    def decrypt_and_mask_with_key(encryption_key: Text, stored: Text) -> Optional[str]:
        """As decrypt_and_mask() with a per-call key (slow: PBKDF2 each call)."""
        buf = Buf()
        rc = lib.acache_decrypt_and_mask_with_key(_byref(buf), _b(encryption_key),
                                                  _b(stored))
        return _null_if_absent(rc, buf)


def _null_if_absent(rc: int, buf: Buf) -> Optional[str]:
    # ENOTFOUND here means "the mask is null", not a failure.
    if rc == K.ACACHE_ENOTFOUND:
        lib.acache_buf_dispose(_byref(buf))
        return None
    return _take_text(rc, buf)
