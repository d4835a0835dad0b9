//! The Twilio Notifications connector (versions 1–5): sends a text message for each request on
//! `twilio/txt` and places a voice call for each request on `twilio/call`, through Twilio's
//! REST API (Messages and Calls resources, HTTP Basic auth with the account SID and the auth
//! token from a group secret resource), and reports each outcome on `twilio/message/status`.
//! See `docs/connectors/twilio-notifications.md`.

use std::fmt;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{StatusCode, Url};
use serde_json::{Map, Value, json};
use tracing::Level;

use crate::{BoxFuture, Connector, ConnectorError, Context, Kind, http};

pub static KIND: Kind = Kind {
    name: "TwilioNotifications",
    versions: 1..=5,
    build,
};

pub const SMS_TOPIC: &str = "twilio/txt";
pub const CALL_TOPIC: &str = "twilio/call";
pub const STATUS_TOPIC: &str = "twilio/message/status";
/// Overrides Twilio's base URL; for tests against a local Twilio-compatible server.
pub const BASE_URL_ENV: &str = "COUPLER_TWILIO_BASE_URL";
const TWILIO_BASE_URL: &str = "https://api.twilio.com";
/// A request's `retries` above this is lowered to it, so one request cannot hold the
/// connector for long.
pub const MAX_RETRIES: u32 = 10;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

const INVALID: &str = "InvalidParameter";
const TWILIO_ERROR: &str = "TwilioRestException";
const CONNECTION_ERROR: &str = "ConnectionError";

/// The auth token. It never prints.
#[derive(Clone)]
struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// An E.164 number: `+`, then 1–15 digits, the first not 0.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Phone(String);

