//! `sigv4::verify` and `sigv4::sign` against the real peer: botocore, the signer inside the
//! AWS CLI and boto3.
//!
//! `tests/sigv4/botocore_cases.py` signs Greengrass requests with botocore (through a real
//! `greengrass` client, through `SigV4Auth` on a bare `AWSRequest`, and through the AWS CLI
//! itself), sends them to a local capture server and prints them as the server received
//! them. Every one must verify; every one must fail once a byte of it is changed, the secret
//! is wrong or the clock is six minutes off; and `sign`, given the headers botocore signed,
//! must produce botocore's Authorization header exactly.
//!
//! These tests need python3 with botocore and the AWS CLI (`pip install awscli`). Without
//! them they fail; they never skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use coupler_api::sigv4::{self, AuthError, Request, SigningParams, Verified};
use serde_json::Value;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

const INSTALL_HINT: &str =
    "these tests need python3 with botocore and the AWS CLI: pip install awscli";

#[derive(Debug)]
struct Case {
    name: String,
    kind: String,
    method: String,
    path: String,
    query: Option<String>,
    /// The header lines as the server received them.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timestamp: OffsetDateTime,
    access_key_id: String,
    secret_access_key: String,
    region: String,
    service: String,
    /// "body", "unsigned" or "header-hash": what covers the body.
    payload: String,
    /// "accept" or the error type `verify` must give.
    expect: String,
    compare_sign: bool,
    /// The URL botocore signed, and its headers at that moment (none for CLI cases).
    signed_url: Option<String>,
    signed_headers: Option<Vec<(String, String)>>,
}

impl Case {
    fn header_map(&self) -> HeaderMap {
        to_header_map(&self.headers)
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{}: no {name} header", self.name))
    }

    fn authorization(&self) -> &str {
        self.header("authorization")
    }

    /// The header names botocore signed, from its Authorization header.
    fn signed_names(&self) -> Vec<String> {
        let auth = self.authorization();
        let list = auth
            .split(", ")
            .find_map(|p| p.strip_prefix("SignedHeaders="))
            .unwrap_or_else(|| panic!("{}: no SignedHeaders in {auth}", self.name));
        list.split(';').map(str::to_owned).collect()
    }

    fn secrets(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |akid| (akid == self.access_key_id).then(|| self.secret_access_key.clone())
    }

    fn verify_with(
        &self,
        headers: &HeaderMap,
        path: &str,
        query: Option<&str>,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<Verified, AuthError> {
        let req = Request {
            method: &self.method,
            raw_path: path,
            raw_query: query,
            headers,
            body,
        };
        sigv4::verify(&req, self.secrets(), now, sigv4::DEFAULT_MAX_SKEW)
    }

    fn verify_as_sent(&self) -> Result<Verified, AuthError> {
        self.verify_with(
            &self.header_map(),
            &self.path,
            self.query.as_deref(),
            &self.body,
            self.timestamp,
        )
    }
}

/// Header values arrive as latin-1 text: one char per byte.
fn latin1(value: &str) -> Vec<u8> {
    value
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("latin-1 header value"))
        .collect()
}

fn to_header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_bytes(&latin1(value)).expect("header value"),
        );
    }
    map
}

fn parse_amz_date(text: &str) -> OffsetDateTime {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(text, format)
        .unwrap_or_else(|e| panic!("bad timestamp {text}: {e}"))
        .assume_utc()
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sigv4")
        .join(name)
}

/// Runs a helper script with python3; fails the test (never skips) when it cannot.
fn run_python(name: &str) -> std::process::Output {
    let path = script(name);
    let output = Command::new("python3")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 {} ({e}); {INSTALL_HINT}",
                path.display()
            )
        });
    assert!(
        output.status.success(),
        "python3 {} failed ({}):\n{}\n{}\n{INSTALL_HINT}",
        path.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    output
}

fn pairs(value: &Value) -> Vec<(String, String)> {
    value
        .as_array()
        .expect("header list")
        .iter()
        .map(|p| {
            (
                p[0].as_str().expect("name").to_owned(),
                p[1].as_str().expect("value").to_owned(),
            )
        })
        .collect()
}

fn text(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("missing {field} in {value}"))
        .to_owned()
}

