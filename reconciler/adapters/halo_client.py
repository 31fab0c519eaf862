"""The Halo Cloud client: the Halo policy (key header, bounded retries, Retry-After, the error
envelope) over one pooled ``httpx.Client``. Transport-agnostic: tests pass ``transport=``.

Callers see only ``reconciler.core.halo_errors`` types and parsed ``reconciler.core.sites`` values.

Retries are a loop of our own (``_send``), not a retry library's: the wait is one function of the
failed attempt (Retry-After when Halo sends it, capped, else full jitter from *our* injected
``random``), the sleep is the injected ``sleep`` of this one client, and the events are our own
``halo_request_retried`` / ``halo_request_failed``. tenacity did the same with a ``Retrying`` built
per call, about 1.5% of a reconciliation's CPU (docs/BENCHMARKS.md, "reconcile"); stamina's backoff
adds jitter on top of an exponential wait instead of drawing the whole wait at random.
"""

from __future__ import annotations

import base64
import json
import random as random_module
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx
import structlog
from pydantic import ValidationError

from reconciler.core.vocabulary import ForbiddenCause, PmsType
from reconciler.core import backoff
from reconciler.core.guids import parse_guid
from reconciler.core.halo_errors import (
    HaloBadRequest,
    HaloBadResponse,
    HaloError,
    HaloForbidden,
    HaloNotFound,
    HaloPairingRefused,
    HaloRateLimited,
    HaloServerError,
    HaloTimeout,
    HaloUnauthorized,
    HaloUnavailable,
    forbidden_cause,
)
from reconciler.core.sites import FindSitesResult, QueryResult, Site

log = structlog.get_logger()

KEY_HEADER = "Ocp-Apim-Subscription-Key"
RETRYABLE = frozenset({429, 500, 502, 503, 504})

try:
    _VERSION = version("halo-reconciler")
except PackageNotFoundError:  # running from a source tree that was not installed
    _VERSION = "dev"


class ClientClosed(RuntimeError):
    """A closed client was used again (one client per process, closed at shutdown)."""


def _envelope_message(response: httpx.Response) -> str | None:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return None
    return str(message)[:300] if message is not None else None


def _retry_after(response: httpx.Response, now: float) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - now, 0.0)


