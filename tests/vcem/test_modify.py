"""ModifyInstance as WBEM clients do it: get, change one property, put the whole instance back
(pywbem's documented pattern). Properties sent back unchanged are not changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import pywbem

from provider.cim.operations import _same
from tests.harness import provider_process
from tests.vcem.cimtools import config

NS = "root/cimv2"


def test_get_modify_put_of_a_bay_changes_only_what_was_changed(tmp_path: Path) -> None:
    with provider_process(tmp_path, config=config()) as gm:
        conn = gm.connection()
        path = pywbem.CIMInstanceName(
            "GM_DeviceBay", {"EnclosureName": "enc01", "BayName": "12"}, namespace=NS
        )
        bay = conn.GetInstance(path)
        was = bay["IsSpare"]
        bay["IsSpare"] = not was
        conn.ModifyInstance(bay)  # every property goes back; only IsSpare differs
        after = conn.GetInstance(path)
        assert after["IsSpare"] is (not was)
        assert {k: v for k, v in after.items() if k != "IsSpare"} == {
            k: v for k, v in bay.items() if k != "IsSpare"
        }

        conn.ModifyInstance(after)  # nothing differs: nothing to do, and no error

        after["ServerModel"] = "ProLiant BL999"  # read-only: a real change is still refused
        with pytest.raises(pywbem.CIMError) as err:
            conn.ModifyInstance(after)
        assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
        assert "ServerModel" in err.value.status_description
        assert "IsSpare" not in err.value.status_description.split("not ", 1)[1]
        assert conn.GetInstance(path)["ServerModel"] != "ProLiant BL999"

        # A key that differs from the path's is refused, not dropped with the change.
        renamed = conn.GetInstance(path)
        renamed.properties["BayName"].value = "11"  # the path still names bay 12
        renamed["IsSpare"] = was
        with pytest.raises(pywbem.CIMError) as err:
            conn.ModifyInstance(renamed)
        assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
        assert "cannot change the key BayName" in err.value.status_description
        assert conn.GetInstance(path)["IsSpare"] is (not was)

        gone = after.copy()
        gone.path = pywbem.CIMInstanceName(
            "GM_DeviceBay", {"EnclosureName": "enc01", "BayName": "99"}, namespace=NS
        )
        gone["BayName"] = "99"
        with pytest.raises(pywbem.CIMError) as err:
            conn.ModifyInstance(gone)
        assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND


@pytest.mark.parametrize(
    ("have", "want", "same"),
    [
        (2, pywbem.Uint16(2), True),
        (2, pywbem.Uint16(3), False),
        (["a", "b"], ("a", "b"), True),
        (["a"], ["a", "b"], False),
        (True, True, True),
        (True, 1, False),
        (False, pywbem.Uint8(0), False),
        (None, None, True),
        ("x", None, False),
    ],
)
def test_same_compares_cim_values(have: object, want: object, same: bool) -> None:
    assert _same(have, want) is same
