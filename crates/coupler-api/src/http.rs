//! The HTTP face of the control plane: routes, authentication, body limits, and the mapping
//! of every request to a [`Service`] operation.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use coupler_model::arn::DefinitionKind;
use serde_json::Value;

use crate::error::{ApiError, ApiResult, JSON_1_1, LambdaError, SecretsError};
use crate::lambda::Answer;
use crate::service::{Raw, Service};
use crate::sigv4;
use crate::wire::Page;

/// Largest request body accepted; larger ones get a 400 (a 413 on Lambda paths) before they
/// are read further.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Requests signed further than this from our clock are refused, as AWS does.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// An access key the API accepts.
#[derive(Clone)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"**REDACTED**")
            .finish()
    }
}

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Every request must be SigV4-signed with one of these keys.
    SigV4(Vec<AccessKey>),
    /// No authentication at all (`--insecure-no-auth`).
    Insecure,
}

#[derive(Debug)]
pub struct AppState {
    pub service: Arc<Service>,
    pub auth: Auth,
}

type St = State<Arc<AppState>>;

/// What an operation answers.
pub trait Reply {
    fn into_reply(self) -> Response;
}

impl Reply for Value {
    /// `null` means no content (the tag operations' 204).
    fn into_reply(self) -> Response {
        match self {
            Value::Null => StatusCode::NO_CONTENT.into_response(),
            v => json_response(&v),
        }
    }
}