/// The botocore cases, produced once per test binary.
fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        let output = run_python("botocore_cases.py");
        let doc: Value =
            serde_json::from_slice(&output.stdout).expect("botocore_cases.py prints JSON");
        let cases: Vec<Case> = doc["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .map(|c| Case {
                name: text(c, "name"),
                kind: text(c, "kind"),
                method: text(c, "method"),
                path: text(c, "path"),
                query: c["query"].as_str().map(str::to_owned),
                headers: pairs(&c["headers"]),
                body: hex::decode(text(c, "body_hex")).expect("body hex"),
                timestamp: parse_amz_date(&text(c, "timestamp")),
                access_key_id: text(c, "access_key_id"),
                secret_access_key: text(c, "secret_access_key"),
                region: text(c, "region"),
                service: text(c, "service"),
                payload: text(c, "payload"),
                expect: text(c, "expect"),
                compare_sign: c["compare_sign"].as_bool().expect("compare_sign"),
                signed_url: c["signed_url"].as_str().map(str::to_owned),
                signed_headers: (!c["signed_headers"].is_null())
                    .then(|| pairs(&c["signed_headers"])),
            })
            .collect();
        assert!(cases.len() >= 15, "too few botocore cases: {}", cases.len());
        cases
    })
}

/// The cases botocore signed as a client would, which must be accepted as they are.
fn accepted() -> impl Iterator<Item = &'static Case> {
    cases().iter().filter(|c| c.expect == "accept")
}

fn expect_signature_mismatch(case: &Case, what: &str, result: Result<Verified, AuthError>) {
    match result {
        Err(AuthError::SignatureDoesNotMatch { .. }) => {}
        other => panic!(
            "{}: {what}: expected InvalidSignatureException (signature mismatch), got {other:?}",
            case.name
        ),
    }
}

#[test]
fn botocore_requests_verify() {
    let mut kinds = Vec::new();
    for case in cases() {
        let result = case.verify_as_sent();
        if case.expect == "accept" {
            let verified = result.unwrap_or_else(|e| {
                panic!(
                    "{} ({}) refused: {} {}\n{case:#?}",
                    case.name,
                    case.kind,
                    e.error_type(),
                    e.message()
                )
            });
            assert_eq!(verified.access_key_id, case.access_key_id, "{}", case.name);
            assert_eq!(verified.region, case.region, "{}", case.name);
            assert_eq!(verified.service, case.service, "{}", case.name);
            assert_eq!(verified.check_scope("us-east-1", "greengrass"), Ok(()));
        } else {
            let err = result.expect_err(&case.name);
            assert_eq!(err.error_type(), case.expect, "{}: {err:?}", case.name);
        }
        kinds.push(case.kind.as_str());
    }
    for kind in ["client", "raw", "cli"] {
        assert!(kinds.contains(&kind), "no {kind} case ran");
    }
}

#[test]
fn the_wire_paths_are_what_the_aws_cli_sends() {
    // What the server sees is botocore's serialised path, untouched by urllib3: labels are
    // percent-encoded by botocore, and the literal `$` of `.../deployments/$reset` stays a
    // literal `$` (a sub-delim, legal in a path). Either way the signer encoded that path
    // once more, so the server's canonical URI is the wire path encoded once more.
    let by_name = |name: &str| {
        cases()
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no case {name}"))
    };
    let reset = by_name("reset-deployments-dollar-path");
    assert!(
        reset.path.ends_with("/deployments/$reset"),
        "{}",
        reset.path
    );
    assert!(
        by_name("cli-reset-deployments")
            .path
            .ends_with("/deployments/$reset")
    );
    let tags = by_name("list-tags-encoded-arn");
    assert!(tags.path.starts_with(
        "/tags/arn%3Aaws%3Agreengrass%3Aus-east-1%3A123456789012%3A%2Fgreengrass%2Fgroups%2F"
    ));
    for case in cases() {
        if let Some(url) = &case.signed_url {
            let signed_path = url
                .splitn(4, '/')
                .nth(3)
                .map(|p| format!("/{p}"))
                .unwrap_or_default();
            let signed_path = signed_path.split('?').next().unwrap_or_default();
            assert_eq!(
                signed_path, case.path,
                "{}: botocore signed one path and sent another",
                case.name
            );
        }
    }
    // A client that percent-encodes the `$` signs `%2524reset`, and that verifies too.
    let headers = HeaderMap::from_iter([(
        axum::http::header::HOST,
        HeaderValue::from_static("greengrass.us-east-1.amazonaws.com"),
    )]);
    for path in [
        "/greengrass/groups/g/deployments/%24reset",
        "/greengrass/groups/g/deployments/$reset",
    ] {
        let req = Request {
            method: "POST",
            raw_path: path,
            raw_query: None,
            headers: &headers,
            body: b"{}",
        };
        let params = SigningParams {
            access_key_id: "AKID",
            secret_access_key: "secret",
            region: "us-east-1",
            service: "greengrass",
            time: reset.timestamp,
        };
        let signed = sigv4::sign(&req, &params).expect("sign");
        let mut sent = headers.clone();
        signed.apply_to(&mut sent);
        let req = Request {
            headers: &sent,
            ..req
        };
        let ok = sigv4::verify(
            &req,
            |_| Some("secret".into()),
            reset.timestamp,
            sigv4::DEFAULT_MAX_SKEW,
        );
        assert!(ok.is_ok(), "{path}: {ok:?}");
        assert!(signed.canonical_request.contains(if path.contains('$') {
            "/%24reset\n"
        } else {
            "/%2524reset\n"
        }));
    }
}

