//! The SNS connector (versions 1–4): publishes each message that arrives on `sns/message` to
//! an SNS topic (the default one, or the one the message names), and reports the outcome on
//! `sns/message/status`.
//!
//! A message is parsed and checked on arrival; a bad one is answered at once and never sent.
//! Good ones wait in a bounded queue and are published one at a time, each call retried with
//! backoff a bounded number of times; what still fails is answered with the AWS error and
//! counted. See `docs/connectors/sns.md`.

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tracing::Level;

use crate::aws::{self, Body, CallError, Client, Retry};
use crate::{BoxFuture, Connector, ConnectorError, Context, Kind};

pub static KIND: Kind = Kind {
    name: "SNS",
    versions: 1..=4,
    build,
};

pub const INPUT_TOPIC: &str = "sns/message";
pub const STATUS_TOPIC: &str = "sns/message/status";

/// SNS's limit on a message (and its subject), in bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Messages that may wait for SNS; more are refused with a fail status.
pub const QUEUE: usize = 256;
const MAX_SUBJECT_CHARS: usize = 100;

#[derive(Debug)]
struct Sns {
    default_topic: String,
    retry: Retry,
}

fn build(ctx: &Context) -> Result<Box<dyn Connector>, String> {
    let default_topic = ctx
        .param("DefaultSNSArn")
        .ok_or("DefaultSNSArn is required")?
        .to_owned();
    aws::check_param(KIND.name, ctx.version(), "DefaultSNSArn", &default_topic)
        .map_err(|e| format!("DefaultSNSArn: {e}"))?;
    Ok(Box::new(Sns {
        default_topic,
        retry: Retry::default(),
    }))
}

/// A message that passed its checks.
#[derive(Debug, Clone, PartialEq)]
struct Publish {
    id: Option<String>,
    topic_arn: String,
    message: String,
    subject: Option<String>,
    json_structure: bool,
}

impl Publish {
    fn body(&self) -> Body {
        let mut p = vec![
            ("Action".to_owned(), "Publish".to_owned()),
            ("Version".to_owned(), "2010-03-31".to_owned()),
            ("TopicArn".to_owned(), self.topic_arn.clone()),
            ("Message".to_owned(), self.message.clone()),
        ];
        if let Some(s) = &self.subject {
            p.push(("Subject".into(), s.clone()));
        }
        if self.json_structure {
            p.push(("MessageStructure".into(), "json".into()));
        }
        Body::Query(p)
    }
}

/// A message answered without being sent.
#[derive(Debug, PartialEq)]
struct Refusal {
    id: Option<String>,
    message: String,
}

impl Connector for Sns {
    fn run(self: Box<Self>, ctx: Context) -> BoxFuture<Result<(), ConnectorError>> {
        Box::pin(async move {
            let region = aws::arn_region_and_resource(&self.default_topic)
                .map_or(ctx.region(), |(r, _)| r)
                .to_owned();
            let client = Client::new(aws::SNS, &region)
                .map_err(ConnectorError::Failed)?
                .with_retry(self.retry);
            ctx.log(
                Level::INFO,
                &format!(
                    "publishing to {} (default) through {}; {} messages may wait",
                    self.default_topic,
                    client.endpoint(),
                    QUEUE
                ),
            );
            let (tx, mut rx) = mpsc::channel::<Publish>(QUEUE);
            let intake = async {
                while let Some(m) = ctx.recv().await {
                    match parse(&m.payload, &self.default_topic, ctx.version()) {
                        Ok(p) => {
                            if let Err(mpsc::error::TrySendError::Full(p)) = tx.try_send(p) {
                                let why = format!(
                                    "{QUEUE} messages are already waiting for SNS; this one was not sent"
                                );
                                ctx.rejected(&why);
                                publish_status(
                                    &ctx,
                                    fail(p.id.as_deref(), "QueueFullException", &why),
                                )
                                .await;
                            }
                        }
                        Err(r) => {
                            ctx.rejected(&r.message);
                            publish_status(
                                &ctx,
                                fail(r.id.as_deref(), "InvalidInputException", &r.message),
                            )
                            .await;
                        }
                    }
                }
            };
            let sender = async {
                let mut dropped = 0u64;
                while let Some(p) = rx.recv().await {
                    let status = match send(&client, &ctx, &p).await {
                        Ok(id) => success(p.id.as_deref(), &id),
                        Err(e) => {
                            dropped += 1;
                            let why = format!(
                                "not published to {} ({}); {dropped} dropped since start",
                                p.topic_arn, e
                            );
                            ctx.rejected(&why);
                            fail(p.id.as_deref(), &e.code, &e.message)
                        }
                    };
                    publish_status(&ctx, status).await;
                }
            };
            tokio::select! {
                () = intake => {}
                () = sender => {}
            }
            Ok(())
        })
    }
}

