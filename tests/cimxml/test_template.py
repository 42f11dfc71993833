"""InstanceTemplate renders rows exactly as the general encoder renders the same instance."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pywbem import (
    CIMDateTime,
    CIMInstance,
    CIMInstanceName,
    CIMProperty,
    Uint16,
    Uint32,
    Uint64,
)

from provider.cimxml.encode import (
    InstanceTemplate,
    encode_imethod_response,
    encode_instance,
    encode_instance_name,
)
from provider.cimxml.messages import (
    NamedInstancesResult,
    ObjectsWithPathResult,
    PullInstancesResult,
)

PROPS = [
    ("Name", "string", False, None),
    ("Count", "uint16", False, None),
    ("Big", "uint64", False, None),
    ("On", "boolean", False, None),
    ("Ips", "string", True, None),
    ("When", "datetime", False, None),
    ("Job", "reference", False, "GM_ConcreteJob"),
]
TEMPLATE = InstanceTemplate("GM_Test", PROPS, [("Name", "string")])

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
rows = st.fixed_dictionaries(
    {
        "name": texts.filter(bool),
        "count": st.none() | st.integers(0, 65535),
        "big": st.none() | st.integers(0, 2**64 - 1),
        "on": st.none() | st.booleans(),
        "ips": st.none() | st.lists(st.none() | texts, max_size=3),
        "when": st.none()
        | st.datetimes(timezones=st.just(dt.UTC), min_value=dt.datetime(1970, 1, 2)),
        "job": st.none() | st.integers(1, 999),
    }
)


def _pywbem_instance(row: dict[str, object]) -> CIMInstance:
    job = row["job"]
    ref = (
        CIMInstanceName("GM_ConcreteJob", {"InstanceID": f"GM:ConcreteJob:{job}"})
        if job is not None
        else None
    )
    values = {
        "Name": row["name"],
        "Count": None if row["count"] is None else Uint16(row["count"]),
        "Big": None if row["big"] is None else Uint64(row["big"]),
        "On": row["on"],
        "Ips": row["ips"],
        "When": None if row["when"] is None else CIMDateTime(row["when"]),
        "Job": ref,
    }
    props = {
        name: CIMProperty(
            name, values[name], type=cimtype, is_array=is_array, reference_class=refclass
        )
        for name, cimtype, is_array, refclass in PROPS
    }
    return CIMInstance("GM_Test", properties=props)


@settings(max_examples=200, deadline=None)
@given(rows)
def test_template_matches_the_general_encoder(row: dict[str, object]) -> None:
    job = row["job"]
    plain = dict(row)
    plain["job"] = (
        CIMInstanceName("GM_ConcreteJob", {"InstanceID": f"GM:ConcreteJob:{job}"})
        if job is not None
        else None
    )
    exact = {p[0]: plain[p[0].lower()] for p in PROPS}
    rendered = TEMPLATE.instance(exact, "root/cimv2", "host")
    assert rendered.xml == encode_instance(_pywbem_instance(row))
    name = encode_instance_name(CIMInstanceName("GM_Test", {"Name": row["name"]}))
    assert rendered.name.xml == name
    assert rendered.name == TEMPLATE.name(exact, "root/cimv2", "host")
    assert rendered.name == ("GM_Test", name, "root/cimv2", "host")


# A PropertyList that leaves the keys out (they are still read for the path), a numeric key
# and a string key that is not a declared property of the subset.
SUBSET = [p for p in PROPS if p[0] in ("Count", "Ips", "On", "Job")]
KEYS = [("Name", "string"), ("Code", "uint32")]
SUBSET_TEMPLATE = InstanceTemplate("GM_Test", SUBSET, KEYS)


@settings(max_examples=200, deadline=None)
@given(rows, st.integers(0, 2**32 - 1))
def test_a_subset_template_matches_the_general_encoder(row: dict[str, object], code: int) -> None:
    full = _pywbem_instance(row)
    exact = {p[0]: full.properties[p[0]].value for p in PROPS}
    exact["Code"] = code
    rendered = SUBSET_TEMPLATE.instance(exact, "root/cimv2", None)
    subset = CIMInstance("GM_Test", properties={p[0]: full.properties[p[0]] for p in SUBSET})
    assert rendered.xml == encode_instance(subset)
    name = CIMInstanceName("GM_Test", {"Name": row["name"], "Code": Uint32(code)})
    assert rendered.name.xml == encode_instance_name(name)
    assert SUBSET_TEMPLATE.name(exact, "root/cimv2", None).xml == rendered.name.xml


@settings(max_examples=100, deadline=None)
@given(st.lists(st.none() | texts | st.integers(0, 9), max_size=4))
def test_string_arrays_of_any_elements_match_the_general_encoder(items: list[object]) -> None:
    # Elements that are not str (NULL, a number) leave the one-check path for the general one.
    template = InstanceTemplate("GM_Test", [("Ips", "string", True, None)], [])
    expected = CIMProperty(
        "Ips", [None if x is None else str(x) for x in items], type="string", is_array=True
    )
    assert template.instance({"Ips": items}, "root/cimv2", None).xml == encode_instance(
        CIMInstance("GM_Test", properties={"Ips": expected})
    )


def test_a_row_without_its_key_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="GM_Test row has no key Name"):
        TEMPLATE.instance({"Count": 1}, "root/cimv2", None)


def test_names_and_markup_never_enter_the_generated_source() -> None:
    # The unrolled renderers take names and markup as values: a name that would be code
    # (quotes, a newline, a call) is only ever a dictionary key and escaped XML.
    odd = 'x"); import os; ("\n'
    template = InstanceTemplate("GM_Odd", [(odd, "string", False, None)], [(odd, "string")])
    rendered = template.instance({odd: "<v>"}, "root/cimv2", None)
    assert rendered.xml == (
        '<INSTANCE CLASSNAME="GM_Odd"><PROPERTY NAME="x&quot;); import os; (&quot;&#10;" '
        'TYPE="string"><VALUE>&lt;v&gt;</VALUE></PROPERTY></INSTANCE>'
    )
    assert "&lt;v&gt;" in rendered.name.xml


def test_a_class_without_properties_renders_an_empty_instance() -> None:
    template = InstanceTemplate("GM_Empty", [], [])
    assert (
        template.instance({}, "root/cimv2", None).xml
        == '<INSTANCE CLASSNAME="GM_Empty"></INSTANCE>'
    )


hosts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)


@settings(max_examples=100, deadline=None)
@given(rows, hosts, st.sampled_from(["root/cimv2", "interop", "root/a&b"]))
def test_responses_of_rendered_rows_are_those_of_pywbem_instances(
    row: dict[str, object], host: str, namespace: str
) -> None:
    # The same response bytes whether an enumeration or pull hands the encoder a rendered
    # row (the fast paths) or the pywbem instance with its path.
    instance = _pywbem_instance(row)
    exact = {name: prop.value for name, prop in instance.properties.items()}
    instance.path = CIMInstanceName(
        "GM_Test", {"Name": row["name"]}, host=host, namespace=namespace
    )
    rendered = TEMPLATE.instance(exact, namespace, host)
    for result in (
        lambda items: NamedInstancesResult(items),
        lambda items: PullInstancesResult(items, False, "ctx"),
        lambda items: ObjectsWithPathResult(items),
    ):
        assert encode_imethod_response("1", "Op", result([rendered, rendered])) == (
            encode_imethod_response("1", "Op", result([instance, instance]))
        )


ORIGINS = {name: ("GM_Base" if name in ("Name", "Ips") else "GM_Test") for name, *_ in PROPS}
ORIGIN_TEMPLATE = InstanceTemplate("GM_Test", PROPS, [("Name", "string")], ORIGINS)


@settings(max_examples=100, deadline=None)
@given(rows)
def test_class_origins_match_the_general_encoder(row: dict[str, object]) -> None:
    """IncludeClassOrigin=TRUE: each property names the class that declares it."""
    full = _pywbem_instance(row)
    for prop in full.properties.values():
        prop.class_origin = ORIGINS[prop.name]
    exact = {p[0]: full.properties[p[0]].value for p in PROPS}
    rendered = ORIGIN_TEMPLATE.instance(exact, "root/cimv2", None)
    assert rendered.xml == encode_instance(full)
    assert 'CLASSORIGIN="GM_Base"' in rendered.xml
    assert rendered.name == TEMPLATE.name(exact, "root/cimv2", None)


# An association: its keys are references (KEYBINDING with a VALUE.REFERENCE), local paths
# to another namespace or plain instance names, as CIM_ElementConformsToProfile's are.
ASSOC_PROPS = [
    ("Antecedent", "reference", False, "CIM_RegisteredProfile"),
    ("Dependent", "reference", False, "CIM_ManagedElement"),
]
ASSOC_TEMPLATE = InstanceTemplate(
    "CIM_Assoc", ASSOC_PROPS, [("Antecedent", "reference"), ("Dependent", "reference")]
)
paths = st.builds(
    lambda cls, key, ns: CIMInstanceName(cls, {"Key": key}, namespace=ns),
    st.sampled_from(["CIM_RegisteredProfile", "GM_GroupManager"]),
    texts,
    st.none() | st.sampled_from(["root/interop", "root/cimv2"]),
)


@settings(max_examples=100, deadline=None)
@given(paths, paths)
def test_reference_keys_match_the_general_encoder(left: object, right: object) -> None:
    row = {"Antecedent": left, "Dependent": right}
    rendered = ASSOC_TEMPLATE.instance(row, "root/interop", "host")
    props = {
        name: CIMProperty(name, row[name], type="reference", reference_class=refclass)
        for name, _, _, refclass in ASSOC_PROPS
    }
    assert rendered.xml == encode_instance(CIMInstance("CIM_Assoc", properties=props))
    assert rendered.name.xml == encode_instance_name(CIMInstanceName("CIM_Assoc", row))
    assert ASSOC_TEMPLATE.name(row, "root/interop", "host") == rendered.name
