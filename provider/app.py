"""The application: one HTTP request in, one HTTP response out (DSP0200 over DSP0201).

This is the one place where exceptions become wire responses:

* `ProtocolError` (bad headers, unparseable or invalid XML, unsupported versions) propagates
  to the transport, which answers with its HTTP status, `CIMError` and `PGErrorDetail`;
* once the request's MESSAGE and method are known, a `CIMClientError` or `ServerError`
  becomes an HTTP 200 with `<ERROR CODE= DESCRIPTION=>` inside the (I)METHODRESPONSE, the
  description prefixed with the status name as OpenPegasus does
  (`CIM_ERR_FAILED: This system is not ...`, seed 003);
* anything else is our bug: logged with its traceback and answered CIM_ERR_FAILED with a
  description that says so, never a crash.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator

from provider.cim.operations import CimOperations, MethodResponse
from provider.cim.provider import OperationContext
from provider.cimxml.encode import (
    encode_error,
    encode_export_response,
    encode_imethod_response,
    encode_method_response,
    iter_imethod_response,
)
from provider.cimxml.headers import (
    check_export_headers,
    check_operation_headers,
    check_request_matches_headers,
)
from provider.cimxml.messages import (
    ExportCall,
    ExtrinsicCall,
    InstanceNamesResult,
    IntrinsicCall,
    IntrinsicResult,
    NamedInstancesResult,
)
from provider.cimxml.parse import DEFAULT_MAX_DEPTH, DEFAULT_MAX_ELEMENTS, parse_request
from provider.errors import CIMClientError, ProtocolError, ServerError
from provider.http.messages import HttpRequest, HttpResponse, Principal

__all__ = ["CimApplication", "ExportHandler"]

log = logging.getLogger("gm.app")

_XML = 'application/xml; charset="utf-8"'

# Receives an indication delivered by an export request (issue: automatic event handling).
ExportHandler = Callable[[ExportCall, Principal | None], Awaitable[None]]


def _wire_description(exc: CIMClientError | ServerError) -> tuple[int, str]:
    code = exc.status_code
    name = exc.code_name if isinstance(exc, CIMClientError) else "CIM_ERR_FAILED"
    return code, f"{name}: {exc.description}"


class CimApplication:
    def __init__(
        self,
        operations: CimOperations,
        export_handler: ExportHandler | None = None,
        *,
        max_xml_depth: int = DEFAULT_MAX_DEPTH,
        max_xml_elements: int = DEFAULT_MAX_ELEMENTS,
    ) -> None:
        self.operations = operations
        self.export_handler = export_handler
        # The codec's bounds on a request document (`server.max_xml_depth/_elements`).
        self.max_xml_depth = max_xml_depth
        self.max_xml_elements = max_xml_elements

    def _parse(self, body: bytes) -> IntrinsicCall | ExtrinsicCall | ExportCall:
        return parse_request(body, max_depth=self.max_xml_depth, max_elements=self.max_xml_elements)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        headers = request.headers
        if "cimoperation" not in headers and "cimexport" in headers:
            return await self._export(request)
        hdrs = check_operation_headers(headers)
        call = self._parse(request.body)
        if isinstance(call, ExportCall):
            raise ProtocolError(
                400,
                "header-mismatch",
                "An export request (SIMPLEEXPREQ) needs the CIMExport header, not CIMOperation.",
            )
        check_request_matches_headers(hdrs, call)
        ctx = OperationContext(request.principal, _namespace(call), self.operations.host)
        intrinsic = isinstance(call, IntrinsicCall)
        try:
            if isinstance(call, IntrinsicCall):
                result = self.operations.intrinsic(call, ctx)
                body = self._intrinsic_body(call, result)
            else:
                response = await self.operations.extrinsic(call, ctx)
                body = _method_body(call, response)
        except (CIMClientError, ServerError) as exc:
            body = self._error(call, intrinsic, exc)
        except Exception:
            log.exception("%s failed unexpectedly", call.method)
            body = encode_error(
                call.message_id,
                call.method,
                intrinsic=intrinsic,
                code=1,
                description="CIM_ERR_FAILED: internal error in gm-provider; the server log has "
                "the details. Nothing was changed by this request unless its job says so.",
            )
        answer = [("Content-Type", _XML), ("CIMOperation", "MethodResponse")]
        if isinstance(body, bytes):
            return HttpResponse(200, answer, body)
        return HttpResponse(200, answer, body, _TRAILERS, _failure_trailers)

    def _intrinsic_body(
        self, call: IntrinsicCall, result: IntrinsicResult
    ) -> bytes | Iterator[bytes]:
        if isinstance(result, NamedInstancesResult | InstanceNamesResult):
            # Large enumerations stream (chunked); pull the first chunk now so an error in
            # the provider's first step still becomes a CIM error and not a broken stream.
            chunks = iter_imethod_response(call.message_id, call.method, result)
            first = next(chunks)
            return _prepend(first, chunks)
        return encode_imethod_response(call.message_id, call.method, result)

    def _error(
        self,
        call: IntrinsicCall | ExtrinsicCall,
        intrinsic: bool,
        exc: CIMClientError | ServerError,
    ) -> bytes:
        if isinstance(exc, ServerError):
            log.warning("%s failed: %s", call.method, exc.description)
        code, description = _wire_description(exc)
        return encode_error(
            call.message_id, call.method, intrinsic=intrinsic, code=code, description=description
        )

    async def _export(self, request: HttpRequest) -> HttpResponse:
        hdrs = check_export_headers(request.headers)
        call = self._parse(request.body)
        if not isinstance(call, ExportCall):
            raise ProtocolError(
                400,
                "header-mismatch",
                "The CIMExport header needs an export request (SIMPLEEXPREQ) in the body.",
            )
        check_request_matches_headers(hdrs, call)
        error: tuple[int, str] | None = None
        if self.export_handler is None:
            error = (7, "CIM_ERR_NOT_SUPPORTED: this server accepts no indications.")
        else:
            try:
                await self.export_handler(call, request.principal)
            except (CIMClientError, ServerError) as exc:
                error = _wire_description(exc)
            except Exception:
                log.exception("export %s failed unexpectedly", call.method)
                error = (1, "CIM_ERR_FAILED: internal error in gm-provider; see the server log.")
        body = encode_export_response(call.message_id, call.method, error)
        return HttpResponse(200, [("Content-Type", _XML), ("CIMExport", "MethodResponse")], body)


# DSP0200: a streamed response that fails after its status line went out ends with these
# trailers (to a client that sent `TE: trailers`), as SFCB's do; wbemcli reads them.
_TRAILERS = ("CIMStatusCode", "CIMStatusCodeDescription")
# Printable ASCII stays as it is; anything else (a line break, non-ASCII) is %-escaped, as
# in PGErrorDetail, so that the value is one header line.
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def _failure_trailers(exc: Exception) -> list[tuple[str, str]]:
    if isinstance(exc, CIMClientError | ServerError):
        code, description = _wire_description(exc)
    else:
        code, description = 1, "CIM_ERR_FAILED: internal error in gm-provider mid-response"
    description += "; the response is incomplete, and the server log has the details."
    return [
        ("CIMStatusCode", str(code)),
        ("CIMStatusCodeDescription", urllib.parse.quote(description, safe=_SAFE)),
    ]


def _namespace(call: IntrinsicCall | ExtrinsicCall) -> str:
    if isinstance(call, IntrinsicCall):
        return call.namespace
    return str(call.target.namespace or "root/cimv2")


def _method_body(call: ExtrinsicCall, response: MethodResponse) -> bytes:
    return encode_method_response(
        call.message_id,
        call.method,
        response.return_type,
        response.return_value,
        list(response.out),
    )


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest
