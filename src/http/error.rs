//! The ingest boundary's one error type and its one, exhaustive mapping to HTTP statuses and JSON bodies.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::beacon::BeaconError;
use crate::spool::AppendError;

/// Every way a request to the collector can fail. Each variant is one sentence for the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Content-Type must be text/plain or application/json, got {0:?}")]
    ContentType(String),
    #[error("Content-Encoding must be gzip or identity, got {0:?}")]
    ContentEncoding(String),
    #[error("body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("body decompresses to more than {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("body is not valid gzip")]
    BadGzip,
    #[error("body was not received in time")]
    BodyTimeout,
    #[error("body could not be read: {0}")]
    BodyRead(String),
    #[error("{0}")]
    Beacon(#[from] BeaconError),
    #[error("site {0:?} does not accept events from this origin")]
    Forbidden(String),
    #[error("too many events from this address; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error(
        "the collector cannot take events right now ({cause}); retry after {retry_after_secs} s"
    )]
    Unavailable {
        retry_after_secs: u64,
        cause: AppendError,
    },
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl ApiError {
    /// A stable label for the rejection metric.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::ContentType(_) => "content_type",
            ApiError::ContentEncoding(_) => "content_encoding",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::DecompressedTooLarge { .. } => "decompressed_too_large",
            ApiError::BadGzip => "bad_gzip",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::BodyRead(_) => "body_read",
            ApiError::Beacon(BeaconError::Json(_)) => "invalid_json",
            ApiError::Beacon(BeaconError::Utf8) => "invalid_utf8",
            ApiError::Beacon(BeaconError::Empty) => "empty",
            ApiError::Beacon(_) => "invalid_beacon",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable { cause, .. } => cause.label(),
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::ContentType(_) | ApiError::ContentEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::TooLarge { .. } | ApiError::DecompressedTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::BadGzip | ApiError::BodyRead(_) | ApiError::Beacon(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        match self {
            ApiError::RateLimited { retry_after_secs }
            | ApiError::Unavailable {
                retry_after_secs, ..
            } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            _ => {}
        }
        res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        res.json(serde_json::json!({ "error": self.to_string() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_json_with_its_status() {
        let cases = [
            (ApiError::ContentType("x".into()), 415),
            (ApiError::ContentEncoding("br".into()), 415),
            (ApiError::TooLarge { limit: 1 }, 413),
            (ApiError::DecompressedTooLarge { limit: 1 }, 413),
            (ApiError::BadGzip, 400),
            (ApiError::BodyTimeout, 408),
            (ApiError::Beacon(BeaconError::Empty), 400),
            (ApiError::Forbidden("s".into()), 403),
            (
                ApiError::RateLimited {
                    retry_after_secs: 2,
                },
                429,
            ),
            (
                ApiError::Unavailable {
                    retry_after_secs: 5,
                    cause: AppendError::Full,
                },
                503,
            ),
            (ApiError::NotFound, 404),
        ];
        for (err, status) in cases {
            let res = err.error_response();
            assert_eq!(res.status().as_u16(), status, "{err}");
            assert_eq!(
                res.headers().get(header::CONTENT_TYPE).unwrap(),
                "application/json"
            );
            let retry = res.headers().get(header::RETRY_AFTER).is_some();
            assert_eq!(retry, status == 429 || status == 503, "{err}");
        }
    }
}
