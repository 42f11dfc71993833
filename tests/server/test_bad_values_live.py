"""Values a client can get wrong, each answered with its CIM status, never an internal error
(found by running the product: a superscript digit, a number past the store's integers)."""

from __future__ import annotations

import pytest
import pywbem

from tests.harness import ProviderHandle
from tests.server.test_dsp0200_live import _headers, exchange


@pytest.mark.parametrize(
    "instance_id",
    [
        "GM:ConcreteJob:\u00b2",  # superscript two: str.isdigit() says yes, int() says no
        "GM:ConcreteJob:\u0661",  # Arabic-Indic one: int() reads it as 1
        "GM:ConcreteJob:99999999999999999999999",  # past a 64-bit integer
        "GM:ConcreteJob:01",  # not how job 1 is named
        "GM:EventDecision:\u00b2",
        "GM:EventDecision:99999999999999999999999",
    ],
)
def test_an_instance_id_that_names_no_instance_is_not_found(
    gm: ProviderHandle, instance_id: str
) -> None:
    classname = instance_id.split(":")[1]
    path = pywbem.CIMInstanceName(f"GM_{classname}", {"InstanceID": instance_id})
    with pytest.raises(pywbem.CIMError) as err:
        gm.connection().GetInstance(path)
    assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND, err.value


@pytest.mark.parametrize("count", ["\u00b2", "\u0663", "-1", "4294967296"])
def test_a_max_object_count_that_is_not_a_uint32_is_invalid(gm: ProviderHandle, count: str) -> None:
    body = (
        '<?xml version="1.0" encoding="utf-8" ?><CIM CIMVERSION="2.0" DTDVERSION="2.0">'
        '<MESSAGE ID="9" PROTOCOLVERSION="1.0"><SIMPLEREQ>'
        '<IMETHODCALL NAME="OpenEnumerateInstances">'
        '<LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH>'
        '<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="GM_Enclosure"/></IPARAMVALUE>'
        f'<IPARAMVALUE NAME="MaxObjectCount"><VALUE>{count}</VALUE></IPARAMVALUE>'
        "</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"
    )
    status, _, payload = exchange(gm, body, _headers(CIMMethod="OpenEnumerateInstances"))
    assert status == 200
    assert b'<ERROR CODE="4"' in payload and b"MaxObjectCount" in payload, payload
