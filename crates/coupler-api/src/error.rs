//! API errors and their wire form.
//!
//! Every error is sent as AWS rest-json services send theirs, which botocore parses into a
//! `ClientError`: the code in the `x-amzn-ErrorType` header, and a body
//! `{"Message": "...", "ErrorDetails": [{"DetailedErrorCode": "...", "DetailedErrorMessage": "..."}]}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::sigv4::AuthError;

/// One line of `ErrorDetails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorDetail {
    pub detailed_error_code: String,
    pub detailed_error_message: String,
}

impl ErrorDetail {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            detailed_error_code: code.into(),
            detailed_error_message: message.into(),
        }
    }
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with a code; `BadRequestException` unless the service uses a more specific one.
    #[error("{code}: {message}")]
    BadRequest {
        code: &'static str,
        message: String,
        details: Vec<ErrorDetail>,
    },
    /// 404: an id or version that does not exist.
    #[error("{code}: {message}")]
    NotFound { code: &'static str, message: String },
    /// 403: authentication failed.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// 500: our fault, never the client's; details are logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            code: "BadRequestException",
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn with_details(message: impl Into<String>, details: Vec<ErrorDetail>) -> Self {
        Self::BadRequest {
            code: "BadRequestException",
            message: message.into(),
            details,
        }
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::BadRequest {
            code: "InvalidInputException",
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            message: message.into(),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Body<'a> {
    message: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    error_details: &'a [ErrorDetail],
}

/// The lower-case `message` key is what AWS sends for authentication failures.
#[derive(Serialize)]
struct AuthBody<'a> {
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, body) = match &self {
            ApiError::BadRequest {
                code,
                message,
                details,
            } => (
                StatusCode::BAD_REQUEST,
                *code,
                serde_json::to_vec(&Body {
                    message,
                    error_details: details,
                }),
            ),
            ApiError::NotFound { code, message } => (
                StatusCode::NOT_FOUND,
                *code,
                serde_json::to_vec(&Body {
                    message,
                    error_details: &[],
                }),
            ),
            ApiError::Auth(e) => (
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN),
                e.error_type(),
                serde_json::to_vec(&AuthBody {
                    message: &e.message(),
                }),
            ),
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerErrorException",
                    serde_json::to_vec(&Body {
                        message: "Internal server error",
                        error_details: &[],
                    }),
                )
            }
        };
        let mut res = (status, body.unwrap_or_default()).into_response();
        let headers = res.headers_mut();
        headers.insert("x-amzn-ErrorType", HeaderValue::from_static(code));
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Everything a Secrets Manager request can fail with, sent in the AWS JSON 1.1 form:
/// status 400 (500 for our own faults), `x-amzn-ErrorType`, and a body
/// `{"__type": "...", "message": "..."}` (botocore's JSON parser reads `__type`).
///
/// Messages never carry a secret value: the callers build them from names, ids and stages.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("ResourceNotFoundException: {0}")]
    ResourceNotFound(String),
    #[error("ResourceExistsException: {0}")]
    ResourceExists(String),
    #[error("InvalidParameterException: {0}")]
    InvalidParameter(String),
    #[error("InvalidRequestException: {0}")]
    InvalidRequest(String),
    #[error("InvalidNextTokenException: {0}")]
    InvalidNextToken(String),
    /// The body is not JSON, or a member has the wrong type.
    #[error("SerializationException: {0}")]
    Serialization(String),
    /// `X-Amz-Target` names no operation of this endpoint.
    #[error("UnknownOperationException: {0}")]
    UnknownOperation(String),
    /// 403: authentication failed.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// 500: details are logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl SecretsError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::ResourceExists(_) => "ResourceExistsException",
            Self::InvalidParameter(_) => "InvalidParameterException",
            Self::InvalidRequest(_) => "InvalidRequestException",
            Self::InvalidNextToken(_) => "InvalidNextTokenException",
            Self::Serialization(_) => "SerializationException",
            Self::UnknownOperation(_) => "UnknownOperationException",
            Self::Auth(e) => e.error_type(),
            Self::Internal(_) => "InternalServiceError",
        }
    }
}

impl From<crate::store::StoreError> for SecretsError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

#[derive(Serialize)]
struct JsonBody<'a> {
    #[serde(rename = "__type")]
    kind: &'a str,
    message: &'a str,
}