impl Phone {
    fn parse(s: &str) -> Option<Self> {
        let digits = s.strip_prefix('+')?;
        let ok = (1..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        ok.then(|| Self(s.to_owned()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Sms,
    Call,
}

impl Channel {
    fn of(topic: &str) -> Option<Self> {
        match topic {
            SMS_TOPIC => Some(Self::Sms),
            CALL_TOPIC => Some(Self::Call),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    Text(String),
    /// The URL of TwiML that Twilio fetches when the call connects.
    Voice(String),
}

/// A valid request, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Request {
    id: String,
    name: String,
    to: Phone,
    from: Phone,
    content: Content,
    retries: u32,
}

/// Why a payload was refused, with the `id` to echo when it had a usable one.
#[derive(Debug, PartialEq, Eq)]
struct Refusal {
    id: Option<String>,
    message: String,
}

#[derive(Debug)]
struct Twilio {
    sid: String,
    token: Token,
    default_from: Option<Phone>,
    messages_url: Url,
    calls_url: Url,
    client: http::Http,
    /// Set when the base URL comes from the environment, to say so in the log.
    overridden: bool,
}

fn build(ctx: &Context) -> Result<Box<dyn Connector>, String> {
    let sid = ctx
        .param("TWILIO_ACCOUNT_SID")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or("TWILIO_ACCOUNT_SID is required")?
        .to_owned();
    let res = "TwilioAuthTokenSecretArn-ResourceId";
    let token = ctx
        .secret(res)
        .ok_or_else(|| format!("{res} must name the secret resource of the Twilio auth token"))?
        .text()
        .ok_or("the Twilio auth token secret must be text (SecretString), not binary")?
        .trim();
    if token.is_empty() {
        return Err("the Twilio auth token secret is empty".into());
    }
    let default_from = match ctx.param("DefaultFromPhoneNumber").map(str::trim) {
        None | Some("") => None,
        Some(v) => Some(Phone::parse(v).ok_or_else(|| {
            format!("DefaultFromPhoneNumber {v:?} must be + and up to 15 digits (E.164)")
        })?),
    };
    let env = std::env::var(BASE_URL_ENV).ok().filter(|v| !v.is_empty());
    let base = env.as_deref().unwrap_or(TWILIO_BASE_URL);
    let base = Url::parse(base)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| format!("{BASE_URL_ENV}={base:?} is not an http(s) URL"))?;
    Ok(Box::new(Twilio {
        messages_url: resource_url(&base, &sid, "Messages.json"),
        calls_url: resource_url(&base, &sid, "Calls.json"),
        sid,
        token: Token(token.to_owned()),
        default_from,
        client: http::client(REQUEST_TIMEOUT)?,
        overridden: env.is_some(),
    }))
}

/// `BASE/2010-04-01/Accounts/{sid}/{resource}`, the SID encoded as one path segment.
fn resource_url(base: &Url, sid: &str, resource: &str) -> Url {
    let mut url = base.clone();
    if let Ok(mut segs) = url.path_segments_mut() {
        segs.pop_if_empty()
            .extend(["2010-04-01", "Accounts", sid, resource]);
    }
    url
}

impl Connector for Twilio {
    fn run(self: Box<Self>, ctx: Context) -> BoxFuture<Result<(), ConnectorError>> {
        Box::pin(async move {
            if self.overridden {
                ctx.log(
                    Level::INFO,
                    &format!(
                        "Twilio API at {} ({BASE_URL_ENV})",
                        self.messages_url.origin().ascii_serialization()
                    ),
                );
            }
            while let Some(m) = ctx.recv().await {
                // A stop does not wait for a request's retries to run out.
                tokio::select! {
                    biased;
                    () = ctx.cancel().cancelled() => return Ok(()),
                    () = self.handle(&ctx, m.topic.as_str(), &m.payload) => {}
                }
            }
            Ok(())
        })
    }
}

/// Why Twilio did not take a request.
#[derive(Debug)]
enum Failure {
    /// Twilio answered with an error status.
    Api { http: StatusCode, message: String },
    /// No answer: connection refused, reset, timed out.
    Transport(String),
}

impl Failure {
    /// Worth trying again: the same request may succeed later.
    fn transient(&self) -> bool {
        match self {
            Self::Api { http, .. } => {
                *http == StatusCode::TOO_MANY_REQUESTS || http.is_server_error()
            }
            Self::Transport(_) => true,
        }
    }

    fn error(&self) -> &'static str {
        match self {
            Self::Api { .. } => TWILIO_ERROR,
            Self::Transport(_) => CONNECTION_ERROR,
        }
    }

    fn message(&self) -> &str {
        match self {
            Self::Api { message, .. } | Self::Transport(message) => message,
        }
    }
}

impl Twilio {
    async fn handle(&self, ctx: &Context, topic: &str, payload: &[u8]) {
        let request = match Channel::of(topic) {
            Some(ch) => parse(ch, payload, self.default_from.as_ref()),
            None => Err(Refusal {
                id: None,
                message: format!("topic {topic} is not {SMS_TOPIC} or {CALL_TOPIC}"),
            }),
        };
        let status = match request {
            Err(r) => {
                let message = self.scrub(&r.message);
                match &r.id {
                    Some(id) => ctx.rejected(&format!("request {id}: {message}")),
                    None => ctx.rejected(&message),
                }
                failure(r.id.as_deref(), INVALID, &message)
            }
            Ok(req) => match self.deliver(ctx, &req).await {
                Ok(state) => {
                    ctx.log(
                        Level::DEBUG,
                        &format!("request {}: Twilio status {state}", req.id),
                    );
                    success(&req, &state)
                }
                Err(f) => {
                    let message = self.scrub(f.message());
                    ctx.log(Level::WARN, &format!("request {}: {message}", req.id));
                    failure(Some(&req.id), f.error(), &message)
                }
            },
        };
        if let Err(e) = ctx.publish(STATUS_TOPIC, status.to_string()).await {
            ctx.log(
                Level::ERROR,
                &format!("cannot publish on {STATUS_TOPIC}: {e}"),
            );
        }
    }

    /// Send, retrying transient failures up to `req.retries` times with doubling waits.
    async fn deliver(&self, ctx: &Context, req: &Request) -> Result<String, Failure> {
        let mut wait = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            match self.send(req).await {
                Err(f) if f.transient() && tries < req.retries => {
                    tries += 1;
                    ctx.log(
                        Level::INFO,
                        &format!(
                            "request {}: {}; retry {tries} of {} in {} ms",
                            req.id,
                            self.scrub(f.message()),
                            req.retries,
                            wait.as_millis()
                        ),
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
                other => return other,
            }
        }
    }

    /// One POST to the Messages or Calls resource; `Ok` holds the new resource's status.
    async fn send(&self, req: &Request) -> Result<String, Failure> {
        let (url, content) = match &req.content {
            Content::Text(body) => (&self.messages_url, ("Body", body)),
            Content::Voice(twiml) => (&self.calls_url, ("Url", twiml)),
        };
        let body = http::form_encode(&[("To", &req.to.0), ("From", &req.from.0), content]);
        let resp = self
            .client
            .post(url.clone())
            .basic_auth(&self.sid, Some(&self.token.0))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Transport(describe(&e)))?;
        let http = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Failure::Transport(describe(&e)))?;
        let json = serde_json::from_slice::<Value>(&bytes).ok();
        if http.is_success() {
            // The message is accepted even if the answer is unreadable; say so rather than
            // report a failure and invite a duplicate.
            return Ok(json
                .as_ref()
                .and_then(|j| j.get("status"))
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned());
        }
        Err(Failure::Api {
            http,
            message: api_error(http, json.as_ref()),
        })
    }

    /// Remove the token from text that may have come from elsewhere (an error body).
    fn scrub(&self, text: &str) -> String {
        text.replace(&self.token.0, "<redacted>")
    }
}

/// Twilio's error body `{code, message, more_info, status}` as one line.
fn api_error(http: StatusCode, body: Option<&Value>) -> String {
    let field = |k: &str| body.and_then(|b| b.get(k));
    let mut out = format!("Twilio answered HTTP {}", http.as_u16());
    if let Some(code) = field("code").and_then(Value::as_i64) {
        out += &format!(", error {code}");
    }
    match field("message").and_then(Value::as_str) {
        Some(m) => out += &format!(": {m}"),
        None => {
            if let Some(reason) = http.canonical_reason() {
                out += &format!(" ({reason})");
            }
        }
    }
    if let Some(info) = field("more_info").and_then(Value::as_str) {
        out += &format!(" ({info})");
    }
    out
}

/// An error with its causes, which reqwest's own text leaves out.
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        format!(
            "Twilio did not answer within {} s",
            REQUEST_TIMEOUT.as_secs()
        )
    } else {
        "cannot reach Twilio".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out += &format!(": {s}");
        source = s.source();
    }
    out
}

