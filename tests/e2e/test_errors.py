"""Requests the control plane must refuse, and how: HTTP status, error code (as botocore reads
it), message and ErrorDetails. A refused change must leave the group and its definitions as
they were."""

from __future__ import annotations

import json
import urllib.parse
import uuid

import pytest
from botocore.exceptions import ClientError

import payloads as P
from ggtest import client_error, error_text, expect_error

TUTORIAL = ["resources", "connectors", "functions", "subscriptions", "cores"]


@pytest.fixture(scope="module")
def baseline(gg):
    """The tutorial group, made with boto3: five definitions and a group version using them."""
    defs = {}
    for seg in TUTORIAL:
        kind = P.KIND[seg]
        defs[seg] = kind.method(gg, "create")(Name=f"baseline-{seg}", InitialVersion=kind.payload)
    arns = {P.KIND[seg].group_version_field: defs[seg]["LatestVersionArn"] for seg in TUTORIAL}
    group = gg.create_group(Name="baseline-group", InitialVersion=arns)
    assert group.get("LatestVersion"), group
    return {"defs": defs, "arns": arns, "group": group}


def _group_state(gg, gid):
    g = gg.get_group(GroupId=gid)
    versions = gg.list_group_versions(GroupId=gid)["Versions"]
    return g.get("LatestVersion"), g.get("LatestVersionArn"), len(versions)


def _check_bad_request(e: ClientError, words: list[str], what: str) -> None:
    status, code, message, details = client_error(e)
    assert (status, code) == (400, "BadRequestException"), (
        f"{what}: expected HTTP 400 BadRequestException, got {status} {code}: {message}")
    text = error_text(e).lower()
    assert any(w.lower() in text for w in words), (
        f"{what}: the error names none of {words}:\n{error_text(e)}")
    for d in details:
        assert d.get("DetailedErrorCode") and d.get("DetailedErrorMessage"), (
            f"{what}: an ErrorDetails entry lacks a code or message: {details}")


def _refused(gg, baseline, segment: str, payload: dict, words: list[str], what: str) -> str:
    """A definition version that breaks a rule is refused with 400 BadRequestException, either
    when it is created or when a group version refers to it; nothing changes either way.
    Returns where it was refused."""
    kind = P.KIND[segment]
    did = baseline["defs"][segment]["Id"]
    gid = baseline["group"]["Id"]
    group_before = _group_state(gg, gid)
    def_before = kind.method(gg, "get")(**{kind.id_param: did})
    n_versions = len(kind.method(gg, "list", "_versions")(**{kind.id_param: did})["Versions"])

    try:
        version = kind.method(gg, "create", "_version")(**{kind.id_param: did}, **payload)
    except ClientError as e:
        stage = "definition"
        _check_bad_request(e, words, f"{what} (create_{kind.snake}_definition_version)")
        def_after = kind.method(gg, "get")(**{kind.id_param: did})
        assert def_after["LatestVersion"] == def_before["LatestVersion"], (
            f"{what}: a refused version moved the definition's LatestVersion: {def_after}")
        versions = kind.method(gg, "list", "_versions")(**{kind.id_param: did})["Versions"]
        assert len(versions) == n_versions, f"{what}: a refused version was stored: {versions}"
        # The same payload as a new definition's InitialVersion: refused, nothing created.
        names_before = [d.get("Name") for d in kind.method(gg, "list")()["Definitions"]]
        try:
            kind.method(gg, "create")(Name=f"refused-{what}", InitialVersion=payload)
        except ClientError as e2:
            _check_bad_request(e2, words, f"{what} (create_{kind.snake}_definition)")
        else:
            raise AssertionError(
                f"{what}: refused by create_{kind.snake}_definition_version but accepted "
                f"as create_{kind.snake}_definition's InitialVersion")
        names_after = [d.get("Name") for d in kind.method(gg, "list")()["Definitions"]]
        assert names_after == names_before, (
            f"{what}: a refused create left a definition behind: {names_after}")
    else:
        # Accepted as a definition on its own; a group version using it must be refused.
        stage = "group version"
        arns = dict(baseline["arns"])
        arns[kind.group_version_field] = version["Arn"]
        e = expect_error(400, "BadRequestException", gg.create_group_version, GroupId=gid, **arns)
        _check_bad_request(e, words, f"{what} (create_group_version)")

    assert _group_state(gg, gid) == group_before, (
        f"{what}: the group changed after a refused request: {_group_state(gg, gid)} "
        f"!= {group_before}")
    return stage