#[test]
fn a_changed_body_is_refused_unless_unsigned() {
    for case in accepted() {
        let mut body = case.body.clone();
        match body.first_mut() {
            Some(b) => *b ^= 0x01,
            None => body.push(b'x'),
        }
        let result = case.verify_with(
            &case.header_map(),
            &case.path,
            case.query.as_deref(),
            &body,
            case.timestamp,
        );
        match case.payload.as_str() {
            "unsigned" => assert!(
                result.is_ok(),
                "{}: UNSIGNED-PAYLOAD body refused: {result:?}",
                case.name
            ),
            "header-hash" => assert!(
                matches!(result, Err(AuthError::ContentSha256Mismatch { .. })),
                "{}: {result:?}",
                case.name
            ),
            _ => expect_signature_mismatch(case, "body byte flipped", result),
        }
    }
}

#[test]
fn a_wrong_secret_or_unknown_key_is_refused() {
    for case in accepted() {
        let headers = case.header_map();
        let req = Request {
            method: &case.method,
            raw_path: &case.path,
            raw_query: case.query.as_deref(),
            headers: &headers,
            body: &case.body,
        };
        let mut wrong = case.secret_access_key.clone();
        wrong.push('x');
        let result = sigv4::verify(
            &req,
            |_| Some(wrong.clone()),
            case.timestamp,
            sigv4::DEFAULT_MAX_SKEW,
        );
        expect_signature_mismatch(case, "wrong secret", result);

        let err = sigv4::verify(&req, |_| None, case.timestamp, sigv4::DEFAULT_MAX_SKEW)
            .expect_err(&case.name);
        assert_eq!(
            err.error_type(),
            "UnrecognizedClientException",
            "{}",
            case.name
        );
        assert_eq!(err.status(), 403);
    }
}

/// Bumps the last digit of a value (keeping a date a valid date on the same day), or
/// appends a character when there is no digit.
fn change(value: &str) -> String {
    let mut bytes = value.as_bytes().to_vec();
    match bytes.iter().rposition(u8::is_ascii_digit) {
        Some(i) => bytes[i] = if bytes[i] == b'9' { b'8' } else { bytes[i] + 1 },
        None => bytes.push(b'x'),
    }
    String::from_utf8(bytes).expect("ascii edit")
}

#[test]
fn a_changed_signed_header_is_refused_and_an_unsigned_one_is_not() {
    for case in accepted() {
        let signed = case.signed_names();
        assert!(signed.contains(&"host".to_owned()), "{}", case.name);
        for name in &signed {
            let pairs: Vec<(String, String)> = case
                .headers
                .iter()
                .map(|(n, v)| {
                    let v = if n.eq_ignore_ascii_case(name) {
                        change(v)
                    } else {
                        v.clone()
                    };
                    (n.clone(), v)
                })
                .collect();
            let result = case.verify_with(
                &to_header_map(&pairs),
                &case.path,
                case.query.as_deref(),
                &case.body,
                case.timestamp,
            );
            expect_signature_mismatch(case, &format!("signed header {name} changed"), result);
        }
        for (name, _) in &case.headers {
            let lower = name.to_ascii_lowercase();
            if lower == "authorization" || signed.contains(&lower) {
                continue;
            }
            let mut headers = case.header_map();
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_static("something else"),
            );
            let result = case.verify_with(
                &headers,
                &case.path,
                case.query.as_deref(),
                &case.body,
                case.timestamp,
            );
            assert!(
                result.is_ok(),
                "{}: unsigned header {name} changed: {result:?}",
                case.name
            );
        }
    }
}