/// Apply every rule of the input contract; a refusal is never sent on.
fn parse(ch: Channel, payload: &[u8], default_from: Option<&Phone>) -> Result<Request, Refusal> {
    let refuse = |id: Option<&str>, message: String| Refusal {
        id: id.map(str::to_owned),
        message,
    };
    let doc = serde_json::from_slice::<Value>(payload)
        .map_err(|e| refuse(None, format!("the payload is not JSON: {e}")))?;
    let Value::Object(doc) = doc else {
        return Err(refuse(None, "the payload must be a JSON object".into()));
    };
    let id = match doc.get("id") {
        None | Some(Value::Null) => return Err(refuse(None, "id cannot be None".into())),
        Some(Value::String(s)) if s.is_empty() => {
            return Err(refuse(Some(s), "id must not be empty".into()));
        }
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(refuse(None, "Invalid id field: expected a string".into())),
    };
    let fail = |message: String| refuse(Some(id), message);
    let request = object(&doc, "request", "request").map_err(fail)?;
    let recipient = object(request, "recipient", "Recipient").map_err(fail)?;
    let name = string(recipient, "name", "Recipient name").map_err(fail)?;
    if ch == Channel::Call && name.is_empty() {
        return Err(fail("Recipient name must not be empty".into()));
    }
    let to = string(recipient, "phone_number", "Recipient phone_number").map_err(fail)?;
    let to = Phone::parse(to).ok_or_else(|| {
        fail(format!(
            "Invalid phone_number field: {to:?} must be + and up to 15 digits (E.164)"
        ))
    })?;
    let present = |k: &str| !matches!(recipient.get(k), None | Some(Value::Null));
    if present("message") && present("voice_message_location") {
        return Err(fail(
            "Recipient message and voice_message_location cannot both be given".into(),
        ));
    }
    let content = match ch {
        Channel::Sms if present("voice_message_location") => {
            return Err(fail(format!(
                "{SMS_TOPIC} sends text: give recipient message (voice_message_location is for {CALL_TOPIC})"
            )));
        }
        Channel::Call if present("message") => {
            return Err(fail(format!(
                "{CALL_TOPIC} places a call: give recipient voice_message_location (message is for {SMS_TOPIC})"
            )));
        }
        Channel::Sms => {
            Content::Text(nonempty(recipient, "message", "Recipient message").map_err(fail)?)
        }
        Channel::Call => Content::Voice(
            nonempty(
                recipient,
                "voice_message_location",
                "Recipient voice_message_location",
            )
            .map_err(fail)?,
        ),
    };
    let from = match request.get("from_number") {
        None | Some(Value::Null) => default_from.cloned().ok_or_else(|| {
            fail("from_number cannot be None when DefaultFromPhoneNumber is not configured".into())
        })?,
        Some(Value::String(s)) => Phone::parse(s).ok_or_else(|| {
            fail(format!(
                "Invalid from_number field: {s:?} must be + and up to 15 digits (E.164)"
            ))
        })?,
        Some(_) => return Err(fail("Invalid from_number field: expected a string".into())),
    };
    let retries = match request.get("retries") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|n| u32::try_from(n.min(u64::from(MAX_RETRIES))).unwrap_or(MAX_RETRIES))
            .ok_or_else(|| fail("Invalid retries field: expected a non-negative integer".into()))?,
        Some(_) => {
            return Err(fail(
                "Invalid retries field: expected a non-negative integer".into(),
            ));
        }
    };
    Ok(Request {
        id: id.to_owned(),
        name: name.to_owned(),
        to,
        from,
        content,
        retries,
    })
}

