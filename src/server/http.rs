//! The HTTP endpoint: `/healthz` for probes, `/metrics` for Prometheus.
//!
//! It follows the Postgres listener's rule (see [`crate::config`]): with `auth` on, every route
//! but `/healthz` asks for HTTP Basic credentials of a user who may log in, answering 401
//! otherwise. Checking a password costs a PBKDF2 derivation, so at most two run at once and a
//! client guessing passwords cannot take more than that from everyone else.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::sync::Semaphore;

use super::login::Gate;
use crate::database::Database;
use crate::metrics;

/// How many password checks may run at once.
const CHECKS_AT_ONCE: usize = 2;

pub fn router(db: Arc<Database>, gate: Arc<Gate>) -> Router {
    let guard = Arc::new(Guard {
        gate,
        checks: Semaphore::new(CHECKS_AT_ONCE),
    });
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(db)
        .layer(middleware::from_fn_with_state(guard, authenticate))
        .route("/healthz", get(|| async { "ok\n" }))
}

struct Guard {
    gate: Arc<Gate>,
    checks: Semaphore,
}

/// Lets a request through if no password is required or it carries a user's credentials.
async fn authenticate(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    if !guard.gate.requires_password() {
        return next.run(request).await;
    }
    let credentials = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(basic_credentials);
    let Some((user, password)) = credentials else {
        return unauthorized();
    };
    let Ok(_permit) = guard.checks.acquire().await else {
        return unauthorized();
    };
    let gate = Arc::clone(&guard.gate);
    let checked_user = user.clone();
    let valid = tokio::task::spawn_blocking(move || gate.check_password(&checked_user, &password))
        .await
        .unwrap_or(false);
    if valid {
        next.run(request).await
    } else {
        metrics::LOGINS_FAILED.add(1);
        tracing::warn!(user, "HTTP password authentication failed");
        unauthorized()
    }
}

/// The user and password of an `Authorization: Basic …` header.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"sluicedb\", charset=\"UTF-8\"",
        )],
        "authentication required\n",
    )
        .into_response()
}

async fn render_metrics(State(db): State<Arc<Database>>) -> impl IntoResponse {
    let sources: Vec<_> = db
        .sources()
        .all()
        .iter()
        .map(|h| h.stats.snapshot())
        .collect();
    let views: Vec<_> = db.views().all().iter().map(|h| h.snapshot()).collect();
    let memory = metrics::QueryMemory {
        reserved: db.session().runtime_env().memory_pool.reserved(),
        limit: db.config().memory_limit,
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(&sources, &views, &memory),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_read_as_rfc_7617_says() {
        let header = format!("Basic {}", STANDARD.encode("prometheus:pa:ss"));
        assert_eq!(
            basic_credentials(&header),
            Some(("prometheus".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
        assert_eq!(
            basic_credentials(&format!("basic {}", STANDARD.encode("nocolon"))),
            None
        );
    }
}