def test_two_instances_of_one_connector(gg, baseline):
    payload = {"Connectors": [P.twilio_connector("TwilioOne"), P.twilio_connector("TwilioTwo")]}
    _refused(gg, baseline, "connectors", payload, ["TwilioNotifications", "Connectors[1]"],
             "two TwilioNotifications instances")


def test_two_versions_of_one_connector(gg, baseline):
    payload = {"Connectors": [P.twilio_connector("TwilioV4"),
                              P.twilio_connector("TwilioV5", arn=P.TWILIO_V5)]}
    _refused(gg, baseline, "connectors", payload, ["TwilioNotifications", "Connectors[1]"],
             "TwilioNotifications v4 and v5")


def test_connector_missing_required_parameter(gg, baseline):
    payload = {"Connectors": [P.twilio_connector(TWILIO_ACCOUNT_SID=None)]}
    _refused(gg, baseline, "connectors", payload, ["TWILIO_ACCOUNT_SID"],
             "no TWILIO_ACCOUNT_SID")


def test_connector_parameter_not_matching_its_pattern(gg, baseline):
    payload = {"Connectors": [P.twilio_connector(DefaultFromPhoneNumber="123")]}
    _refused(gg, baseline, "connectors", payload, ["DefaultFromPhoneNumber"],
             "DefaultFromPhoneNumber 123")


def test_subscription_with_malformed_topic(gg, baseline):
    payload = {"Subscriptions": [
        P.subscription("BadTopic", P.FUNCTION_ARN, "twilio/#/txt", P.TWILIO_V4)]}
    _refused(gg, baseline, "subscriptions", payload, ["twilio/#/txt"], "topic twilio/#/txt")


GROUP_LEVEL = {
    "connector resource id not in the group": (
        "connectors",
        {"Connectors": [P.twilio_connector(**{"TwilioAuthTokenSecretArn-ResourceId": "Nope"})]},
        ["Nope"]),
    "subscription to a function not in the group": (
        "subscriptions",
        {"Subscriptions": [P.subscription(
            "ToOther", "cloud", "a/b", f"arn:aws:lambda:{P.REGION}:{P.ACCOUNT}:function:Other:1")]},
        ["function:Other:1"]),
    "subscription to a connector version not in the group": (
        "subscriptions",
        {"Subscriptions": [P.subscription("ToV5", P.FUNCTION_ARN, "twilio/txt", P.TWILIO_V5)]},
        ["versions/5"]),
}


@pytest.mark.parametrize("case", list(GROUP_LEVEL))
def test_group_version_with_dangling_references(gg, baseline, case):
    """Rules that need the whole group: refused by create_group_version, group unchanged."""
    segment, payload, words = GROUP_LEVEL[case]
    stage = _refused(gg, baseline, segment, payload, words, case)
    assert stage == "group version", (
        f"{case}: valid on its own, so it should only be refused with the group ({stage})")