#[test]
fn a_changed_path_or_query_is_refused() {
    for case in accepted() {
        let path = format!("{}x", case.path);
        let result = case.verify_with(
            &case.header_map(),
            &path,
            case.query.as_deref(),
            &case.body,
            case.timestamp,
        );
        expect_signature_mismatch(case, "path changed", result);
        let query = match &case.query {
            Some(q) => change(q),
            None => "MaxResults=1".to_owned(),
        };
        let result = case.verify_with(
            &case.header_map(),
            &case.path,
            Some(&query),
            &case.body,
            case.timestamp,
        );
        expect_signature_mismatch(case, "query changed", result);
    }
}

#[test]
fn the_clock_may_be_off_by_five_minutes_not_six() {
    for case in accepted() {
        let at = |now| {
            case.verify_with(
                &case.header_map(),
                &case.path,
                case.query.as_deref(),
                &case.body,
                now,
            )
        };
        assert!(
            at(case.timestamp + Duration::minutes(4)).is_ok(),
            "{}",
            case.name
        );
        assert!(
            at(case.timestamp - Duration::minutes(4)).is_ok(),
            "{}",
            case.name
        );

        let err = at(case.timestamp + Duration::minutes(6)).expect_err(&case.name);
        assert!(
            matches!(err, AuthError::SignatureExpired { .. }),
            "{}: {err:?}",
            case.name
        );
        assert_eq!(
            (err.status(), err.error_type()),
            (403, "InvalidSignatureException")
        );
        assert!(
            err.message().starts_with("Signature expired: "),
            "{}",
            err.message()
        );

        let err = at(case.timestamp - Duration::minutes(6)).expect_err(&case.name);
        assert!(
            matches!(err, AuthError::SignatureNotYetCurrent { .. }),
            "{}: {err:?}",
            case.name
        );
        assert_eq!(
            (err.status(), err.error_type()),
            (403, "InvalidSignatureException")
        );
        assert!(
            err.message().starts_with("Signature not yet current: "),
            "{}",
            err.message()
        );
    }
}

#[test]
fn sign_produces_botocores_authorization() {
    let mut compared = 0;
    for case in cases().iter().filter(|c| c.compare_sign) {
        // The headers botocore had when it signed, plus the Host it signed (which it takes
        // from the URL and the HTTP stack then sends).
        let mut at_signing: Vec<(String, String)> = case
            .signed_headers
            .clone()
            .unwrap_or_else(|| panic!("{}: no signing-time headers", case.name))
            .into_iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("authorization"))
            .collect();
        at_signing.push(("Host".to_owned(), case.header("host").to_owned()));
        let headers = to_header_map(&at_signing);
        let req = Request {
            method: &case.method,
            raw_path: &case.path,
            raw_query: case.query.as_deref(),
            headers: &headers,
            body: &case.body,
        };
        let params = SigningParams {
            access_key_id: &case.access_key_id,
            secret_access_key: &case.secret_access_key,
            region: &case.region,
            service: &case.service,
            time: case.timestamp,
        };
        let signed = sigv4::sign(&req, &params).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(
            signed.authorization,
            case.authorization(),
            "{}\n{}",
            case.name,
            signed.canonical_request
        );
        assert_eq!(
            signed.x_amz_date,
            case.header("x-amz-date"),
            "{}",
            case.name
        );
        assert_eq!(signed.headers["authorization"], case.authorization());
        compared += 1;
    }
    assert!(compared >= 12, "only {compared} cases compared");
}

#[test]
fn the_aws_suite_vectors_used_by_the_unit_tests_are_botocores() {
    // The unit tests of `sigv4` check the published AWS test-suite signatures in
    // tests/sigv4/aws_suite_vectors.json; this re-derives each of them with botocore.
    let output = run_python("aws_suite_botocore.py");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.lines().count() >= 20 && report.lines().all(|l| l.starts_with("ok ")),
        "{report}"
    );
}
