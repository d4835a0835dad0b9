//! Request decoding never fails on the server's side: random and mutated bodies, paths and
//! queries get a 400 or 404 (or succeed), never a 500 or a panic.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use coupler_api::store::SqliteStore;
use coupler_api::wire::Identity;
use coupler_api::{AppState, Auth, Service, http};
use proptest::prelude::*;
use tower::ServiceExt;

const VALID_CONNECTORS: &str = r#"{"Connectors":[{"Id":"a","ConnectorArn":"arn:aws:greengrass:us-east-1::/connectors/TwilioNotifications/versions/4","Parameters":{"TWILIO_ACCOUNT_SID":"AC1","TwilioAuthTokenSecretArn":"arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-T-AbCdEf","TwilioAuthTokenSecretArn-ResourceId":"T","DefaultFromPhoneNumber":"+19999999999"}}]}"#;
const VALID_GROUP: &str = r#"{"Name":"g","tags":{"k":"v"}}"#;
/// A CreateFunction body (the zip holds `a.py`), whose mutations also reach the zip check.
const VALID_FUNCTION: &str = r#"{"FunctionName":"f","Runtime":"python3.12","Role":"arn:aws:iam::123456789012:role/r","Handler":"app.h","Timeout":3,"Environment":{"Variables":{"AB":"c"}},"Publish":true,"Code":{"ZipFile":"UEsDBBQAAAAAAAAAIVCDFtyMAQAAAAEAAAAEAAAAYS5weXhQSwECFAMUAAAAAAAAACFQgxbcjAEAAAABAAAABAAAAAAAAAAAAAAAgAEAAAAAYS5weVBLBQYAAAAAAQABADIAAAAjAAAAAAA="}}"#;
const VALID_SUBS: &str = r#"{"Subscriptions":[{"Id":"1","Source":"cloud","Subject":"a/+/b","Target":"arn:aws:iot:us-east-1:123456789012:thing/t"}]}"#;

fn app() -> axum::Router {
    let service = Service::new(
        Arc::new(SqliteStore::in_memory().expect("store")),
        Identity {
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
        },
    );
    http::router(Arc::new(AppState {
        service: Arc::new(service),
        auth: Auth::Insecure,
    }))
}

fn send(app: &axum::Router, method: &str, uri: &str, body: Vec<u8>) -> StatusCode {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let Ok(req) = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body))
    else {
        // Not even a valid HTTP request: nothing reaches the server.
        return StatusCode::BAD_REQUEST;
    };
    rt.block_on(app.clone().oneshot(req))
        .expect("infallible")
        .status()
}

/// Byte-level mutations of a valid document: flips, cuts and insertions.
fn mutated(base: &'static str) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        any::<usize>(),
        proptest::option::of(".{0,8}"),
    )
        .prop_map(move |(flips, cut, insert)| {
            let mut b = base.as_bytes().to_vec();
            for (i, v) in flips {
                let i = i % b.len();
                b[i] = v;
            }
            if let Some(s) = insert {
                let at = cut % (b.len() + 1);
                b.splice(at..at, s.into_bytes());
            } else if cut % 3 == 0 {
                b.truncate(cut % (b.len() + 1));
            }
            b
        })
}

fn acceptable(s: StatusCode) -> bool {
    s.is_success() || s == StatusCode::BAD_REQUEST || s == StatusCode::NOT_FOUND
}

/// Lambda also answers 409 (exists, in use) and 412 (stale RevisionId).
fn lambda_acceptable(s: StatusCode) -> bool {
    acceptable(s) || s == StatusCode::CONFLICT || s == StatusCode::PRECONDITION_FAILED
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutated_definition_versions_are_client_errors(body in mutated(VALID_CONNECTORS), subs in mutated(VALID_SUBS)) {
        let app = app();
        for (kind, body) in [("connectors", body), ("subscriptions", subs)] {
            let mut create = br#"{"InitialVersion":"#.to_vec();
            create.extend_from_slice(&body);
            create.push(b'}');
            let s = send(&app, "POST", &format!("/greengrass/definition/{kind}"), create);
            prop_assert!(acceptable(s), "{kind} create: {s}");
        }
    }

    #[test]
    fn mutated_groups_are_client_errors(body in mutated(VALID_GROUP)) {
        let app = app();
        let s = send(&app, "POST", "/greengrass/groups", body.clone());
        prop_assert!(acceptable(s), "{s}");
        let s = send(&app, "PUT", "/greengrass/groups/nope", body);
        prop_assert!(acceptable(s), "{s}");
    }

    #[test]
    fn random_paths_and_queries_are_client_errors(
        path in "/(greengrass|tags)(/[a-zA-Z0-9$%:._-]{0,12}){0,6}",
        query in proptest::option::of("[A-Za-z]{1,10}=[^ #]{0,12}"),
        method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE")],
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let app = app();
        let uri = match query { Some(q) => format!("{path}?{q}"), None => path };
        let s = send(&app, method, &uri, body);
        prop_assert!(acceptable(s) || s == StatusCode::NO_CONTENT, "{method} {uri}: {s}");
    }

    #[test]
    fn mutated_lambda_requests_are_client_errors(body in mutated(VALID_FUNCTION)) {
        let app = app();
        let s = send(&app, "POST", "/2015-03-31/functions", body.clone());
        prop_assert!(lambda_acceptable(s), "create: {s}");
        for (method, path) in [
            ("PUT", "/2015-03-31/functions/f/code"),
            ("POST", "/2015-03-31/functions/f/versions"),
            ("POST", "/2015-03-31/functions/f/aliases"),
            ("PUT", "/2015-03-31/functions/f/aliases/a"),
        ] {
            let s = send(&app, method, path, body.clone());
            prop_assert!(lambda_acceptable(s), "{method} {path}: {s}");
        }
    }

    #[test]
    fn random_lambda_paths_and_queries_are_client_errors(
        path in "/2015-03-31/functions(/[a-zA-Z0-9$%:._-]{0,12}){0,5}",
        query in proptest::option::of("(Qualifier|Marker|MaxItems|FunctionVersion|[A-Za-z]{1,10})=[^ #]{0,12}"),
        method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE")],
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let app = app();
        let uri = match query { Some(q) => format!("{path}?{q}"), None => path };
        let s = send(&app, method, &uri, body);
        prop_assert!(lambda_acceptable(s), "{method} {uri}: {s}");
    }
}