impl IntoResponse for SecretsError {
    fn into_response(self) -> Response {
        let code = self.code();
        let (status, message) = match &self {
            Self::ResourceNotFound(m)
            | Self::ResourceExists(m)
            | Self::InvalidParameter(m)
            | Self::InvalidRequest(m)
            | Self::InvalidNextToken(m)
            | Self::Serialization(m)
            | Self::UnknownOperation(m) => (StatusCode::BAD_REQUEST, m.clone()),
            Self::Auth(e) => (
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN),
                e.message(),
            ),
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error".to_owned(),
                )
            }
        };
        let body = serde_json::to_vec(&JsonBody {
            kind: code,
            message: &message,
        })
        .unwrap_or_default();
        let mut res = (status, body).into_response();
        let headers = res.headers_mut();
        headers.insert("x-amzn-ErrorType", HeaderValue::from_static(code));
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_1_1),
        );
        res
    }
}

/// The content type of AWS JSON 1.1 requests and answers.
pub const JSON_1_1: &str = "application/x-amz-json-1.1";

/// Everything a Lambda request can fail with, sent as the Lambda REST API sends it: the code
/// in `x-amzn-ErrorType` and a body `{"Type": "User", "message": "..."}` (botocore's
/// rest-json parser takes the code from the header and the message from `message` or
/// `Message`; the member's case follows each error shape of the model).
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    /// 404: no such function, version or alias.
    #[error("ResourceNotFoundException: {0}")]
    ResourceNotFound(String),
    /// 409: the function or alias exists already, or a version is still in use.
    #[error("ResourceConflictException: {0}")]
    ResourceConflict(String),
    /// 400: a member's value is not allowed; the message names the member.
    #[error("InvalidParameterValueException: {0}")]
    InvalidParameterValue(String),
    /// 400: the body is not JSON, or a member has the wrong type or is unknown.
    #[error("InvalidRequestContentException: {0}")]
    InvalidRequestContent(String),
    /// 412: a `RevisionId` that is not the current one.
    #[error("PreconditionFailedException: {0}")]
    PreconditionFailed(String),
    /// 413: the request body is over [`crate::http::MAX_BODY_BYTES`].
    #[error("RequestEntityTooLargeException: {0}")]
    RequestEntityTooLarge(String),
    /// 404: a Lambda path this control plane does not serve.
    #[error("UnknownOperationException: {0}")]
    UnknownOperation(String),
    /// 403 (or 400): authentication failed.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// 500: details are logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl LambdaError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::ResourceConflict(_) => "ResourceConflictException",
            Self::InvalidParameterValue(_) => "InvalidParameterValueException",
            Self::InvalidRequestContent(_) => "InvalidRequestContentException",
            Self::PreconditionFailed(_) => "PreconditionFailedException",
            Self::RequestEntityTooLarge(_) => "RequestEntityTooLargeException",
            Self::UnknownOperation(_) => "UnknownOperationException",
            Self::Auth(e) => e.error_type(),
            Self::Internal(_) => "ServiceException",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::ResourceNotFound(_) | Self::UnknownOperation(_) => StatusCode::NOT_FOUND,
            Self::ResourceConflict(_) => StatusCode::CONFLICT,
            Self::InvalidParameterValue(_) | Self::InvalidRequestContent(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::RequestEntityTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Auth(e) => StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN),
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::store::StoreError> for LambdaError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl IntoResponse for LambdaError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status = self.status();
        let message = match &self {
            Self::ResourceNotFound(m)
            | Self::ResourceConflict(m)
            | Self::InvalidParameterValue(m)
            | Self::InvalidRequestContent(m)
            | Self::PreconditionFailed(m)
            | Self::RequestEntityTooLarge(m)
            | Self::UnknownOperation(m) => m.clone(),
            Self::Auth(e) => e.message(),
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "Internal server error".to_owned()
            }
        };
        // The model spells the member `Message` for these shapes and `message` for the rest;
        // an authentication failure carries `message` alone, as AWS sends it.
        let key = match &self {
            Self::ResourceNotFound(_) | Self::Internal(_) => "Message",
            _ => "message",
        };
        let mut body = serde_json::Map::new();
        match &self {
            Self::Auth(_) => {}
            Self::Internal(_) => {
                body.insert("Type".into(), "Service".into());
            }
            _ => {
                body.insert("Type".into(), "User".into());
            }
        }
        body.insert(key.into(), message.into());
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut res = (status, bytes).into_response();
        let headers = res.headers_mut();
        headers.insert("x-amzn-ErrorType", HeaderValue::from_static(code));
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            headers.insert("x-amzn-RequestId", id);
        }
        res
    }
}