async fn send(client: &Client, ctx: &Context, p: &Publish) -> Result<String, CallError> {
    // A topic in another region is published there: the ARN says where it lives.
    let regional;
    let client = match aws::arn_region_and_resource(&p.topic_arn) {
        Some((r, _)) if r != client.region() => {
            regional = Client::new(aws::SNS, r)
                .map_err(|m| CallError {
                    code: "InternalError".into(),
                    message: m,
                    retryable: false,
                })?
                .with_retry(Retry::default());
            &regional
        }
        _ => client,
    };
    let text = client.call(&p.body(), ctx.cancel()).await?;
    aws::xml_text(&text, "MessageId").ok_or_else(|| CallError {
        code: "InternalError".into(),
        message: format!("SNS answered without a MessageId: {}", clip(&text)),
        retryable: false,
    })
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(200) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

async fn publish_status(ctx: &Context, body: Value) {
    if let Err(e) = ctx.publish(STATUS_TOPIC, body.to_string()).await {
        ctx.log(
            Level::ERROR,
            &format!("cannot publish on {STATUS_TOPIC}: {e}"),
        );
    }
}

fn envelope(id: Option<&str>, response: Value) -> Value {
    let mut top = Map::new();
    top.insert("response".into(), response);
    if let Some(id) = id {
        top.insert("id".into(), id.into());
    }
    Value::Object(top)
}

fn success(id: Option<&str>, message_id: &str) -> Value {
    envelope(
        id,
        json!({ "sns_message_id": message_id, "status": "success" }),
    )
}

fn fail(id: Option<&str>, error: &str, message: &str) -> Value {
    envelope(
        id,
        json!({ "error": error, "error_message": message, "status": "fail" }),
    )
}

/// Parse and check a message; a refusal says which field is wrong.
fn parse(payload: &[u8], default_topic: &str, version: u32) -> Result<Publish, Refusal> {
    let refuse = |id: Option<String>, message: String| Refusal { id, message };
    let top = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(top)) => top,
        Ok(_) => return Err(refuse(None, "The payload must be a JSON object".into())),
        Err(e) => return Err(refuse(None, format!("The payload is not JSON: {e}"))),
    };
    let id = match top.get("id") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(refuse(None, "id must be a string".into())),
    };
    let refuse = |message: &str| Refusal {
        id: id.clone(),
        message: message.to_owned(),
    };
    let req = match top.get("request") {
        Some(Value::Object(r)) => r,
        Some(_) => return Err(refuse("request must be an object")),
        None => return Err(refuse("request is required")),
    };
    let message = match req.get("message") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(refuse("request.message must be a string")),
        None => return Err(refuse("request.message is required")),
    };
    let subject = match req.get("subject") {
        None => None,
        Some(Value::String(s)) => {
            check_subject(s).map_err(|m| refuse(&m))?;
            Some(s.clone())
        }
        Some(_) => return Err(refuse("request.subject must be a string")),
    };
    let topic_arn = match req.get("sns_topic_arn") {
        None => default_topic.to_owned(),
        Some(Value::String(s)) => {
            if aws::check_param(KIND.name, version, "DefaultSNSArn", s).is_err() {
                return Err(refuse("SNS Topic Arn is invalid"));
            }
            s.clone()
        }
        Some(_) => return Err(refuse("request.sns_topic_arn must be a string")),
    };
    let json_structure = match req.get("message_structure") {
        None => false,
        Some(Value::String(s)) if s == "json" => true,
        Some(_) => return Err(refuse("request.message_structure may only be \"json\"")),
    };
    if json_structure {
        match serde_json::from_str::<Value>(&message) {
            Ok(Value::Object(m)) if m.get("default").is_some_and(Value::is_string) => {}
            _ => {
                return Err(refuse(
                    "with message_structure json, request.message must be a JSON object (as a string) with a string \"default\" key",
                ));
            }
        }
    }
    let size = message.len() + subject.as_ref().map_or(0, String::len);
    if size > MAX_MESSAGE_BYTES {
        return Err(refuse(&format!(
            "the message is {size} bytes; SNS takes at most {MAX_MESSAGE_BYTES}"
        )));
    }
    Ok(Publish {
        id,
        topic_arn,
        message,
        subject,
        json_structure,
    })
}