impl Reply for Raw {
    fn into_reply(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

/// Run a service operation. It talks to the embedded store, which answers in well under a
/// millisecond, so it runs right here: a hop to a blocking thread (or `block_in_place`, which
/// hands the worker to a new thread) would cost more than the operation.
async fn run<F, R>(state: &AppState, f: F) -> Response
where
    F: FnOnce(&Service) -> ApiResult<R>,
    R: Reply,
{
    match f(&state.service) {
        Ok(r) => r.into_reply(),
        Err(e) => e.into_response(),
    }
}

fn json_response(v: &Value) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

fn client_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-amzn-client-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn kind(segment: &str) -> ApiResult<DefinitionKind> {
    DefinitionKind::from_segment(segment).ok_or_else(|| {
        ApiError::not_found(
            "NotFoundException",
            format!("Unknown definition kind {segment:?}"),
        )
    })
}

/// `MaxResults` and `NextToken` from the raw query.
fn page(query: Option<&str>) -> ApiResult<Page> {
    let pairs = query_pairs(query);
    let find = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    Page::parse(find("MaxResults"), find("NextToken"))
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

// ---- definitions ----------------------------------------------------------------------

async fn list_definitions(State(s): St, Path(k): Path<String>, req: Request) -> Response {
    let query = req.uri().query().map(str::to_owned);
    run(&s, move |svc| {
        svc.list_definitions(kind(&k)?, page(query.as_deref())?)
    })
    .await
}

async fn create_definition(
    State(s): St,
    Path(k): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = client_token(&headers);
    run(&s, move |svc| {
        svc.create_definition(kind(&k)?, token.as_deref(), &body)
    })
    .await
}

async fn get_definition(State(s): St, Path((k, id)): Path<(String, String)>) -> Response {
    run(&s, move |svc| svc.get_definition(kind(&k)?, &id)).await
}

async fn update_definition(
    State(s): St,
    Path((k, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    run(&s, move |svc| svc.update_definition(kind(&k)?, &id, &body)).await
}

async fn delete_definition(State(s): St, Path((k, id)): Path<(String, String)>) -> Response {
    run(&s, move |svc| svc.delete_definition(kind(&k)?, &id)).await
}

async fn list_definition_versions(
    State(s): St,
    Path((k, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    let query = req.uri().query().map(str::to_owned);
    run(&s, move |svc| {
        svc.list_definition_versions(kind(&k)?, &id, page(query.as_deref())?)
    })
    .await
}

async fn create_definition_version(
    State(s): St,
    Path((k, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = client_token(&headers);
    run(&s, move |svc| {
        svc.create_definition_version(kind(&k)?, &id, token.as_deref(), &body)
    })
    .await
}

async fn get_definition_version(
    State(s): St,
    Path((k, id, vid)): Path<(String, String, String)>,
) -> Response {
    run(&s, move |svc| {
        svc.get_definition_version(kind(&k)?, &id, &vid)
    })
    .await
}

// ---- groups ---------------------------------------------------------------------------

async fn list_groups(State(s): St, req: Request) -> Response {
    let query = req.uri().query().map(str::to_owned);
    run(&s, move |svc| svc.list_groups(page(query.as_deref())?)).await
}

async fn create_group(State(s): St, headers: HeaderMap, body: Bytes) -> Response {
    let token = client_token(&headers);
    run(&s, move |svc| svc.create_group(token.as_deref(), &body)).await
}

async fn get_group(State(s): St, Path(id): Path<String>) -> Response {
    run(&s, move |svc| svc.get_group(&id)).await
}

async fn update_group(State(s): St, Path(id): Path<String>, body: Bytes) -> Response {
    run(&s, move |svc| svc.update_group(&id, &body)).await
}

async fn delete_group(State(s): St, Path(id): Path<String>) -> Response {
    run(&s, move |svc| svc.delete_group(&id)).await
}

async fn list_group_versions(State(s): St, Path(id): Path<String>, req: Request) -> Response {
    let query = req.uri().query().map(str::to_owned);
    run(&s, move |svc| {
        svc.list_group_versions(&id, page(query.as_deref())?)
    })
    .await
}

async fn create_group_version(
    State(s): St,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = client_token(&headers);
    run(&s, move |svc| {
        svc.create_group_version(&id, token.as_deref(), &body)
    })
    .await
}

async fn get_group_version(State(s): St, Path((id, vid)): Path<(String, String)>) -> Response {
    run(&s, move |svc| svc.get_group_version(&id, &vid)).await
}

// ---- deployments ----------------------------------------------------------------------

async fn list_deployments(State(s): St, Path(id): Path<String>, req: Request) -> Response {
    let query = req.uri().query().map(str::to_owned);
    run(&s, move |svc| {
        svc.list_deployments(&id, page(query.as_deref())?)
    })
    .await
}

async fn create_deployment(
    State(s): St,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = client_token(&headers);
    run(&s, move |svc| {
        svc.create_deployment(&id, token.as_deref(), &body)
    })
    .await
}

/// `POST /greengrass/groups/{GroupId}/deployments/$reset` (the `$` arrives percent-encoded,
/// so the literal segment is matched after decoding).
async fn post_deployment(
    State(s): St,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if action != "$reset" {
        return not_found().await;
    }
    let token = client_token(&headers);
    run(&s, move |svc| {
        svc.reset_deployments(&id, token.as_deref(), &body)
    })
    .await
}

async fn deployment_status(State(s): St, Path((id, did)): Path<(String, String)>) -> Response {
    run(&s, move |svc| svc.get_deployment_status(&id, &did)).await
}

// ---- roles ----------------------------------------------------------------------------

async fn associate_role(State(s): St, Path(id): Path<String>, body: Bytes) -> Response {
    run(&s, move |svc| svc.associate_role(&id, &body)).await
}

async fn get_role(State(s): St, Path(id): Path<String>) -> Response {
    run(&s, move |svc| svc.get_role(&id)).await
}

async fn disassociate_role(State(s): St, Path(id): Path<String>) -> Response {
    run(&s, move |svc| svc.disassociate_role(&id)).await
}

async fn associate_service_role(State(s): St, body: Bytes) -> Response {
    run(&s, move |svc| svc.associate_service_role(&body)).await
}

async fn get_service_role(State(s): St) -> Response {
    run(&s, move |svc| svc.get_service_role()).await
}

async fn disassociate_service_role(State(s): St) -> Response {
    run(&s, move |svc| svc.disassociate_service_role()).await
}

// ---- certificate authorities ----------------------------------------------------------

async fn create_ca(State(s): St, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let token = client_token(&headers);
    run(&s, move |svc| svc.create_group_ca(&id, token.as_deref())).await
}

async fn list_cas(State(s): St, Path(id): Path<String>) -> Response {
    run(&s, move |svc| svc.list_group_cas(&id)).await
}

async fn get_ca(State(s): St, Path((id, ca)): Path<(String, String)>) -> Response {
    run(&s, move |svc| svc.get_group_ca(&id, &ca)).await
}

async fn get_cert_config(State(s): St, Path(id): Path<String>) -> Response {
    run(&s, move |svc| svc.get_certificate_configuration(&id)).await
}

async fn update_cert_config(State(s): St, Path(id): Path<String>, body: Bytes) -> Response {
    run(&s, move |svc| {
        svc.update_certificate_configuration(&id, &body)
    })
    .await
}

/// Coupler's own operation (not Greengrass's): issue a device certificate.
async fn issue_device_certificate(State(s): St, body: Bytes) -> Response {
    run(&s, move |svc| svc.issue_device_certificate(&body)).await
}

// ---- remote cores (`coupler core`) -----------------------------------------------------

async fn core_pending(State(s): St, Path(thing): Path<String>) -> Response {
    run(&s, move |svc| svc.core_pending_deployment(&thing)).await
}

async fn core_report(
    State(s): St,
    Path((id, did)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    run(&s, move |svc| svc.core_report_deployment(&id, &did, &body)).await
}

async fn core_server_certificate(State(s): St, Path(id): Path<String>, body: Bytes) -> Response {
    run(&s, move |svc| svc.core_server_certificate(&id, &body)).await
}

// ---- things ---------------------------------------------------------------------------

async fn get_connectivity(State(s): St, Path(thing): Path<String>) -> Response {
    run(&s, move |svc| svc.get_connectivity(&thing)).await
}

async fn update_connectivity(State(s): St, Path(thing): Path<String>, body: Bytes) -> Response {
    run(&s, move |svc| svc.update_connectivity(&thing, &body)).await
}

async fn get_runtime_config(State(s): St, Path(thing): Path<String>) -> Response {
    run(&s, move |svc| svc.get_runtime_configuration(&thing)).await
}

async fn update_runtime_config(State(s): St, Path(thing): Path<String>, body: Bytes) -> Response {
    run(&s, move |svc| {
        svc.update_runtime_configuration(&thing, &body)
    })
    .await
}

// ---- tags -----------------------------------------------------------------------------

async fn tags(State(s): St, Path(arn): Path<String>, req: Request) -> Response {
    let method = req.method().clone();
    let query = req.uri().query().map(str::to_owned);
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => return ApiError::bad_request(e.to_string()).into_response(),
    };
    match method.as_str() {
        "GET" => run(&s, move |svc| svc.list_tags(&arn)).await,
        "POST" => run(&s, move |svc| svc.tag_resource(&arn, &body)).await,
        "DELETE" => {
            let keys: Vec<String> = query_pairs(query.as_deref())
                .into_iter()
                .filter(|(k, _)| k == "tagKeys")
                .map(|(_, v)| v)
                .collect();
            run(&s, move |svc| svc.untag_resource(&arn, &keys)).await
        }
        _ => method_not_allowed().await,
    }
}

// ---- AWS JSON 1.1 (Secrets Manager) -----------------------------------------------------

/// The signing name and `X-Amz-Target` prefix of the Secrets Manager operations.
const SECRETS_MANAGER: &str = "secretsmanager";

fn amz_target(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-amz-target").and_then(|v| v.to_str().ok())
}

/// `POST /` with `X-Amz-Target: secretsmanager.<Operation>`: the JSON 1.1 protocol.
async fn json_target(
    State(s): St,
    verified: Option<axum::Extension<sigv4::Verified>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(operation) =
        amz_target(&headers).and_then(|t| t.strip_prefix(SECRETS_MANAGER)?.strip_prefix('.'))
    else {
        return SecretsError::UnknownOperation(
            "X-Amz-Target names no operation of this endpoint.".into(),
        )
        .into_response();
    };
    // AWS refuses a signature made for another service; the REST operations predate this
    // check and keep their behaviour.
    if let Some(axum::Extension(v)) = &verified
        && v.service != SECRETS_MANAGER
    {
        return SecretsError::Auth(sigv4::AuthError::InvalidCredentialScope {
            problems: vec![sigv4::ScopeProblem::Service {
                expected: SECRETS_MANAGER.into(),
            }],
        })
        .into_response();
    }
    let result = s
        .service
        .secrets()
        .and_then(|secrets| secrets.dispatch(operation, &body));
    let mut res = match result
        .and_then(|v| serde_json::to_vec(&v).map_err(|e| SecretsError::Internal(e.to_string())))
    {
        Ok(bytes) => ([(header::CONTENT_TYPE, JSON_1_1)], bytes).into_response(),
        Err(e) => e.into_response(),
    };
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        res.headers_mut().insert("x-amzn-RequestId", id);
    }
    res
}

// ---- Lambda (REST, API version 2015-03-31) ------------------------------------------------

/// The signing name of the Lambda operations.
const LAMBDA: &str = "lambda";

/// Lambda's paths start with an API version date (`/2015-03-31/…`, `/2017-03-31/tags/…`);
/// Greengrass's and Coupler's own never do.
pub fn is_lambda_path(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    first.len() == 10
        && first.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        })
}

fn lambda_reply(result: Result<Answer, LambdaError>) -> Response {
    let json = |status: StatusCode, v: &Value| match serde_json::to_vec(v) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => LambdaError::Internal(e.to_string()).into_response(),
    };
    let mut res = match result {
        Ok(Answer::Ok(v)) => json(StatusCode::OK, &v),
        Ok(Answer::Created(v)) => json(StatusCode::CREATED, &v),
        Ok(Answer::NoContent) => StatusCode::NO_CONTENT.into_response(),
        Ok(Answer::Zip(bytes)) => {
            ([(header::CONTENT_TYPE, "application/zip")], bytes).into_response()
        }
        // The error's response carries its own request id.
        Err(e) => return e.into_response(),
    };
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        res.headers_mut().insert("x-amzn-RequestId", id);
    }
    res
}

/// A path parameter, or the Lambda error for one that does not decode.
fn lambda_path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, LambdaError> {
    p.map(|Path(t)| t).map_err(|e| {
        LambdaError::InvalidParameterValue(format!("The request path is invalid: {e}"))
    })
}

fn query_param(uri: &Uri, key: &str) -> Option<String> {
    query_pairs(uri.query())
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// This endpoint as the client reached it, for the code `Location` of GetFunction. The API
/// is served over plain HTTP.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

async fn lambda_create_function(State(s): St, body: Bytes) -> Response {
    lambda_reply(s.service.lambda().create_function(&body))
}

async fn lambda_list_functions(State(s): St, uri: Uri) -> Response {
    lambda_reply(s.service.lambda().list_functions(&query_pairs(uri.query())))
}

async fn lambda_get_function(
    State(s): St,
    p: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let q = query_param(&uri, "Qualifier");
    lambda_reply(lambda_path(p).and_then(|name| {
        s.service
            .lambda()
            .get_function(&name, q.as_deref(), &base_url(&headers))
    }))
}

async fn lambda_delete_function(
    State(s): St,
    p: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    let q = query_param(&uri, "Qualifier");
    lambda_reply(
        lambda_path(p).and_then(|name| s.service.lambda().delete_function(&name, q.as_deref())),
    )
}

async fn lambda_get_configuration(
    State(s): St,
    p: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    let q = query_param(&uri, "Qualifier");
    lambda_reply(lambda_path(p).and_then(|name| {
        s.service
            .lambda()
            .get_function_configuration(&name, q.as_deref())
    }))
}

async fn lambda_update_code(
    State(s): St,
    p: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    lambda_reply(
        lambda_path(p).and_then(|name| s.service.lambda().update_function_code(&name, &body)),
    )
}

async fn lambda_publish_version(
    State(s): St,
    p: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    lambda_reply(lambda_path(p).and_then(|name| s.service.lambda().publish_version(&name, &body)))
}

async fn lambda_list_versions(
    State(s): St,
    p: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    let q = query_pairs(uri.query());
    lambda_reply(
        lambda_path(p).and_then(|name| s.service.lambda().list_versions_by_function(&name, &q)),
    )
}

async fn lambda_code_zip(
    State(s): St,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    lambda_reply(
        lambda_path(p).and_then(|(name, version)| s.service.lambda().code_zip(&name, &version)),
    )
}

async fn lambda_create_alias(
    State(s): St,
    p: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    lambda_reply(lambda_path(p).and_then(|name| s.service.lambda().create_alias(&name, &body)))
}

async fn lambda_list_aliases(
    State(s): St,
    p: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    let q = query_pairs(uri.query());
    lambda_reply(lambda_path(p).and_then(|name| s.service.lambda().list_aliases(&name, &q)))
}

async fn lambda_get_alias(
    State(s): St,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    lambda_reply(
        lambda_path(p).and_then(|(name, alias)| s.service.lambda().get_alias(&name, &alias)),
    )
}

async fn lambda_update_alias(
    State(s): St,
    p: Result<Path<(String, String)>, PathRejection>,
    body: Bytes,
) -> Response {
    lambda_reply(
        lambda_path(p)
            .and_then(|(name, alias)| s.service.lambda().update_alias(&name, &alias, &body)),
    )
}

async fn lambda_delete_alias(
    State(s): St,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    lambda_reply(
        lambda_path(p).and_then(|(name, alias)| s.service.lambda().delete_alias(&name, &alias)),
    )
}

/// A Lambda path or method this control plane does not serve.
fn lambda_unsupported(path: &str) -> Response {
    let message = if path.ends_with("/invocations") || path.ends_with("/invoke-async") {
        "Invoke is not supported by this control plane: functions run on the Greengrass core; \
         deploy them in a group (see docs/api.md)."
    } else {
        "This Lambda operation is not supported by this control plane (see docs/api.md for the \
         ones that are)."
    };
    LambdaError::UnknownOperation(message.into()).into_response()
}

/// The answer to a request no route takes: in the form of the API its path belongs to.
async fn fallback(uri: Uri) -> Response {
    if is_lambda_path(uri.path()) {
        return lambda_unsupported(uri.path());
    }
    not_found().await
}

async fn method_fallback(uri: Uri) -> Response {
    if is_lambda_path(uri.path()) {
        return lambda_unsupported(uri.path());
    }
    method_not_allowed().await
}

// ---- not supported --------------------------------------------------------------------

async fn unsupported(req: Request) -> Response {
    let what = if req.uri().path().starts_with("/greengrass/updates") {
        "Software update jobs (CreateSoftwareUpdateJob)"
    } else {
        "Bulk deployments (StartBulkDeployment, ListBulkDeployments, GetBulkDeploymentStatus, ListBulkDeploymentDetailedReports, StopBulkDeployment)"
    };
    ApiError::bad_request(format!(
        "{what} are not supported by this control plane; see docs/api.md"
    ))
    .into_response()
}

async fn not_found() -> Response {
    ApiError::not_found("NotFoundException", "No such operation.").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::not_found("NotFoundException", "No such operation for this method.").into_response()
}

// ---- authentication -------------------------------------------------------------------

/// Read the body (bounded), check the signature, and hand the request on.
async fn authenticate(State(s): St, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let lambda = is_lambda_path(parts.uri.path());
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            let mut refused = if lambda {
                LambdaError::RequestEntityTooLarge(format!(
                    "Request must be smaller than {MAX_BODY_BYTES} bytes for this control plane's \
                     Lambda operations."
                ))
                .into_response()
            } else {
                ApiError::bad_request(format!(
                    "The request body is larger than {MAX_BODY_BYTES} bytes."
                ))
                .into_response()
            };
            // The rest of the body is never read, so the connection cannot carry another
            // request: say so, or a client reuses it and sees it closed.
            refused
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return refused;
        }
    };
    if let Auth::SigV4(keys) = &s.auth {
        let signed = sigv4::Request {
            method: parts.method.as_str(),
            raw_path: parts.uri.path(),
            raw_query: parts.uri.query(),
            headers: &parts.headers,
            body: &bytes,
        };
        let secret_for = |id: &str| {
            keys.iter()
                .find(|k| k.access_key_id == id)
                .map(|k| k.secret_access_key.clone())
        };
        let skew = time::Duration::try_from(MAX_CLOCK_SKEW).unwrap_or(time::Duration::minutes(5));
        match sigv4::verify(&signed, secret_for, time::OffsetDateTime::now_utc(), skew) {
            // Lambda, like AWS, refuses a signature made for another service (the Greengrass
            // operations predate this check and keep their behaviour).
            Ok(verified) if lambda && verified.service != LAMBDA => {
                let e = sigv4::AuthError::InvalidCredentialScope {
                    problems: vec![sigv4::ScopeProblem::Service {
                        expected: LAMBDA.into(),
                    }],
                };
                tracing::warn!(path = %parts.uri.path(), error = %e, "request refused");
                return LambdaError::Auth(e).into_response();
            }
            Ok(verified) => {
                // The JSON endpoint checks the signing service name against the target.
                parts.extensions.insert(verified);
            }
            Err(e) => {
                tracing::warn!(path = %parts.uri.path(), error = %e, "request refused");
                if lambda {
                    return LambdaError::Auth(e).into_response();
                }
                // Answer in the protocol the client speaks: JSON 1.1 clients read `__type`.
                if amz_target(&parts.headers).is_some() {
                    return SecretsError::Auth(e).into_response();
                }
                return ApiError::Auth(e).into_response();
            }
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The API's routes, on an already-built state.
pub fn router(state: Arc<AppState>) -> Router {
    let defs = "/greengrass/definition/{kind}";
    Router::new()
        .route("/", post(json_target))
        .route(defs, get(list_definitions).post(create_definition))
        .route(
            &format!("{defs}/{{id}}"),
            get(get_definition)
                .put(update_definition)
                .delete(delete_definition),
        )
        .route(
            &format!("{defs}/{{id}}/versions"),
            get(list_definition_versions).post(create_definition_version),
        )
        .route(
            &format!("{defs}/{{id}}/versions/{{vid}}"),
            get(get_definition_version),
        )
        .route("/greengrass/groups", get(list_groups).post(create_group))
        .route(
            "/greengrass/groups/{id}",
            get(get_group).put(update_group).delete(delete_group),
        )
        .route(
            "/greengrass/groups/{id}/versions",
            get(list_group_versions).post(create_group_version),
        )
        .route(
            "/greengrass/groups/{id}/versions/{vid}",
            get(get_group_version),
        )
        .route(
            "/greengrass/groups/{id}/deployments",
            get(list_deployments).post(create_deployment),
        )
        .route(
            "/greengrass/groups/{id}/deployments/{action}",
            post(post_deployment),
        )
        .route(
            "/greengrass/groups/{id}/deployments/{did}/status",
            get(deployment_status),
        )
        .route(
            "/greengrass/groups/{id}/role",
            get(get_role).put(associate_role).delete(disassociate_role),
        )
        .route(
            "/greengrass/servicerole",
            get(get_service_role)
                .put(associate_service_role)
                .delete(disassociate_service_role),
        )
        .route(
            "/greengrass/groups/{id}/certificateauthorities",
            get(list_cas).post(create_ca),
        )
        .route(
            "/greengrass/groups/{id}/certificateauthorities/configuration/expiry",
            get(get_cert_config).put(update_cert_config),
        )
        .route(
            "/greengrass/groups/{id}/certificateauthorities/{ca}",
            get(get_ca),
        )
        .route(
            "/greengrass/things/{thing}/connectivityInfo",
            get(get_connectivity).put(update_connectivity),
        )
        .route(
            "/greengrass/things/{thing}/runtimeconfig",
            get(get_runtime_config).put(update_runtime_config),
        )
        .route("/tags/{*arn}", axum::routing::any(tags))
        .route(
            "/coupler/device-certificates",
            post(issue_device_certificate),
        )
        .route(
            "/coupler/cores/{thing}/pending-deployment",
            get(core_pending),
        )
        .route(
            "/coupler/groups/{id}/deployments/{did}/status",
            put(core_report),
        )
        .route(
            "/coupler/groups/{id}/server-certificate",
            post(core_server_certificate),
        )
        .route(
            "/greengrass/bulk/deployments",
            axum::routing::any(unsupported),
        )
        .route(
            "/greengrass/bulk/deployments/{*rest}",
            axum::routing::any(unsupported),
        )
        .route("/greengrass/updates", axum::routing::any(unsupported))
        .route(
            "/2015-03-31/functions",
            get(lambda_list_functions).post(lambda_create_function),
        )
        .route(
            "/2015-03-31/functions/{name}",
            get(lambda_get_function).delete(lambda_delete_function),
        )
        .route(
            "/2015-03-31/functions/{name}/configuration",
            get(lambda_get_configuration),
        )
        .route("/2015-03-31/functions/{name}/code", put(lambda_update_code))
        .route(
            "/2015-03-31/functions/{name}/versions",
            get(lambda_list_versions).post(lambda_publish_version),
        )
        .route(
            "/2015-03-31/functions/{name}/versions/{version}/code-zip",
            get(lambda_code_zip),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases",
            get(lambda_list_aliases).post(lambda_create_alias),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases/{alias}",
            get(lambda_get_alias)
                .put(lambda_update_alias)
                .delete(lambda_delete_alias),
        )
        .fallback(fallback)
        .method_not_allowed_fallback(method_fallback)
        // The authentication layer reads the body within MAX_BODY_BYTES itself and answers a
        // larger one with a 400; axum's own 2 MiB default would answer 413 first.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}