def test_group_version_with_missing_definition_version(gg, baseline):
    gid = baseline["group"]["Id"]
    before = _group_state(gg, gid)
    core_def_arn = baseline["defs"]["cores"]["Arn"]
    cases = {
        "an unknown version of a real definition": f"{core_def_arn}/versions/{uuid.uuid4()}",
        "a version of an unknown definition": (
            core_def_arn.rsplit("/", 1)[0] + f"/{uuid.uuid4()}/versions/{uuid.uuid4()}"),
        "a function definition version given as the core's":
            baseline["defs"]["functions"]["LatestVersionArn"],
        "not an ARN": "core-version-please",
    }
    for what, arn in cases.items():
        arns = dict(baseline["arns"], CoreDefinitionVersionArn=arn)
        e = expect_error(400, "BadRequestException", gg.create_group_version, GroupId=gid, **arns)
        _check_bad_request(e, ["does not exist", "invalid"], what)
        assert _group_state(gg, gid) == before, f"{what}: the group changed"
    # Also through CreateGroup's InitialVersion: refused, and no group is left behind.
    arns = dict(baseline["arns"], CoreDefinitionVersionArn=cases["an unknown version of a real definition"])
    expect_error(400, "BadRequestException", gg.create_group, Name="refused-group",
                 InitialVersion=arns)
    assert "refused-group" not in [g["Name"] for g in gg.list_groups()["Groups"]]


def test_deployment_without_core(gg):
    logger = gg.create_logger_definition(InitialVersion=P.LOGGERS)
    group = gg.create_group(Name="coreless", InitialVersion={
        "LoggerDefinitionVersionArn": logger["LatestVersionArn"]})
    e = expect_error(400, "MissingCoreException", gg.create_deployment, GroupId=group["Id"],
                     DeploymentType="NewDeployment", GroupVersionId=group["LatestVersion"])
    assert "GG-303" in error_text(e) or "GG-303" in json.dumps(e.response), e.response
    assert gg.list_deployments(GroupId=group["Id"])["Deployments"] == []

    empty = gg.create_group_version(GroupId=group["Id"])
    expect_error(400, "MissingCoreException", gg.create_deployment, GroupId=group["Id"],
                 DeploymentType="NewDeployment", GroupVersionId=empty["Version"])


def test_deployment_errors(gg, baseline):
    gid = baseline["group"]["Id"]
    vid = baseline["group"]["LatestVersion"]
    expect_error(404, "ResourceNotFoundException", gg.create_deployment,
                 GroupId=str(uuid.uuid4()), DeploymentType="NewDeployment", GroupVersionId=vid)
    expect_error(404, "ResourceNotFoundException", gg.create_deployment, GroupId=gid,
                 DeploymentType="NewDeployment", GroupVersionId=str(uuid.uuid4()))
    expect_error(400, "InvalidInputException", gg.create_deployment, GroupId=gid,
                 DeploymentType="SidewaysDeployment", GroupVersionId=vid)
    expect_error(400, "InvalidInputException", gg.create_deployment, GroupId=gid,
                 DeploymentType="Redeployment")
    expect_error(400, "InvalidInputException", gg.get_deployment_status, GroupId=gid,
                 DeploymentId=str(uuid.uuid4()))


def test_unknown_ids(gg, baseline):
    nobody = str(uuid.uuid4())
    gid = baseline["group"]["Id"]
    expect_error(404, "IdNotFoundException", gg.get_group, GroupId=nobody)
    expect_error(404, "IdNotFoundException", gg.update_group, GroupId=nobody, Name="x")
    expect_error(404, "IdNotFoundException", gg.delete_group, GroupId=nobody)
    expect_error(404, "VersionNotFoundException", gg.get_group_version, GroupId=gid,
                 GroupVersionId=nobody)
    for kind in P.KINDS:
        expect_error(404, "IdNotFoundException", kind.method(gg, "get"),
                     **{kind.id_param: nobody})
        expect_error(404, "IdNotFoundException", kind.method(gg, "update"),
                     **{kind.id_param: nobody}, Name="x")
        expect_error(404, "IdNotFoundException", kind.method(gg, "list", "_versions"),
                     **{kind.id_param: nobody})
    for seg in TUTORIAL:
        kind = P.KIND[seg]
        did = baseline["defs"][seg]["Id"]
        expect_error(404, "VersionNotFoundException", kind.method(gg, "get", "_version"),
                     **{kind.id_param: did, kind.version_param: nobody})


def test_update_without_name(gg, baseline):
    e = expect_error(400, "InvalidContainerDefinitionException", gg.update_group,
                     GroupId=baseline["group"]["Id"])
    assert "Input does not contain any attributes to be updated" in error_text(e)
    assert gg.get_group(GroupId=baseline["group"]["Id"])["Name"] == "baseline-group"