class HaloClient:
    def __init__(
        self,
        *,
        base_url: str,
        subscription_key: str | None,
        timeout: float = 15.0,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        retry_after_cap: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = random_module.random,
        before_request: Callable[[str], None] | None = None,
        on_call: Callable[[str, int | str, float], None] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        headers = {"User-Agent": f"halo-reconciler/{_VERSION}", "Accept": "application/json"}
        if subscription_key:
            headers[KEY_HEADER] = subscription_key
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=20),
        )
        self._base_url = base_url
        # What build_request would merge into every request, computed once (see _request).
        self._prefix = str(self._http.build_request("GET", "_").url)[:-1]  # the base URL merged as httpx merges it
        self._timeout = self._http.timeout.as_dict()
        # Every request goes to the base URL, so to one transport: the pool, or the proxy the environment
        # names for it (httpx's mounts), resolved once here as ``Client.send`` resolves it per request.
        self._transport = self._http._transport_for_url(httpx.URL(self._prefix))
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._retry_after_cap = retry_after_cap
        self._sleep = sleep
        self._random = random
        self._before_request = before_request
        # Told of every attempt's endpoint, status (or "timeout"/"unreachable") and seconds: metrics.
        self._on_call = on_call or (lambda endpoint, status, seconds: None)
        # Counted per thread: a worker's threads share one client, and a run counts its own calls.
        self._attempts = threading.local()
        self._closed = False

    def __repr__(self) -> str:  # never the key
        return f"HaloClient(base_url={self._base_url!r}, closed={self._closed})"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def attempts(self) -> int:
        """HTTP attempts this client made in this thread, every endpoint and retry included (a run
        takes the difference across its calls; under the threads pool, other runs' calls are not in it)."""
        return getattr(self._attempts, "n", 0)

    # --- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        self._closed = True
        self._http.close()

    def __enter__(self) -> "HaloClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- endpoints -------------------------------------------------------------------------------

    def find_sites(self, pms_type: PmsType, pms_id: str) -> list[Site]:
        """Find sites by PMS ID. The query parameter takes "Best Practice"; responses say "BestPractice"."""
        if not pms_id or not pms_id.strip():
            raise ValueError("pms_id is empty")
        params = {"practiceManagementSiteId": pms_id.strip(), "practiceManagementName": PmsType(pms_type).query_name}
        response = self._send("find_sites", "GET", "/integrator/sites", params=params)
        return self._parse(FindSitesResult, response).sites

    def get_site(self, guid: str) -> Site:
        """Get site status: the site's ``status`` and ``availability`` as Halo sees them now.

        A site we are not paired with answers 403: ``HaloForbidden`` with cause ``other`` (a GUID
        problem), never ``ip_not_allowed`` or ``quota_exceeded`` unless Halo's message says so.
        """
        asked = parse_guid(guid)
        response = self._send("get_site", "GET", f"/integrator/sites/{asked}")
        site: Site = self._parse(Site, response)
        if site.id != asked:
            # An answer about another site says nothing about this one: never switch on it.
            raise HaloBadResponse(f"Get site status on {asked} answered for another site ({site.id})",
                                  status=response.status_code)
        return site

    def pair_site(self, pms_type: PmsType, pms_id: str, pairing_code: str | None = None) -> Site:
        """Pair with a site, which every other call on it needs, and return the site Halo paired.

        Best Practice sites need the practice's ``pairing_code``; Zedmed and D4w pair without one
        (``pairingCode`` is sent only when given). A refused pairing is :class:`HaloPairingRefused`.
        Like every call it is retried on 429, 5xx and timeouts; pairing an already paired site is
        harmless, but if Halo spends a one-time code on an attempt whose answer was lost, the retry
        may be refused: check the site with :meth:`get_site` before reporting the code as wrong.
        """
        if not pms_id or not pms_id.strip():
            raise ValueError("pms_id is empty")
        params = {"practiceManagementSiteId": pms_id.strip(), "practiceManagementName": PmsType(pms_type).query_name}
        if pairing_code is not None:
            if not pairing_code.strip():
                raise ValueError("the pairing code is empty")
            params["pairingCode"] = pairing_code.strip()
        try:
            response = self._send("pair_site", "POST", "/integrator/pair-site", params=params)
        except (HaloBadRequest, HaloForbidden) as exc:
            if not _is_refused_pairing(exc):
                raise
            raise HaloPairingRefused(f"Halo refused to pair with the site: {exc.message}", status=exc.status) from exc
        return self._parse(Site, response)

    def immediate_query(
        self, guid: str, sql: str, *, catalogue: str | None = None, max_time_in_queue_ms: int = 30000
    ) -> QueryResult:
        if not sql or not sql.strip():
            raise ValueError("the SQL text is empty")
        body: dict[str, Any] = {
            "command": {"text": sql, "executionMode": "reader", "type": "text"},
            "maxTimeInQueue": max_time_in_queue_ms,
        }
        if catalogue:
            body["catalogue"] = catalogue
        response = self._send("immediate_query", "POST", f"/integrator/sites/{parse_guid(guid)}/queries/immediate",
                              json=body)
        try:
            document = response.json()
            rows = json.loads(base64.b64decode(document["result"]["data"], validate=True))
            if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
                raise TypeError("rows are not a list of objects")
            return QueryResult.model_validate({"query_id": str(document["id"]), "rows": rows})
        except (ValueError, KeyError, TypeError) as exc:
            raise HaloBadResponse("the immediate query answer does not parse", status=response.status_code) from exc

    # --- the policy --------------------------------------------------------------------------------

    def _parse(self, model: type, response: httpx.Response) -> Any:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            # A garbled answer is not transient: retrying spends money for the same garbage, and
            # acting on it could switch a GUID. The verdict layer turns it into halo_unavailable.
            raise HaloBadResponse(f"Halo's answer does not match the published schema ({exc.error_count()} error(s))",
                                  status=response.status_code) from exc

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._retry_after_cap)
        # Full jitter: spreads retries of many workers over the whole window, as Halo asks.
        return backoff.full_jitter(attempt - 1, base=self._backoff_base, random=self._random())

    def _send(self, endpoint: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call: at most ``max_attempts`` attempts, retrying only what :meth:`_attempt` calls
        :class:`HaloUnavailable`; the last such failure is raised as it is. Before each attempt, the
        ``before_request`` hook (the fleet's rate limiter); between two, the wait :meth:`_wait` draws."""
        if self._closed:
            raise ClientClosed("this HaloClient is closed")
        request = self._request(method, path, **kwargs)  # built once for every attempt of the call
        attempt = 1
        while True:
            if self._before_request is not None:
                self._before_request(endpoint)
            try:
                return self._attempt(endpoint, request)
            except HaloUnavailable as failure:
                if attempt >= self._max_attempts:
                    log.warning("halo_request_failed", endpoint=endpoint, attempts=self._max_attempts,
                                status=failure.status, error=type(failure).__name__)
                    raise
                wait = self._wait(attempt, failure.retry_after)
                log.info("halo_request_retried", endpoint=endpoint, attempt=attempt, status=failure.status,
                         wait_seconds=round(wait, 3))
                self._sleep(wait)
                attempt += 1

    def _request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                 json: Any = None) -> httpx.Request:
        """The request every attempt of one call sends, built as ``httpx.Client.build_request`` builds
        it (the base URL, the client's headers and timeout, the query encoded by ``httpx.QueryParams``)
        but with one URL parse instead of three. A client holding cookies (Halo never sets any) takes
        httpx's own path, so they are sent as before."""
        if self._http.cookies:
            return self._http.build_request(method, path, params=params, json=json)
        url = self._prefix + path.lstrip("/")
        if params:
            url += "?" + str(httpx.QueryParams(params))
        return httpx.Request(method, url, headers=self._http.headers, json=json,
                             extensions={"timeout": self._timeout})

    def _exchange(self, request: httpx.Request) -> httpx.Response:
        """``httpx.Client.send(request)`` for this client's requests, without the layers they never use
        (about a third of a request's CPU in httpx: docs/BENCHMARKS.md, "reconcile"): there is no auth
        flow (the key is a header), no redirect is followed (a 3xx is returned as it is, as
        ``follow_redirects=False`` does) and no event hook is set. The transport's response is read
        whole and its connection returned to the pool (closed on a failure), as ``send`` does; cookies,
        which Halo does not set, are still kept when a response sets one (``_request`` sends them)."""
        response = self._transport.handle_request(request)
        response.request = request
        try:
            response.read()
        except BaseException:
            response.close()
            raise
        if "set-cookie" in response.headers:
            self._http.cookies.extract_cookies(response)
        return response

    def _attempt(self, endpoint: str, request: httpx.Request) -> httpx.Response:
        """One HTTP attempt: a 2xx response, or the error it means, chained from httpx's."""
        self._attempts.n = getattr(self._attempts, "n", 0) + 1
        sent = time.perf_counter()
        try:
            response = self._exchange(request)
        except httpx.TimeoutException as exc:
            self._on_call(endpoint, "timeout", time.perf_counter() - sent)
            raise HaloTimeout(f"Halo did not answer {endpoint} in time") from exc
        except httpx.TransportError as exc:
            self._on_call(endpoint, "unreachable", time.perf_counter() - sent)
            raise HaloTimeout(f"could not reach Halo for {endpoint} ({type(exc).__name__})") from exc
        status = response.status_code
        self._on_call(endpoint, status, time.perf_counter() - sent)
        if 200 <= status < 300:
            return response
        # Our own words, not httpx's: its message names the URL, and pair-site's holds the pairing code.
        http_error = httpx.HTTPStatusError(f"HTTP {status}", request=response.request, response=response)
        if status not in RETRYABLE:
            raise self._error(response) from http_error
        retry_after = _retry_after(response, time.time())
        message = _envelope_message(response) or response.reason_phrase or "no message"
        if status == 429:
            raise HaloRateLimited(f"Halo rate-limited {endpoint}: {message}", status=429,
                                  retry_after=retry_after) from http_error
        raise HaloServerError(f"Halo answered {status} to {endpoint}: {message}", status=status,
                              retry_after=retry_after) from http_error

    def _error(self, response: httpx.Response) -> HaloError:
        status = response.status_code
        message = _envelope_message(response) or response.reason_phrase or "no message"
        if status == 400:
            return HaloBadRequest(f"Halo refused the request: {message}", status=400)
        if status == 401:
            return HaloUnauthorized(message, status=401)
        if status == 403:
            return HaloForbidden(message, cause=forbidden_cause(message))
        if status == 404:
            return HaloNotFound(message, status=404)
        return HaloBadResponse(f"Halo answered an unexpected {status}: {message}", status=status)


def _is_refused_pairing(error: HaloBadRequest | HaloForbidden) -> bool:
    """Whether Pair with a site's 400 or 403 refuses the pairing itself (a wrong, expired or missing
    code). The document names no message for it, so: a 403 that is not about our IP, our quota or an
    authoritative site, or a 400 whose message speaks of pairing. Other 400s (a parameter we spelt
    wrong) stay HaloBadRequest."""
    if isinstance(error, HaloForbidden):
        return error.cause is ForbiddenCause.OTHER
    return "pair" in error.message.casefold()