/// SNS's rules for a subject: ASCII, at most 100 characters, starting with a letter, number
/// or punctuation mark, no line breaks or control characters.
fn check_subject(s: &str) -> Result<(), String> {
    let Some(first) = s.chars().next() else {
        return Err("request.subject must not be empty".into());
    };
    if !s.is_ascii() {
        return Err("request.subject must be ASCII".into());
    }
    if s.len() > MAX_SUBJECT_CHARS {
        return Err(format!(
            "request.subject is {} characters; at most {MAX_SUBJECT_CHARS}",
            s.len()
        ));
    }
    if !(first.is_ascii_alphanumeric() || first.is_ascii_punctuation()) {
        return Err("request.subject must start with a letter, number or punctuation mark".into());
    }
    if s.chars().any(|c| c.is_ascii_control()) {
        return Err("request.subject must not contain line breaks or control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = "arn:aws:sns:us-east-1:123456789012:alerts";

    fn parsed(v: Value) -> Result<Publish, Refusal> {
        parse(v.to_string().as_bytes(), DEFAULT, 4)
    }

    fn refused(v: Value) -> (Option<String>, String) {
        let r = parsed(v).expect_err("refused");
        (r.id, r.message)
    }

    #[test]
    fn good_messages_parse() {
        let p = parsed(json!({"request": {"message": "hi", "subject": "Hello!"}, "id": "r1"}))
            .expect("parsed");
        assert_eq!(
            p,
            Publish {
                id: Some("r1".into()),
                topic_arn: DEFAULT.into(),
                message: "hi".into(),
                subject: Some("Hello!".into()),
                json_structure: false,
            }
        );
        let other = "arn:aws:sns:eu-west-1:123456789012:topic2-name";
        let p = parsed(json!({"request": {"message": "{\"default\": \"x\"}",
            "message_structure": "json", "sns_topic_arn": other}, "id": ""}))
        .expect("parsed");
        assert_eq!(
            (p.topic_arn.as_str(), p.json_structure, p.id.as_deref()),
            (other, true, Some(""))
        );
        let Body::Query(q) = p.body() else {
            panic!("query")
        };
        assert!(q.contains(&("MessageStructure".into(), "json".into())));
        assert!(q.contains(&("Action".into(), "Publish".into())));
        assert!(
            parsed(json!({"request": {"message": ""}}))
                .expect("empty is .*")
                .id
                .is_none()
        );
    }

    #[test]
    fn bad_messages_are_refused_with_the_field_named() {
        assert_eq!(refused(json!([1])).1, "The payload must be a JSON object");
        assert!(
            parse(b"nope", DEFAULT, 4)
                .unwrap_err()
                .message
                .contains("not JSON")
        );
        assert_eq!(
            refused(json!({"id": 3, "request": {"message": "x"}})),
            (None, "id must be a string".into())
        );
        assert_eq!(
            refused(json!({"id": "a"})),
            (Some("a".into()), "request is required".into())
        );
        assert!(
            refused(json!({"request": {"message": 5}}))
                .1
                .contains("request.message")
        );
        assert!(
            refused(json!({"request": {}}))
                .1
                .contains("request.message")
        );
        for subject in ["", " lead", "é", "two\nlines", &"s".repeat(101)] {
            let (_, m) = refused(json!({"request": {"message": "x", "subject": subject}}));
            assert!(m.contains("subject"), "{subject:?}: {m}");
        }
        assert!(parsed(json!({"request": {"message": "x", "subject": &"s".repeat(100)}})).is_ok());
        assert_eq!(
            refused(
                json!({"id": "b", "request": {"message": "x", "sns_topic_arn": "arn:aws:sqs:us-east-1:123456789012:q"}})
            ),
            (Some("b".into()), "SNS Topic Arn is invalid".into())
        );
        assert!(
            refused(json!({"request": {"message": "x", "message_structure": "raw"}}))
                .1
                .contains("json")
        );
        assert!(
            refused(json!({"request": {"message": "{\"a\":1}", "message_structure": "json"}}))
                .1
                .contains("default")
        );
        assert!(
            refused(json!({"request": {"message": "x".repeat(MAX_MESSAGE_BYTES + 1)}}))
                .1
                .contains("262144")
        );
    }

    #[test]
    fn status_shapes_follow_the_spec() {
        assert_eq!(
            success(Some("request123"), "f80a"),
            json!({"response": {"sns_message_id": "f80a", "status": "success"}, "id": "request123"})
        );
        assert_eq!(
            fail(None, "InvalidInputException", "SNS Topic Arn is invalid"),
            json!({"response": {"error": "InvalidInputException",
                "error_message": "SNS Topic Arn is invalid", "status": "fail"}})
        );
    }
}