// The field readers give plain messages; `parse` attaches the id.
fn object<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    label: &str,
) -> Result<&'a Map<String, Value>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(format!("{label} cannot be None")),
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(format!("Invalid {key} field: expected an object")),
    }
}

fn string<'a>(obj: &'a Map<String, Value>, key: &str, label: &str) -> Result<&'a str, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(format!("{label} cannot be None")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("Invalid {key} field: expected a string")),
    }
}

fn nonempty(obj: &Map<String, Value>, key: &str, label: &str) -> Result<String, String> {
    match string(obj, key, label)? {
        "" => Err(format!("{label} must not be empty")),
        s => Ok(s.to_owned()),
    }
}

/// The documented success status.
fn success(req: &Request, state: &str) -> Value {
    json!({
        "response": {
            "status": "success",
            "payload": {
                "from_number": req.from.0,
                "messages": {
                    "message_status": state,
                    "to_number": req.to.0,
                    "name": req.name,
                }
            }
        },
        "id": req.id,
    })
}

/// The documented error status; `id` is left out when the payload had no usable one.
fn failure(id: Option<&str>, error: &str, message: &str) -> Value {
    let mut out = Map::new();
    out.insert(
        "response".into(),
        json!({ "status": "fail", "error_message": message, "error": error, "payload": null }),
    );
    if let Some(id) = id {
        out.insert("id".into(), id.into());
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms(recipient: Value) -> Value {
        json!({"request": {"recipient": recipient, "from_number": "+19999999999", "retries": 3},
               "id": "request123"})
    }

    fn refusal(ch: Channel, body: &Value) -> Refusal {
        parse(ch, body.to_string().as_bytes(), None).expect_err("refused")
    }

    #[test]
    fn the_documented_examples_parse() {
        let body = sms(
            json!({"name": "Darla", "phone_number": "+12345000000", "message": "Hello from the edge"}),
        );
        let req = parse(Channel::Sms, body.to_string().as_bytes(), None).expect("valid");
        assert_eq!(
            req,
            Request {
                id: "request123".into(),
                name: "Darla".into(),
                to: Phone("+12345000000".into()),
                from: Phone("+19999999999".into()),
                content: Content::Text("Hello from the edge".into()),
                retries: 3,
            }
        );
        let body = sms(
            json!({"name": "Darla", "phone_number": "+12345000000", "voice_message_location": "https://some-public-TwiML"}),
        );
        let req = parse(Channel::Call, body.to_string().as_bytes(), None).expect("valid");
        assert_eq!(
            req.content,
            Content::Voice("https://some-public-TwiML".into())
        );
    }

    #[test]
    fn defaults_and_bounds() {
        let body = json!({"request": {"recipient": {"name": "", "phone_number": "+15550001111", "message": "hi"}}, "id": "a"});
        let default = Phone::parse("+15005550006").expect("phone");
        let req = parse(Channel::Sms, body.to_string().as_bytes(), Some(&default)).expect("valid");
        assert_eq!((req.from, req.retries), (default, 0));
        assert_eq!(
            refusal(Channel::Sms, &body).message,
            "from_number cannot be None when DefaultFromPhoneNumber is not configured"
        );
        let mut many = sms(json!({"name": "D", "phone_number": "+15550001111", "message": "hi"}));
        many["request"]["retries"] = json!(1000);
        let req = parse(Channel::Sms, many.to_string().as_bytes(), None).expect("valid");
        assert_eq!(req.retries, MAX_RETRIES);
    }

    #[test]
    fn every_rule_is_applied() {
        let r = |v: Value| {
            json!({"name": "Darla", "phone_number": "+12345000000", "message": "hi"})
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    for (k, x) in v.as_object().expect("object") {
                        if x.is_null() {
                            o.remove(k);
                        } else {
                            o.insert(k.clone(), x.clone());
                        }
                    }
                    sms(Value::Object(o))
                })
                .expect("object")
        };
        let cases = [
            (json!({"name": null}), "Recipient name cannot be None"),
            (
                json!({"phone_number": null}),
                "Recipient phone_number cannot be None",
            ),
            (json!({"message": null}), "Recipient message cannot be None"),
            (
                json!({"message": ""}),
                "Recipient message must not be empty",
            ),
            (json!({"name": 3}), "Invalid name field: expected a string"),
            (
                json!({"voice_message_location": "https://x"}),
                "Recipient message and voice_message_location cannot both be given",
            ),
        ];
        for (change, want) in cases {
            let got = refusal(Channel::Sms, &r(change));
            assert_eq!(got.message, want);
            assert_eq!(got.id.as_deref(), Some("request123"));
        }
        for bad in [
            "12345",
            "+",
            "+0123",
            "+1234a",
            "+1234567890123456",
            " +1234",
        ] {
            let got = refusal(Channel::Sms, &r(json!({"phone_number": bad})));
            assert!(
                got.message.starts_with("Invalid phone_number field"),
                "{bad}"
            );
        }
        let mut b = r(json!({}));
        b["request"]["from_number"] = json!("99");
        assert!(
            refusal(Channel::Sms, &b)
                .message
                .starts_with("Invalid from_number field")
        );
        for bad in [json!(-1), json!(1.5), json!("2"), json!(true)] {
            let mut b = r(json!({}));
            b["request"]["retries"] = bad;
            assert!(
                refusal(Channel::Sms, &b)
                    .message
                    .starts_with("Invalid retries field")
            );
        }
        // A call needs a name and its TwiML URL, and no text.
        let call = refusal(Channel::Call, &r(json!({})));
        assert!(
            call.message.contains("voice_message_location"),
            "{}",
            call.message
        );
        let nameless = refusal(
            Channel::Call,
            &sms(
                json!({"name": "", "phone_number": "+12345000000", "voice_message_location": "https://x"}),
            ),
        );
        assert_eq!(nameless.message, "Recipient name must not be empty");
        assert!(
            refusal(Channel::Sms, &json!({"request": {"recipient": {}}}))
                .id
                .is_none()
        );
        assert_eq!(
            refusal(Channel::Sms, &json!({"id": "x"})),
            Refusal {
                id: Some("x".into()),
                message: "request cannot be None".into()
            }
        );
        let not_json = parse(Channel::Sms, b"{nope", None).expect_err("refused");
        assert!(not_json.message.starts_with("the payload is not JSON"));
        assert!(not_json.id.is_none());
        let array = parse(Channel::Sms, b"[]", None).expect_err("refused");
        assert_eq!(array.message, "the payload must be a JSON object");
    }

    #[test]
    fn status_shapes() {
        let req = Request {
            id: "request123".into(),
            name: "Darla".into(),
            to: Phone("+12345000000".into()),
            from: Phone("+19999999999".into()),
            content: Content::Text("x".into()),
            retries: 0,
        };
        assert_eq!(
            success(&req, "queued"),
            json!({"response": {"status": "success", "payload": {
                "from_number": "+19999999999",
                "messages": {"message_status": "queued", "to_number": "+12345000000", "name": "Darla"}}},
                "id": "request123"})
        );
        assert_eq!(
            failure(Some("request123"), INVALID, "Recipient name cannot be None"),
            json!({"response": {"status": "fail", "error_message": "Recipient name cannot be None",
                "error": "InvalidParameter", "payload": null}, "id": "request123"})
        );
        assert!(failure(None, INVALID, "x").get("id").is_none());
    }

    #[test]
    fn twilio_errors_read_as_one_line() {
        let body = json!({"code": 21211, "message": "The 'To' number +1555 is not a valid phone number.",
                          "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400});
        assert_eq!(
            api_error(StatusCode::BAD_REQUEST, Some(&body)),
            "Twilio answered HTTP 400, error 21211: The 'To' number +1555 is not a valid phone number. (https://www.twilio.com/docs/errors/21211)"
        );
        assert_eq!(
            api_error(StatusCode::SERVICE_UNAVAILABLE, None),
            "Twilio answered HTTP 503 (Service Unavailable)"
        );
        let api = |s| Failure::Api {
            http: s,
            message: String::new(),
        };
        assert!(api(StatusCode::SERVICE_UNAVAILABLE).transient());
        assert!(api(StatusCode::TOO_MANY_REQUESTS).transient());
        assert!(!api(StatusCode::BAD_REQUEST).transient());
        assert!(!api(StatusCode::UNAUTHORIZED).transient());
        assert!(Failure::Transport(String::new()).transient());
    }

    #[test]
    fn forms_and_urls_are_encoded() {
        let (to, body) = ("+1555".to_owned(), "Hi & bye = 100% ✓".to_owned());
        assert_eq!(
            http::form_encode(&[("To", &to), ("Body", &body)]),
            "To=%2B1555&Body=Hi%20%26%20bye%20%3D%20100%25%20%E2%9C%93"
        );
        let base = Url::parse("http://127.0.0.1:8080/").expect("url");
        assert_eq!(
            resource_url(&base, "AC1/2", "Messages.json").as_str(),
            "http://127.0.0.1:8080/2010-04-01/Accounts/AC1%2F2/Messages.json"
        );
        let base = Url::parse(TWILIO_BASE_URL).expect("url");
        assert_eq!(
            resource_url(&base, "ACabc", "Calls.json").as_str(),
            "https://api.twilio.com/2010-04-01/Accounts/ACabc/Calls.json"
        );
    }

    fn connector(base: &str) -> Twilio {
        let base = Url::parse(base).expect("url");
        Twilio {
            messages_url: resource_url(&base, "ACx", "Messages.json"),
            calls_url: resource_url(&base, "ACx", "Calls.json"),
            sid: "ACx".into(),
            token: Token("s3cr3t".into()),
            default_from: None,
            client: http::client(Duration::from_secs(2)).expect("client"),
            overridden: true,
        }
    }

    #[test]
    fn the_token_never_prints() {
        let t = connector("http://127.0.0.1:9/");
        assert!(!format!("{t:?}").contains("s3cr3t"));
        assert_eq!(t.scrub("echoed s3cr3t back"), "echoed <redacted> back");
    }

    #[tokio::test]
    async fn an_unreachable_twilio_is_a_connection_error() {
        // Bind then drop a listener: nothing listens on that port now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let t = connector(&format!("http://127.0.0.1:{port}/"));
        let body = sms(json!({"name": "D", "phone_number": "+15550001111", "message": "hi"}));
        let req = parse(Channel::Sms, body.to_string().as_bytes(), None).expect("valid");
        let f = t.send(&req).await.expect_err("refused connection");
        assert_eq!(f.error(), CONNECTION_ERROR);
        assert!(f.transient());
        assert!(
            f.message().starts_with("cannot reach Twilio"),
            "{}",
            f.message()
        );
        assert!(!f.message().contains("s3cr3t"));
    }
}