def test_name_of_129_characters(gg, baseline):
    long_name = "n" * 129
    expect_error(400, "BadRequestException", gg.create_group, Name=long_name)
    expect_error(400, "BadRequestException", gg.create_connector_definition, Name=long_name)
    expect_error(400, "BadRequestException", gg.update_group, GroupId=baseline["group"]["Id"],
                 Name=long_name)
    names = [g["Name"] for g in gg.list_groups()["Groups"]]
    assert long_name not in names
    # 128 is fine.
    ok = gg.create_group(Name="n" * 128)
    assert gg.get_group(GroupId=ok["Id"])["Name"] == "n" * 128
    gg.delete_group(GroupId=ok["Id"])


def test_bad_page_parameters(gg):
    expect_error(400, "BadRequestException", gg.list_groups, MaxResults="0")
    expect_error(400, "BadRequestException", gg.list_groups, MaxResults="lots")
    expect_error(400, "BadRequestException", gg.list_core_definitions, NextToken="not-a-token")


# ---- raw signed requests: what the clients refuse to send ---------------------------------------


def _raw_bad_request(resp, what: str) -> dict:
    assert resp.status == 400 and resp.error_type == "BadRequestException", (
        f"{what}: expected HTTP 400 BadRequestException, got {resp}")
    body = resp.json()
    assert body.get("Message"), f"{what}: no Message in the error body: {body}"
    return body


def test_malformed_json_body(server, gg):
    for path, body in [
        ("/greengrass/groups", '{"Name": "half-a-group",'),
        ("/greengrass/groups", "not json at all"),
        ("/greengrass/definition/cores", '{"InitialVersion": {"Cores": [}'),
        ("/greengrass/definition/cores", "[1, 2, 3]"),
        ("/greengrass/groups", '{"Name": 5}'),
        ("/greengrass/groups", "{}"),  # Name is required
        ("/greengrass/groups", '{"Name": "bad-tags", "tags": {"aws:reserved": "x"}}'),
        ("/greengrass/definition/functions",
         '{"InitialVersion": {"Functions": [{"Id": "f", "FunctionConfiguration": {"Timeout": "5"}}]}}'),
    ]:
        _raw_bad_request(server.raw("POST", path, body), f"POST {path} {body!r}")
    assert "half-a-group" not in [g["Name"] for g in gg.list_groups()["Groups"]]


def test_unknown_fields(server, gg):
    group = {"Name": "group-with-extra", "Colour": "blue"}
    body = _raw_bad_request(server.raw("POST", "/greengrass/groups", json.dumps(group)),
                            "CreateGroup with an unknown field")
    assert "Colour" in json.dumps(body), f"the error does not name the unknown field: {body}"
    core = dict(P.CORES["Cores"][0], Nickname="core-one")
    _raw_bad_request(
        server.raw("POST", "/greengrass/definition/cores",
                   json.dumps({"Name": "core-with-extra", "InitialVersion": {"Cores": [core]}})),
        "CreateCoreDefinition with an unknown field in a core")
    _raw_bad_request(
        server.raw("POST", "/greengrass/definition/loggers",
                   json.dumps({"Name": "loggers-with-extra",
                               "InitialVersion": dict(P.LOGGERS, Verbose=True)})),
        "CreateLoggerDefinition with an unknown field in the version")
    names = [g["Name"] for g in gg.list_groups()["Groups"]]
    assert "group-with-extra" not in names
    names = [d.get("Name") for d in gg.list_core_definitions()["Definitions"]]
    assert "core-with-extra" not in names


MIB = 1024 * 1024


