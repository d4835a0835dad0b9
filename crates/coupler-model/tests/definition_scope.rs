//! One definition version judged on its own, as `Create…DefinitionVersion` does.

use coupler_model::arn::DefinitionKind;
use coupler_model::validate::validate_definition;
use serde_json::json;

const TWILIO: &str = "arn:aws:greengrass:us-east-1::/connectors/TwilioNotifications/versions/4";
const SECRET: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-TwilioAuthToken-ntSlp6";

fn twilio(id: &str, arn: &str) -> serde_json::Value {
    json!({
        "Id": id,
        "ConnectorArn": arn,
        "Parameters": {
            "TWILIO_ACCOUNT_SID": "AC123",
            "TwilioAuthTokenSecretArn": SECRET,
            "TwilioAuthTokenSecretArn-ResourceId": "NotInThisDefinition",
            "DefaultFromPhoneNumber": "+19999999999"
        }
    })
}

fn paths(kind: DefinitionKind, v: serde_json::Value) -> Vec<String> {
    validate_definition(kind, &v)
        .into_iter()
        .map(|p| p.path)
        .collect()
}

#[test]
fn references_to_other_definitions_wait_for_the_group() {
    assert!(
        paths(
            DefinitionKind::Connectors,
            json!({"Connectors": [twilio("a", TWILIO)]})
        )
        .is_empty()
    );
    assert!(paths(DefinitionKind::Cores, json!({"Cores": []})).is_empty());
    let subs = json!({"Subscriptions": [
        {"Id": "1", "Source": "arn:aws:lambda:us-east-1:123456789012:function:F:1", "Subject": "twilio/txt", "Target": TWILIO},
        {"Id": "2", "Source": TWILIO, "Subject": "twilio/message/status", "Target": "cloud"},
        {"Id": "3", "Source": "cloud", "Subject": "a/b", "Target": "arn:aws:iot:us-east-1:123456789012:thing/d"}
    ]});
    assert!(paths(DefinitionKind::Subscriptions, subs).is_empty());
}

#[test]
fn rules_within_the_definition_apply() {
    let two =
        json!({"Connectors": [twilio("a", TWILIO), twilio("b", &TWILIO.replace("/4", "/5"))]});
    assert_eq!(
        paths(DefinitionKind::Connectors, two),
        ["Connectors[1].ConnectorArn"]
    );

    let mut missing = twilio("a", TWILIO);
    missing["Parameters"]
        .as_object_mut()
        .unwrap()
        .remove("TWILIO_ACCOUNT_SID");
    assert_eq!(
        paths(DefinitionKind::Connectors, json!({"Connectors": [missing]})),
        ["Connectors[0].Parameters.TWILIO_ACCOUNT_SID"]
    );

    let subs = json!({"Subscriptions": [
        {"Id": "1", "Source": "cloud", "Subject": "twilio/#/txt", "Target": TWILIO},
        {"Id": "2", "Source": "cloud", "Subject": "sns/message", "Target": TWILIO},
        {"Id": "3", "Source": "cloud", "Subject": "a", "Target": "arn:aws:greengrass:us-east-1::/connectors/TwilioNotifications/versions/9"},
        {"Id": "4", "Source": "nobody", "Subject": "a", "Target": "cloud"}
    ]});
    assert_eq!(
        paths(DefinitionKind::Subscriptions, subs),
        [
            "Subscriptions[0].Subject",
            "Subscriptions[1].Subject",
            "Subscriptions[2].Target",
            "Subscriptions[3].Source"
        ]
    );
}