def test_body_over_16_mib(server, gg):
    name = "big-group"
    head, tail = b'{"Name": "' + name.encode() + b'", "tags": {"pad": "', b'"}}'
    body = head + b"x" * (16 * MIB + 1 - len(head) - len(tail)) + tail
    assert len(body) == 16 * MIB + 1
    resp = server.raw("POST", "/greengrass/groups", body)
    body_json = _raw_bad_request(resp, "a 16 MiB + 1 byte body")
    assert "larger" in body_json["Message"] or "16777216" in body_json["Message"], body_json
    assert name not in [g["Name"] for g in gg.list_groups()["Groups"]]
    # The server is still fine.
    gg.list_groups()


@pytest.mark.parametrize("size", [2 * MIB + 1, 16 * MIB], ids=["2MiB+1", "exactly-16MiB"])
def test_large_body_within_the_limit_is_read(server, gg, size):
    """A body up to the 16 MiB limit is read whole (here: valid JSON padded with spaces); in
    particular no other, smaller limit (such as a framework's 2 MiB default) answers first
    with something botocore cannot parse."""
    name = f"body-of-{size}-bytes"
    doc = json.dumps({"Name": name}).encode()
    body = doc + b" " * (size - len(doc))
    resp = server.raw("POST", "/greengrass/groups", body)
    assert resp.status == 200, f"a body of {size} bytes (limit {16 * MIB}) was refused: {resp}"
    assert resp.json().get("Name") == name, resp


def test_success_status_codes(server):
    """200 for creates (not moto's 201), 204 for TagResource/UntagResource."""
    created = server.raw("POST", "/greengrass/groups", '{"Name": "status-codes"}')
    assert created.status == 200, created
    arn = urllib.parse.quote(created.json()["Arn"], safe="")
    tagged = server.raw("POST", f"/tags/{arn}", '{"tags": {"a": "b"}}')
    assert (tagged.status, tagged.body) == (204, b""), tagged
    listed = server.raw("GET", f"/tags/{arn}")
    assert (listed.status, listed.json()) == (200, {"tags": {"a": "b"}}), listed
    untagged = server.raw("DELETE", f"/tags/{arn}?tagKeys=a")
    assert (untagged.status, untagged.body) == (204, b""), untagged
    core = server.raw("POST", "/greengrass/definition/cores",
                      json.dumps({"InitialVersion": P.CORES}))
    assert core.status == 200, core
    assert core.headers.get("content-type", "").startswith("application/json"), core.headers


def test_unknown_route(server):
    resp = server.raw("GET", "/greengrass/nothing-here")
    assert resp.status == 404, resp
    assert resp.error_type, f"a 404 without x-amzn-ErrorType: {resp}"


def test_invalid_settings(gg, baseline):
    gid = baseline["group"]["Id"]
    expect_error(400, "BadRequestException", gg.associate_role_to_group, GroupId=gid,
                 RoleArn="not-a-role-arn")
    expect_error(400, "BadRequestException", gg.update_group_certificate_configuration,
                 GroupId=gid, CertificateExpiryInMilliseconds="a week")
    expect_error(400, "BadRequestException", gg.update_group_certificate_configuration,
                 GroupId=gid, CertificateExpiryInMilliseconds=str(31 * 24 * 3600 * 1000))
    for info in ([{"Id": "x", "HostAddress": "", "PortNumber": 8883}],
                 [{"Id": "x", "HostAddress": "10.1.2.3", "PortNumber": 70000}],
                 [{"Id": "x", "HostAddress": "10.1.2.3", "PortNumber": 0}]):
        expect_error(400, "BadRequestException", gg.update_connectivity_info,
                     ThingName="MyCore", ConnectivityInfo=info)
    expect_error(400, "BadRequestException", gg.update_thing_runtime_configuration,
                 ThingName="MyCore", TelemetryConfiguration={"Telemetry": "Sometimes"})
    # The certificate authority of one group is not reachable through another.
    other = gg.create_group(Name="other-ca-group")["Id"]
    ca_arn = gg.create_group_certificate_authority(GroupId=other)["GroupCertificateAuthorityArn"]
    expect_error(404, ("IdNotFoundException", "ResourceNotFoundException"),
                 gg.get_group_certificate_authority, GroupId=gid,
                 CertificateAuthorityId=ca_arn.rsplit("/", 1)[1])
